//! seccomp (chapter 7): a BPF program the kernel runs on every syscall the container makes. We turn a
//! [`Profile`] (Docker's format) into classic BPF (`bpf.rs`, pure Rust), for the architecture we
//! run on, once per `minictr run`, in the parent, before clone.
//!
//! A profile resolves, for this container, to one answer per syscall number: an action, or a short
//! list of (argument conditions → action) tried in order, and the default action for every syscall
//! it does not name. That [`Plan`] becomes ONE BPF program: each extra program costs another
//! verification and JIT compilation when installed (tens of µs each), and the kernel runs them all.

use super::bpf::{self, Program};
use super::caps::CapSet;
use super::profile::{Action, Arg, Op, Profile, Rule};
use super::syscalls;
use anyhow::{Context, Result};
use std::collections::BTreeMap;

/// The running architecture, in the names profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// `AUDIT_ARCH_*`: what the kernel puts in `seccomp_data.arch`.
    pub audit: u32,
    /// Docker/Go name: `amd64`, `arm64`.
    pub docker: &'static str,
    pub table: &'static syscalls::Table,
}

pub fn native_arch() -> Option<Arch> {
    #[cfg(target_arch = "x86_64")]
    return Some(Arch {
        audit: 0xC000_003E, // AUDIT_ARCH_X86_64
        docker: "amd64",
        table: &syscalls::X86_64,
    });
    #[cfg(target_arch = "aarch64")]
    return Some(Arch {
        audit: 0xC000_00B7, // AUDIT_ARCH_AARCH64
        docker: "arm64",
        table: &syscalls::AARCH64,
    });
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return None;
}

fn arch_matches(arch: &Arch, name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("scmp_arch_").unwrap_or(&n);
    match arch.docker {
        "amd64" => matches!(n, "amd64" | "x86_64"),
        "arm64" => matches!(n, "arm64" | "aarch64"),
        _ => false,
    }
}

/// One way a syscall can be answered: when every condition of `args` holds (all of them; none means
/// always), `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alt {
    pub args: Vec<Arg>,
    pub action: Action,
}

/// What the filter answers: per syscall number, alternatives tried in order (the strongest action
/// first, as the kernel would rank them); `default` for every other number, and when none holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub default: Action,
    pub rules: BTreeMap<i64, Vec<Alt>>,
}

impl Plan {
    fn add(&mut self, nr: i64, args: &[Arg], action: Action) {
        let alts = self.rules.entry(nr).or_default();
        if alts.iter().any(|a| a.args.is_empty() && a.action == action)
            || alts.iter().any(|a| a.args == args && a.action == action)
        {
            return;
        }
        // Keep the strongest first; an unconditional alternative ends the list (nothing after it
        // could ever be reached).
        let at = alts.partition_point(|a| precedence(a.action) <= precedence(action));
        alts.insert(
            at,
            Alt {
                args: args.to_vec(),
                action,
            },
        );
        if let Some(cut) = alts.iter().position(|a| a.args.is_empty()) {
            alts.truncate(cut + 1);
        }
    }

    /// What the kernel answers for syscall `nr` with these arguments.
    #[cfg_attr(not(test), allow(dead_code))] // the kernel's side, modelled for the unit tests
    pub fn verdict(&self, nr: i64, argv: &[u64; 6]) -> Action {
        self.rules
            .get(&nr)
            .and_then(|alts| alts.iter().find(|a| a.args.iter().all(|c| holds(c, argv))))
            .map_or(self.default, |a| a.action)
    }

    /// The verdict for a syscall by name (`None`: not on this arch).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn verdict_by_name(&self, arch: &Arch, name: &str, argv: &[u64; 6]) -> Option<Action> {
        syscalls::number(arch.table, name).map(|nr| self.verdict(nr, argv))
    }

    /// The BPF program.
    pub fn program(&self, arch: &Arch) -> Result<Program> {
        bpf::compile(self, arch.audit).context("failed to build the seccomp BPF program")
    }
}

fn holds(c: &Arg, argv: &[u64; 6]) -> bool {
    let v = argv[c.index as usize];
    match c.op {
        Op::Eq => v == c.value,
        Op::Ne => v != c.value,
        Op::Lt => v < c.value,
        Op::Le => v <= c.value,
        Op::Gt => v > c.value,
        Op::Ge => v >= c.value,
        Op::MaskedEq => v & c.value == c.value_two,
    }
}

/// The kernel's precedence of an action (`SECCOMP_RET_*` as a signed number: lower wins).
fn precedence(a: Action) -> i64 {
    match a {
        Action::KillProcess => -0x8000_0000,
        Action::KillThread => 0,
        Action::Trap => 0x0003_0000,
        Action::Errno(_) => 0x0005_0000,
        Action::Trace(_) => 0x7ff0_0000,
        Action::Log => 0x7ffc_0000,
        Action::Allow => 0x7fff_0000,
    }
}

// ANCHOR: applies
/// Does `rule` apply to this container? `includes` must all hold (every listed capability is in the
/// container's set, the arch is listed, the kernel is new enough), and nothing in `excludes` may.
fn applies(rule: &Rule, caps: CapSet, arch: &Arch, kernel: (u32, u32)) -> bool {
    let inc = &rule.includes;
    let exc = &rule.excludes;
    inc.caps.iter().all(|c| caps.has_name(c))
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| arch_matches(arch, a)))
        && inc.min_kernel.is_none_or(|min| kernel >= min)
        && !exc.caps.iter().any(|c| caps.has_name(c))
        && !exc.arches.iter().any(|a| arch_matches(arch, a))
        && exc.min_kernel.is_none_or(|min| kernel < min)
}
// ANCHOR_END: applies

// ANCHOR: plan
/// Resolve a profile for this container (its capabilities, this arch and kernel): the rules that
/// apply, by syscall number.
pub fn plan(profile: &Profile, caps: CapSet, arch: &Arch, kernel: (u32, u32)) -> Plan {
    let mut plan = Plan {
        default: profile.default_action,
        rules: BTreeMap::new(),
    };
    for rule in profile
        .rules
        .iter()
        .filter(|r| applies(r, caps, arch, kernel))
    {
        for name in &rule.names {
            if let Some(nr) = syscalls::number(arch.table, name) {
                plan.add(nr, &rule.args, rule.action);
            }
        }
    }
    plan
}
// ANCHOR_END: plan

/// The running kernel's (major, minor), from uname.
pub fn kernel_version() -> (u32, u32) {
    let u = nix::sys::utsname::uname().ok();
    let release = u
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

// ANCHOR: install
/// Install the program. Without no_new_privs the kernel demands CAP_SYS_ADMIN for this.
pub fn install(p: &Program) -> Result<()> {
    {
        let prog = libc::sock_fprog {
            len: p.len() as u16,
            filter: p.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies `prog` and the instructions it points to; both outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            // EACCES: neither no_new_privs nor CAP_SYS_ADMIN (seccomp(2)).
            let why = if e.raw_os_error() == Some(libc::EACCES) {
                "an unprivileged process may only install a filter with no_new_privs set: prctl(PR_SET_NO_NEW_PRIVS, 1) first"
            } else {
                "the kernel needs CONFIG_SECCOMP_FILTER; --security-opt seccomp=unconfined runs without"
            };
            return Err(e)
                .with_context(|| crate::error::hint("failed to install the seccomp filter", why));
        }
    }
    Ok(())
}
// ANCHOR_END: install

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::profile::{default_profile, parse_docker_json};

    fn arch() -> Arch {
        native_arch().expect("x86_64 or aarch64")
    }

    fn blocked(p: &Plan, name: &str, argv: [u64; 6]) -> bool {
        p.verdict_by_name(&arch(), name, &argv)
            .is_some_and(|a| a != Action::Allow)
    }

    const NO_ARGS: [u64; 6] = [0; 6];

    #[test]
    fn default_blocks_what_docker_blocks() {
        let p = plan(
            &default_profile(),
            CapSet::docker_default(),
            &arch(),
            (6, 18),
        );
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "userfaultfd",
            "swapon",
            "swapoff",
            "io_uring_setup",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "fsopen",
            "fsmount",
            "open_tree",
            "move_mount",
            "open_by_handle_at",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "settimeofday",
            "clock_settime",
            "syslog",
            "acct",
            "kcmp",
            "pidfd_getfd",
        ] {
            assert!(blocked(&p, name, NO_ARGS), "{name} should be blocked");
        }
        assert_eq!(
            p.verdict_by_name(&arch(), "keyctl", &NO_ARGS),
            Some(Action::Errno(1))
        );
        for name in [
            "read",
            "write",
            "execve",
            "exit_group",
            "statx",
            "newfstatat",
            "close_range",
            "capset",
            "prctl",
            "setresuid",
            "chroot",
            "ptrace",
            "sendmsg",
            "rt_sigprocmask",
        ] {
            assert!(!blocked(&p, name, NO_ARGS), "{name} should be allowed");
        }
        // chroot is gated by SYS_CHROOT, which Docker's 14 include.
        let no_chroot = plan(&default_profile(), CapSet(0), &arch(), (6, 18));
        assert!(blocked(&no_chroot, "chroot", NO_ARGS));
    }

    #[test]
    fn clone_with_namespace_flags_and_clone3() {
        let p = plan(
            &default_profile(),
            CapSet::docker_default(),
            &arch(),
            (6, 18),
        );
        let sigchld = libc::SIGCHLD as u64;
        assert!(!blocked(
            &p,
            "clone",
            [sigchld | libc::CLONE_VM as u64, 0, 0, 0, 0, 0]
        ));
        assert!(blocked(
            &p,
            "clone",
            [sigchld | libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]
        ));
        assert!(blocked(
            &p,
            "clone",
            [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]
        ));
        assert_eq!(
            p.verdict_by_name(&arch(), "clone3", &NO_ARGS),
            Some(Action::Errno(libc::ENOSYS as u32))
        );
        // socket: AF_INET yes, AF_ALG and AF_VSOCK no.
        assert!(!blocked(
            &p,
            "socket",
            [libc::AF_INET as u64, 1, 0, 0, 0, 0]
        ));
        assert!(blocked(&p, "socket", [libc::AF_ALG as u64, 5, 0, 0, 0, 0]));
        assert!(blocked(
            &p,
            "socket",
            [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]
        ));
        assert!(!blocked(&p, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]));
        // mknodat: a FIFO yes, a block or character device no.
        let fifo = (libc::S_IFIFO | 0o644) as u64;
        assert!(!blocked(&p, "mknodat", [0, 0, fifo, 0, 0, 0]));
        assert!(blocked(
            &p,
            "mknodat",
            [0, 0, (libc::S_IFBLK | 0o600) as u64, 0x800, 0, 0]
        ));
        assert!(blocked(
            &p,
            "mknodat",
            [0, 0, (libc::S_IFCHR | 0o600) as u64, 0x103, 0, 0]
        ));
        assert!(blocked(&p, "personality", [0x0040_0000, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn sys_admin_opens_its_group() {
        let caps = crate::security::caps::configured(&["SYS_ADMIN".into()], &[]).unwrap();
        let p = plan(&default_profile(), caps, &arch(), (6, 18));
        for name in [
            "mount", "umount2", "unshare", "setns", "fsopen", "clone3", "bpf",
        ] {
            assert!(
                !blocked(&p, name, NO_ARGS),
                "{name} should be allowed with SYS_ADMIN"
            );
        }
        assert!(!blocked(
            &p,
            "clone",
            [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]
        ));
        // …but not what other capabilities gate, nor the never-allowed ones.
        for name in [
            "keyctl",
            "reboot",
            "init_module",
            "settimeofday",
            "io_uring_setup",
        ] {
            assert!(blocked(&p, name, NO_ARGS), "{name} still blocked");
        }
    }

    #[test]
    fn one_small_program() {
        let p = plan(
            &default_profile(),
            CapSet::docker_default(),
            &arch(),
            (6, 18),
        );
        let prog = p.program(&arch()).unwrap();
        assert!(prog.len() < 512, "{} instructions", prog.len());
        let all = plan(&default_profile(), CapSet::all(), &arch(), (6, 18));
        assert!(all.program(&arch()).unwrap().len() < 512);
    }

    /// The BPF the kernel will run gives, for every syscall number and a spread of arguments, the
    /// same answer as the rule table.
    #[test]
    fn the_bpf_program_agrees_with_the_rule_table() {
        let a = arch();
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 4294967296, "op": "SCMP_CMP_GT"}]},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 100, "op": "SCMP_CMP_LE"}]},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 4294967396, "op": "SCMP_CMP_GE"}]},
            {"names": ["close"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_LT"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["dup"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_NE"}]},
            {"names": ["dup2"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["dup2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9, "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]}
        ]}"#;
        // The stronger answer wins whatever the order of the rules: dup2(7, …) gets EBADF.
        let mixed = plan(&parse_docker_json(json).unwrap(), CapSet(0), &a, (6, 18));
        if let Some(nr) = syscalls::number(a.table, "dup2") {
            assert_eq!(mixed.verdict(nr, &[7, 0, 0, 0, 0, 0]), Action::Errno(9));
            assert_eq!(mixed.verdict(nr, &[6, 0, 0, 0, 0, 0]), Action::Allow);
        }
        let plans = [
            plan(&default_profile(), CapSet::docker_default(), &a, (6, 18)),
            plan(&default_profile(), CapSet::all(), &a, (6, 18)),
            plan(&default_profile(), CapSet(0), &a, (6, 18)),
            plan(&parse_docker_json(json).unwrap(), CapSet(0), &a, (6, 18)),
        ];
        let edges = [
            0u64,
            1,
            6,
            7,
            8,
            38,
            40,
            99,
            100,
            101,
            0xffff_ffff,
            1 << 32,
            (1 << 32) + 1,
            4294967396,
            4294967397,
            u64::MAX,
            0x7E02_0000,
            0x1000_0011,
            0x20008,
            0x1_0002_0008,
            0xffff_ffff_0000_1000,
            0o060600,
            0o010644,
        ];
        for p in &plans {
            let prog = p.program(&a).unwrap();
            {
                for nr in 0..470i64 {
                    for (i, e) in edges.iter().enumerate() {
                        let mut argv = [0u64; 6];
                        for (j, slot) in argv.iter_mut().enumerate() {
                            *slot = edges[(i + j) % edges.len()];
                        }
                        argv[0] = *e;
                        let want = bpf::ret_value(p.verdict(nr, &argv));
                        let got = bpf::run(&prog, nr as u32, a.audit, &argv);
                        assert_eq!(got, want, "nr {nr} args {argv:x?}");
                    }
                }
                // Another ABI's syscalls are killed, whatever their number.
                assert_eq!(bpf::run(&prog, 0, 0x4000_0003, &[0; 6]), 0x8000_0000);
            }
        }
    }

    #[test]
    fn arch_and_kernel_filters() {
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64", "arm64"]}},
            {"names": ["getuid", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]}"#;
        let p = plan(
            &parse_docker_json(text).unwrap(),
            CapSet(0),
            &arch(),
            (6, 18),
        );
        for n in ["getpid", "getppid", "gettid"] {
            assert!(blocked(&p, n, NO_ARGS), "{n}");
        }
        assert!(!blocked(&p, "getuid", NO_ARGS));
        assert_eq!(
            p.verdict_by_name(&arch(), "mkdirat", &NO_ARGS),
            Some(Action::Errno(13))
        );
        p.program(&arch()).unwrap();
    }

    #[test]
    fn a_deny_list_profile() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
        let p = plan(
            &parse_docker_json(text).unwrap(),
            CapSet(0),
            &arch(),
            (6, 18),
        );
        assert_eq!(p.default, Action::Allow);
        assert!(blocked(&p, "mkdirat", NO_ARGS));
        assert!(!blocked(&p, "keyctl", NO_ARGS));
    }
}
