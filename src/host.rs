//! What minictr knows about the machine it runs on, gathered once in main.rs and passed to whoever
//! decides something from it: who we are (root or not) and the environment that changes defaults.
//! Building a [`crate::spec::Spec`] from a made-up `Host` is how the unit tests check rootless
//! behaviour without being rootless.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Host {
    pub euid: u32,
    pub egid: u32,
    /// `MINICTR_NETWORK`: the network mode when neither `--network` nor `--no-net` is given (the test
    /// suite sets it to `none` so that ordinary tests never build a bridge in the machine's namespace).
    pub network_default: Option<String>,
    /// The host's own hostname (a container without a UTS namespace shares it).
    pub hostname: Option<String>,
    /// Where runtime directories live (`/run/minictr` for root; see `state::base_dir`).
    pub run_dir: PathBuf,
    /// How to find the host's cgroup layout (chapter 4), asked only when a cgroup is planned.
    pub cgroup_layout: fn() -> anyhow::Result<crate::cgroups::Layout>,
    /// `MINICTR_UNTIL`: the workshop level, the last chapter whose stage runs (`--until` wins; see
    /// `workshop::gate`). Kept as given: the gate checks it.
    pub until: Option<String>,
}

impl Host {
    /// The real host: our effective ids, the environment, the runtime directory.
    pub fn detect() -> Host {
        Host {
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            network_default: std::env::var("MINICTR_NETWORK")
                .ok()
                .filter(|v| !v.is_empty()),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok()),
            run_dir: crate::state::base_dir(),
            cgroup_layout: crate::cgroups::Layout::detect,
            until: std::env::var("MINICTR_UNTIL")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }

    /// minictr runs as host root (otherwise: rootless).
    pub fn is_root(&self) -> bool {
        self.euid == 0
    }
}
