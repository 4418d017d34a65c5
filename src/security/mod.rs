//! Chapter 7 — Hardening: the walls that stay up once the container runs. Namespaces decide what the
//! container can *see*; this stage decides what its root may still *do*: capabilities, no_new_privs,
//! a seccomp filter, masked and read-only /proc paths, resource limits, and no leaked descriptors.
//!
//! Everything is validated and the seccomp program compiled in the parent (step 1); the walls go up
//! in the child, in this order, each after the last step that needed the power it removes:
//! non-dumpable at once → masked/read-only paths before pivot_root → rlimits → bounding set →
//! user switch (process.rs) → permitted/effective/inheritable, ambient → close-on-exec for every fd
//! → no_new_privs → seccomp → execve.

pub mod args;
pub mod bpf;
pub mod caps;
pub mod paths;
pub mod profile;
pub mod seccomp;
pub mod syscalls;
pub use args::SecurityArgs;

use anyhow::{bail, Context, Result};
use caps::CapSet;
use nix::sys::prctl;
use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};

pub const CHAPTER: &str = "ch07 hardening";

/// One `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The hardening of one container, decided before clone.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The capabilities to keep; `None` with `--no-caps` (every capability of the namespace's root).
    pub caps: Option<CapSet>,
    pub no_new_privs: bool,
    /// The compiled filter; `None` means unconfined.
    pub seccomp: Option<bpf::Program>,
    /// Where the filter came from, for --explain.
    pub seccomp_source: String,
    pub masks: bool,
    pub rlimits: Vec<Rlimit>,
    /// The options as given (a seccomp profile by its absolute path), recorded for `minictr exec`.
    pub recorded: SecurityArgs,
}

/// What the command line said about this stage.
#[derive(Debug, Default)]
pub struct Options<'a> {
    pub cap_add: &'a [String],
    pub cap_drop: &'a [String],
    pub security_opt: &'a [String],
    pub ulimit: &'a [String],
    pub no_security: bool,
    pub no_caps: bool,
    pub no_seccomp: bool,
    pub no_masks: bool,
    /// The profile's text recorded by `run` (exec): used instead of reading the file again.
    pub seccomp_profile: Option<&'a str>,
}

const RLIMITS: [(&str, Resource); 16] = [
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

// ANCHOR: parse_ulimit
/// Parse `--ulimit NAME=SOFT[:HARD]` as Docker does (`nofile=1024:2048`, `core=0`, `-1` or
/// `unlimited` for no limit).
pub fn parse_ulimit(s: &str) -> Result<Rlimit> {
    let usage = "use --ulimit NAME=SOFT[:HARD], NAME one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack; e.g. --ulimit nofile=1024:2048";
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| crate::error::hint(format!("invalid --ulimit {s:?}"), usage))?;
    let name = name.trim().to_ascii_lowercase();
    let (name, resource) = RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| crate::error::hint(format!("unknown ulimit {name:?}"), usage))?;
    let num = |v: &str| -> Result<u64> {
        match v.trim() {
            "-1" | "unlimited" => Ok(RLIM_INFINITY),
            n => n.parse::<u64>().map_err(|_| {
                crate::error::hint(
                    format!("invalid --ulimit {s:?}: {n:?} is not a number"),
                    usage,
                )
            }),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        bail!(crate::error::hint(
            format!("invalid --ulimit {s:?}: the soft limit is above the hard limit"),
            "give SOFT <= HARD, e.g. --ulimit nofile=1024:4096"
        ));
    }
    Ok(Rlimit {
        name,
        resource,
        soft,
        hard,
    })
}
// ANCHOR_END: parse_ulimit

// ANCHOR: config
impl Config {
    /// Step 1: validate every hardening option and compile the seccomp filter, before clone.
    pub fn from_options(o: &Options<'_>) -> Result<Config> {
        let caps = caps::configured(o.cap_add, o.cap_drop)?;
        let mut no_new_privs = true;
        let mut seccomp_file: Option<String> = None;
        let mut unconfined = false;
        for opt in o.security_opt {
            let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
            match (k, v) {
                ("no-new-privileges", "" | "true") => no_new_privs = true,
                ("no-new-privileges", "false") => no_new_privs = false,
                ("seccomp", "unconfined") => unconfined = true,
                ("seccomp", f) if !f.is_empty() => seccomp_file = Some(f.to_string()),
                _ => bail!(crate::error::hint(
                    format!("invalid --security-opt {opt:?}"),
                    "use no-new-privileges[=true|false], seccomp=unconfined or seccomp=/path/profile.json"
                )),
            }
        }
        let rlimits = rlimits(o.ulimit)?;
        let use_caps = !(o.no_security || o.no_caps);
        let use_seccomp = !(o.no_security || o.no_seccomp || unconfined);
        let mut profile_text = o.seccomp_profile.map(str::to_string);
        let (seccomp, seccomp_source) = if use_seccomp {
            let (profile, source) = match (&seccomp_file, &profile_text) {
                (Some(f), Some(text)) => (parse_profile(f, text)?, f.clone()),
                (Some(f), None) => {
                    let text = read_profile(f)?;
                    let profile = parse_profile(f, &text)?;
                    profile_text = Some(text);
                    (profile, f.clone())
                }
                (None, _) => (
                    profile::default_profile(),
                    "the default profile".to_string(),
                ),
            };
            let arch = seccomp::native_arch().ok_or_else(|| {
                crate::error::hint(
                    "seccomp filters are only built for x86_64 and aarch64",
                    "run with --security-opt seccomp=unconfined",
                )
            })?;
            // Gated groups follow the capabilities the container really gets.
            let effective_caps = if use_caps { caps } else { CapSet::all() };
            let plan = seccomp::plan(&profile, effective_caps, &arch, seccomp::kernel_version());
            (Some(plan.program(&arch)?), source)
        } else {
            (None, String::new())
        };
        Ok(Config {
            caps: use_caps.then_some(caps),
            no_new_privs: no_new_privs && !o.no_security,
            seccomp,
            seccomp_source,
            masks: !(o.no_security || o.no_masks),
            rlimits,
            recorded: SecurityArgs::recorded(&Options {
                seccomp_profile: profile_text.as_deref(),
                ..*o
            }),
        })
    }
}
// ANCHOR_END: config

/// `--ulimit`s, the last one of a resource winning; nofile 1024 unless given (as Docker).
fn rlimits(ulimit: &[String]) -> Result<Vec<Rlimit>> {
    let mut rlimits: Vec<Rlimit> = Vec::new();
    for u in ulimit {
        let r = parse_ulimit(u)?;
        rlimits.retain(|x| x.resource != r.resource);
        rlimits.push(r);
    }
    if !rlimits
        .iter()
        .any(|r| r.resource == Resource::RLIMIT_NOFILE)
    {
        rlimits.push(Rlimit {
            name: "nofile",
            resource: Resource::RLIMIT_NOFILE,
            soft: 1024,
            hard: 1024,
        });
    }
    Ok(rlimits)
}

/// `--security-opt seccomp=FILE`: a profile in Docker's JSON format.
fn read_profile(f: &str) -> Result<String> {
    std::fs::read_to_string(f).map_err(|e| {
        crate::error::hint(
            format!("cannot read the seccomp profile {f:?}: {e}"),
            "give the path of a JSON profile in Docker's format, or seccomp=unconfined",
        )
    })
}

fn parse_profile(f: &str, text: &str) -> Result<profile::Profile> {
    profile::parse_docker_json(text).map_err(|e| {
        crate::error::hint(
            format!(
                "invalid seccomp profile {f}: {}",
                crate::error::one_line(&e)
            ),
            "see Docker's profiles/seccomp/default.json for the format",
        )
    })
}

// ANCHOR: nondumpable
/// In the child as soon as the parent says "go", while it still runs minictr's code and holds its
/// open files inside the container: nobody (not even a process of the same uid in the container)
/// may ptrace it or open its /proc/PID/{exe,mem,fd}. execve makes the new program dumpable again,
/// as it should be.
pub fn set_nondumpable() -> Result<()> {
    crate::explain!(CHAPTER, "prctl(PR_SET_DUMPABLE, 0) — /proc/self/exe, mem and fd of this process are closed to the container");
    nondumpable()
}

fn nondumpable() -> Result<()> {
    prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0) failed")
}
// ANCHOR_END: nondumpable

/// Before pivot_root: mask and freeze the host-facing parts of /proc and /sys.
pub fn protect_paths(cfg: &Config, root: &crate::rootfs::safepath::Root) -> Result<()> {
    if !cfg.masks {
        crate::explain!(
            CHAPTER,
            "--no-masks: /proc/kcore, /proc/sys, … stay as the kernel shows them"
        );
        return Ok(());
    }
    let masked = paths::mask(root)?;
    let frozen = paths::make_readonly_paths(root)?;
    crate::explain!(
        CHAPTER,
        "masked {masked} of {} paths, made {frozen} of {} read-only (the others do not exist on this kernel)",
        paths::MASKED.len(),
        paths::READONLY.len()
    );
    Ok(())
}

// ANCHOR: before_user
/// After pivot_root, while still root with every capability: resource limits, then the bounding set.
pub fn before_user_switch(cfg: &Config) -> Result<()> {
    for r in &cfg.rlimits {
        crate::explain!(
            CHAPTER,
            "setrlimit(RLIMIT_{}, {{{}, {}}})",
            r.name.to_ascii_uppercase(),
            show_limit(r.soft),
            show_limit(r.hard)
        );
        setrlimit(r.resource, r.soft, r.hard).with_context(|| {
            crate::error::hint(
                format!("failed to set the {} limit to {}:{}", r.name, show_limit(r.soft), show_limit(r.hard)),
                "a hard limit can only be raised above minictr's own with CAP_SYS_RESOURCE on the host: lower it, or raise minictr's (ulimit -H)",
            )
        })?;
    }
    if !cfg.no_new_privs && cfg.seccomp.is_some() {
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it now, while we have it
        // (runc does the same). The filter must then allow what follows: setuid, capset, execve, …
        install_seccomp(cfg)?;
    }
    if let Some(keep) = cfg.caps {
        crate::explain!(
            CHAPTER,
            "prctl(PR_CAPBSET_DROP, …) for every capability but {}",
            keep.names()
        );
        caps::drop_bounding(keep)?;
    }
    Ok(())
}
// ANCHOR_END: before_user

// ANCHOR: after_user
/// After the user switch, the last steps before execve: the process's own capability sets, every
/// descriptor above 2 close-on-exec, no_new_privs, and seccomp last of all.
pub fn after_user_switch(cfg: &Config) -> Result<()> {
    if let Some(keep) = cfg.caps {
        let got = caps::set_process_caps(keep)?;
        crate::explain!(
            CHAPTER,
            "capset(permitted=effective={:#x}, inheritable=0); prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            got.0
        );
    }
    // setuid/setgid may have made us dumpable again (fs.suid_dumpable): not before exec.
    nondumpable()?;
    close_fds_on_exec()?;
    if cfg.no_new_privs {
        lock_down(cfg)?;
    }
    Ok(())
}

/// The last two walls, in this order: no_new_privs (so that an unprivileged process may install a
/// filter, and no execve grants more), then the seccomp filter.
fn lock_down(cfg: &Config) -> Result<()> {
    // EXERCISE(ch07, "no_new_privs, then seccomp", hint = "prctl(PR_SET_NO_NEW_PRIVS, 1), then install_seccomp(cfg) — the filter last of all")
    crate::explain!(CHAPTER, "prctl(PR_SET_NO_NEW_PRIVS, 1) — execve can never grant more (setuid bits and file capabilities are ignored)");
    prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS) failed")?;
    install_seccomp(cfg)
    // EXERCISE_END
}
// ANCHOR_END: after_user

fn install_seccomp(cfg: &Config) -> Result<()> {
    let Some(prog) = &cfg.seccomp else {
        crate::explain!(
            CHAPTER,
            "no seccomp filter (unconfined): every syscall reaches the kernel"
        );
        return Ok(());
    };
    crate::explain!(
        CHAPTER,
        "seccomp(SECCOMP_SET_MODE_FILTER, {} BPF instructions from {}) — the last wall: the kernel now checks every syscall",
        prog.len(),
        cfg.seccomp_source
    );
    seccomp::install(prog)
}

// ANCHOR: close_fds
/// Belt and braces against leaked descriptors (CVE-2024-21626): every fd minictr opens is already
/// O_CLOEXEC; this marks any other one above 2 close-on-exec too, so the command starts with 0, 1, 2
/// only. (The parent/child channel stays open until exec: a failed exec is still reported.)
pub fn close_fds_on_exec() -> Result<()> {
    crate::explain!(
        CHAPTER,
        "close_range(3, ~0, CLOSE_RANGE_CLOEXEC) — only 0, 1, 2 survive execve"
    );
    crate::fds::cloexec_from(3)
}
// ANCHOR_END: close_fds

fn show_limit(v: u64) -> String {
    if v == RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits() {
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((r.name, r.soft, r.hard), ("nofile", 1024, 2048));
        let r = parse_ulimit("CORE=0").unwrap();
        assert_eq!((r.resource, r.soft, r.hard), (Resource::RLIMIT_CORE, 0, 0));
        assert_eq!(parse_ulimit("stack=-1").unwrap().hard, RLIM_INFINITY);
        assert_eq!(
            parse_ulimit("nproc=10:unlimited").unwrap().hard,
            RLIM_INFINITY
        );
        for bad in [
            "nofile",
            "nofile=",
            "nofile=a",
            "files=1",
            "nofile=2:1",
            "nofile=1:2:3",
        ] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }

    fn opts<'a>(sec: &'a [String]) -> Options<'a> {
        Options {
            security_opt: sec,
            ..Default::default()
        }
    }

    #[test]
    fn a_profile_is_recorded_by_its_text_and_needs_no_file_later() {
        let f = std::env::temp_dir().join(format!("minictr-profile-{}.json", std::process::id()));
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        std::fs::write(&f, json).unwrap();
        let opt = vec![format!("seccomp={}", f.display())];
        let c = Config::from_options(&opts(&opt)).unwrap();
        assert_eq!(c.recorded.seccomp_profile.as_deref(), Some(json));
        // What `minictr exec` does: the file is gone, the recorded text builds the same filter.
        std::fs::remove_file(&f).unwrap();
        let again = Config::from_options(&c.recorded.options()).unwrap();
        assert_eq!(
            again.seccomp.map(|p| p.len()),
            c.seccomp.as_ref().map(|p| p.len())
        );
        assert!(Config::from_options(&opts(&opt)).is_err());
    }

    #[test]
    fn defaults_and_switches() {
        let c = Config::from_options(&Options::default()).unwrap();
        assert_eq!(c.caps, Some(CapSet::docker_default()));
        assert!(c.no_new_privs && c.masks && c.seccomp.is_some());
        assert_eq!(c.rlimits.len(), 1);
        assert_eq!((c.rlimits[0].soft, c.rlimits[0].hard), (1024, 1024));

        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let sec = s(&["no-new-privileges=false", "seccomp=unconfined"]);
        let c = Config::from_options(&opts(&sec)).unwrap();
        assert!(!c.no_new_privs && c.seccomp.is_none());
        for bad in [
            &["seccomp"][..],
            &["apparmor=x"],
            &["no-new-privileges=maybe"],
            &["seccomp=/nonexistent.json"],
        ] {
            assert!(Config::from_options(&opts(&s(bad))).is_err(), "{bad:?}");
        }
        let c = Config::from_options(&Options {
            no_security: true,
            ..Default::default()
        })
        .unwrap();
        assert!(c.caps.is_none() && !c.no_new_privs && c.seccomp.is_none() && !c.masks);
        let u = s(&["nofile=10:20", "nofile=30:40", "core=0"]);
        let c = Config::from_options(&Options {
            ulimit: &u,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.rlimits.len(), 2, "the last nofile wins; no default added");
        assert_eq!(c.rlimits[0].soft, 30);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::{clear, input};
    use proptest::prelude::*;

    const CAPS: &[&str] = &[
        "CAP_",
        "cap_",
        "NET_ADMIN",
        "SYS_ADMIN",
        "chown",
        "ALL",
        "all",
        "BOGUS",
    ];

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_hardening_flags_are_accepted_or_clearly_refused(
            cap_add in proptest::collection::vec(input(CAPS), 0..3),
            cap_drop in proptest::collection::vec(input(CAPS), 0..3),
            security_opt in proptest::collection::vec(input(&[
                "no-new-privileges", "seccomp", "=", ":", "unconfined", "true", "false",
                "/nonexistent.json", "label", "apparmor",
            ]), 0..3),
        ) {
            let o = Options {
                cap_add: &cap_add,
                cap_drop: &cap_drop,
                security_opt: &security_opt,
                ulimit: &[],
                no_security: false,
                no_caps: false,
                no_seccomp: false,
                no_masks: false,
                seccomp_profile: None,
            };
            clear(&Config::from_options(&o))?;
        }

        #[test]
        fn any_ulimit_is_parsed_or_clearly_refused(s in input(&["nofile", "core", "NOFILE", "bogus", "=", ":", "0", "1024", "2048", "-1", "-2", "unlimited", "18446744073709551616", " "])) {
            clear(&parse_ulimit(&s))?;
        }
    }
}
