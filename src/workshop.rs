//! Workshop levels ("build it yourself"): `minictr run --until N` (or `MINICTR_UNTIL=N`) turns off
//! every stage after chapter N, so a student who has written chapters 1..N runs a container that
//! meets no code of a later chapter; and the stub that a generated level puts in place of an
//! exercise not written yet (see workshop/README.md and `workshop/level.sh`).
//!
//! Level 1 has no root filesystem stage: the command runs in the host's own files (in new
//! namespaces), as in rubber-docker's first level — chapter 2 is where it gets a root of its own.

use crate::host::Host;
use crate::RunArgs;
use anyhow::{bail, Result};

/// The last chapter with a stage of its own in `minictr run`.
pub const LAST: u8 = 8;

/// `--until N`: the workshop level. Not a stage: a switch over the stages' own switches.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkshopArgs {
    /// Workshop: run only the stages of chapters 1..N, every later one off (1 = namespaces only, in
    /// the host's files; 2 = + root filesystem; 3 = + user namespace; … 8 = all); also MINICTR_UNTIL
    #[arg(long, value_name = "N")]
    pub until: Option<String>,
}

/// What each chapter's stage is, and the switches that turn it off (for `--explain`).
const STAGES: [(u8, &str, &str); 7] = [
    (
        2,
        "the root filesystem (pivot_root, /proc, /sys, /dev)",
        "the command runs in the host's files",
    ),
    (3, "the user namespace", "--userns=host"),
    (4, "cgroups", "--no-cgroup"),
    (5, "the overlay", "--no-overlay"),
    (6, "the bridge network", "--network none"),
    (7, "hardening", "--no-security"),
    (8, "--init", "refused"),
];

/// The level in force: `--until` wins over `MINICTR_UNTIL`; `None` = every stage.
pub fn level(flag: Option<&str>, host: &Host) -> Result<Option<u8>> {
    let (raw, from) = match (flag, host.until.as_deref()) {
        (Some(v), _) => (v, "--until"),
        (None, Some(v)) => (v, "MINICTR_UNTIL"),
        (None, None) => return Ok(None),
    };
    match raw.trim().parse::<u8>() {
        Ok(n) if (1..=LAST).contains(&n) => Ok(Some(n)),
        _ => bail!(crate::error::hint(
            format!("invalid {from} value {raw:?}"),
            format!("give a chapter from 1 to {LAST} (the last chapter whose stage runs)")
        )),
    }
}

/// Whether chapter `chapter`'s stage runs at this host's level (after [`gate`]).
pub fn stage_on(host: &Host, chapter: u8) -> bool {
    host.until
        .as_deref()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .is_none_or(|n| chapter <= n)
}

/// `minictr run --until N`: every stage after chapter N off, as its own `--no-*` switch would turn
/// it off. Returns the arguments and the host with the level in force (`host.until`).
pub fn gate(mut args: RunArgs, host: &Host) -> Result<(RunArgs, Host)> {
    let mut host = host.clone();
    let Some(n) = level(args.workshop.until.as_deref(), &host)? else {
        return Ok((args, host));
    };
    host.until = Some(n.to_string());
    if n < 3 {
        args.userns.userns = "host".into();
        args.userns.uidmap.clear();
        args.userns.gidmap.clear();
    }
    if n < 4 {
        args.cgroups.no_cgroup = true;
    }
    if n < 5 {
        args.overlay.no_overlay = true;
    }
    // The bridge is chapter 6's; sharing the host's network (--no-net, --network host) is not.
    if n < 6 && !args.namespaces.no_net && args.network.network.as_deref() != Some("host") {
        args.network.network = Some("none".into());
        args.network.publish.clear();
    }
    if n < 7 {
        args.security.no_security = true;
    }
    if n < 8 && args.lifecycle.init {
        bail!(crate::error::hint(
            format!("--init is chapter 8's, and --until {n} stops at chapter {n}"),
            "drop --init, or raise --until to 8"
        ));
    }
    for (chapter, what, how) in STAGES.iter().filter(|s| s.0 > n) {
        crate::explain!(
            "workshop",
            "--until {n}: chapter {chapter}'s stage is off: {what} ({how})"
        );
    }
    Ok((args, host))
}

/// The stub of an exercise not written yet (generated levels only): a one-line error, exit 125.
#[allow(dead_code)] // called only by the stubs of a generated level
pub fn todo(chapter: u8, name: &str, place: &str, text: &str) -> anyhow::Error {
    crate::error::hint(
        format!("chapter {chapter}, exercise '{name}' is not written yet ({place})"),
        format!("see {text}"),
    )
}

/// [`todo`] for an exercise that returns no `Result`: print the line and exit 125.
#[allow(dead_code)] // called only by the stubs of a generated level
pub fn todo_exit(chapter: u8, name: &str, place: &str, text: &str) -> ! {
    eprintln!("minictr: {}", todo(chapter, name, place, text));
    std::process::exit(crate::error::EXIT_RUNTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(until: Option<&str>) -> Host {
        let mut h = Host::detect();
        h.until = until.map(str::to_string);
        h
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_bad_values_are_refused() {
        assert_eq!(level(None, &host(None)).unwrap(), None);
        assert_eq!(level(None, &host(Some("3"))).unwrap(), Some(3));
        assert_eq!(level(Some("2"), &host(Some("3"))).unwrap(), Some(2));
        for bad in ["0", "9", "x", ""] {
            let e = level(Some(bad), &host(None)).unwrap_err().to_string();
            assert!(e.contains("--until") && e.contains("1 to 8"), "{e}");
        }
        assert!(stage_on(&host(Some("2")), 2));
        assert!(!stage_on(&host(Some("2")), 3));
        assert!(stage_on(&host(None), 8));
    }

    #[test]
    fn the_stub_says_where_and_what_to_read() {
        let e = todo(
            3,
            "write the maps",
            "src/userns.rs:120",
            "chapters/03-user-namespaces.md",
        );
        assert_eq!(crate::error::exit_code(&e), 125);
        assert_eq!(
            crate::error::one_line(&e),
            "chapter 3, exercise 'write the maps' is not written yet (src/userns.rs:120) (hint: see chapters/03-user-namespaces.md)"
        );
    }
}
