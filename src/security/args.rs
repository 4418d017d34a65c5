//! The hardening flags of `minictr run` (chapter 7), and what `minictr exec` reads back from state.json
//! to harden the processes it starts the same way.

use super::Options;
use serde::{Deserialize, Serialize};

/// Chapter 7's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[command(next_help_heading = "Hardening (chapter 7)")]
pub struct SecurityArgs {
    /// Add a capability to Docker's default 14 (CAP_ prefix optional, any case, or ALL); repeatable
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (or ALL); repeatable
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// no-new-privileges[=true|false] (default true), seccomp=unconfined, seccomp=PROFILE.json (Docker format); repeatable
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (default nofile=1024:1024); repeatable
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Stage switch (ch07): no hardening at all (all capabilities, no seccomp, no masks, no no_new_privs)
    #[arg(long)]
    pub no_security: bool,
    /// Stage switch (ch07): keep every capability of the container's root
    #[arg(long)]
    pub no_caps: bool,
    /// Stage switch (ch07): no seccomp filter (same as --security-opt seccomp=unconfined)
    #[arg(long)]
    pub no_seccomp: bool,
    /// Stage switch (ch07): do not mask /proc/kcore, … nor make /proc/sys, … read-only
    #[arg(long)]
    pub no_masks: bool,
    /// Not a flag: the seccomp profile's JSON as `run` read it, recorded so that `minictr exec`
    /// builds the same filter even when the file is gone (a bundle's profile never is one).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
}

impl SecurityArgs {
    pub fn options(&self) -> Options<'_> {
        Options {
            cap_add: &self.cap_add,
            cap_drop: &self.cap_drop,
            security_opt: &self.security_opt,
            ulimit: &self.ulimit,
            no_security: self.no_security,
            no_caps: self.no_caps,
            no_seccomp: self.no_seccomp,
            no_masks: self.no_masks,
            seccomp_profile: self.seccomp_profile.as_deref(),
        }
    }

    /// The options as recorded for `minictr exec`: a seccomp profile by its absolute path (exec
    /// runs from another directory).
    pub fn recorded(o: &Options<'_>) -> SecurityArgs {
        let absolute = |v: &String| match v.split_once(['=', ':']) {
            Some(("seccomp", f)) if f != "unconfined" => std::fs::canonicalize(f)
                .map(|p| format!("seccomp={}", p.display()))
                .unwrap_or_else(|_| v.clone()),
            _ => v.clone(),
        };
        SecurityArgs {
            cap_add: o.cap_add.to_vec(),
            cap_drop: o.cap_drop.to_vec(),
            security_opt: o.security_opt.iter().map(absolute).collect(),
            ulimit: o.ulimit.to_vec(),
            no_security: o.no_security,
            no_caps: o.no_caps,
            no_seccomp: o.no_seccomp,
            no_masks: o.no_masks,
            seccomp_profile: o.seccomp_profile.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_survive_the_state_file() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = SecurityArgs {
            cap_add: s(&["SYS_ADMIN"]),
            cap_drop: s(&["ALL", "NET_RAW"]),
            security_opt: s(&["no-new-privileges=false", "seccomp=unconfined"]),
            ulimit: s(&["nofile=10:20"]),
            no_masks: true,
            ..Default::default()
        };
        let recorded = SecurityArgs::recorded(&a.options());
        let json = serde_json::to_string(&recorded).unwrap();
        assert_eq!(serde_json::from_str::<SecurityArgs>(&json).unwrap(), a);
    }
}
