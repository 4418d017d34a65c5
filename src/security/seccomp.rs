//! seccomp (chapter 7): a BPF program the kernel runs on every syscall the container makes. We turn a
//! [`Profile`] (Docker's format) into BPF with the pure-Rust `seccompiler` crate, for the
//! architecture we run on, once per `minictr run`, in the parent, before clone.
//!
//! `seccompiler` builds a filter with ONE "match" and ONE "mismatch" action. A profile mixes actions
//! (allow most, ENOSYS for clone3, EPERM for the rest), so we stack filters and let the kernel's rule
//! decide: every filter runs, and the answer with the highest precedence wins
//! (KILL > TRAP > ERRNO > TRACE > LOG > ALLOW; between equals, the most recently installed filter).
//!
//! - one filter per non-allow action X: "X if a rule for X matches, else allow";
//! - then the base filter: "allow if any rule matches, else the default action".

use super::caps::CapSet;
use super::profile::{Action, Arg, Op, Profile, Rule};
use super::syscalls;
use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// The running architecture, in the names profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    pub target: TargetArch,
    /// Docker/Go name: `amd64`, `arm64`.
    pub docker: &'static str,
    pub table: syscalls::Table,
}

pub fn native_arch() -> Option<Arch> {
    #[cfg(target_arch = "x86_64")]
    return Some(Arch {
        target: TargetArch::x86_64,
        docker: "amd64",
        table: syscalls::X86_64,
    });
    #[cfg(target_arch = "aarch64")]
    return Some(Arch {
        target: TargetArch::aarch64,
        docker: "arm64",
        table: syscalls::AARCH64,
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

/// One filter: `matched` when a syscall is in `rules` (and, if it has conditions, one condition
/// list matches), `otherwise` else. An empty condition list means "the number alone matches".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub matched: Action,
    pub otherwise: Action,
    pub rules: BTreeMap<i64, Vec<Vec<Arg>>>,
}

impl Layer {
    fn add(&mut self, nr: i64, args: &[Arg]) {
        let alts = self.rules.entry(nr).or_default();
        if alts.iter().any(|a| a.is_empty()) {
            return; // already unconditional
        }
        if args.is_empty() {
            alts.clear();
        }
        if !alts.iter().any(|a| a == args) {
            alts.push(args.to_vec());
        }
    }

    #[cfg_attr(not(test), allow(dead_code))] // the kernel's side, modelled for the unit tests
    fn answer(&self, nr: i64, argv: &[u64; 6]) -> Action {
        match self.rules.get(&nr) {
            Some(alts) if alts.iter().any(|a| a.is_empty()) => self.matched,
            Some(alts) if alts.iter().any(|a| a.iter().all(|c| holds(c, argv))) => self.matched,
            _ => self.otherwise,
        }
    }
}

#[cfg_attr(not(test), allow(dead_code))]
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

/// The filters to install, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layers: Vec<Layer>,
}

/// The kernel's precedence of an action (`SECCOMP_RET_*` as a signed number: lower wins).
#[cfg_attr(not(test), allow(dead_code))]
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

impl Plan {
    /// What the kernel answers for syscall `nr` with these arguments, all layers combined: the layers
    /// run from the last installed to the first; a strictly stronger answer replaces the current one.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn verdict(&self, nr: i64, argv: &[u64; 6]) -> Action {
        let mut best = Action::Allow;
        for layer in self.layers.iter().rev() {
            let a = layer.answer(nr, argv);
            if precedence(a) < precedence(best) {
                best = a;
            }
        }
        best
    }

    /// The verdict for a syscall by name with all-zero arguments (`None`: not on this arch).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn verdict_by_name(&self, arch: &Arch, name: &str, argv: &[u64; 6]) -> Option<Action> {
        syscalls::number(arch.table, name).map(|nr| self.verdict(nr, argv))
    }

    /// BPF programs, in installation order.
    pub fn programs(&self, arch: &Arch) -> Result<Vec<BpfProgram>> {
        self.layers
            .iter()
            .map(|l| {
                let mut rules = BTreeMap::new();
                for (nr, alts) in &l.rules {
                    let mut chain = Vec::new();
                    for alt in alts.iter().filter(|a| !a.is_empty()) {
                        let conds = alt
                            .iter()
                            .map(|c| {
                                let (op, value) = match c.op {
                                    Op::Eq => (SeccompCmpOp::Eq, c.value),
                                    Op::Ne => (SeccompCmpOp::Ne, c.value),
                                    Op::Lt => (SeccompCmpOp::Lt, c.value),
                                    Op::Le => (SeccompCmpOp::Le, c.value),
                                    Op::Gt => (SeccompCmpOp::Gt, c.value),
                                    Op::Ge => (SeccompCmpOp::Ge, c.value),
                                    Op::MaskedEq => (SeccompCmpOp::MaskedEq(c.value), c.value_two),
                                };
                                SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, value)
                            })
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        chain.push(SeccompRule::new(conds)?);
                    }
                    rules.insert(*nr, chain);
                }
                let filter =
                    SeccompFilter::new(rules, to_sc(l.otherwise), to_sc(l.matched), arch.target)?;
                BpfProgram::try_from(filter)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .context("failed to build the seccomp BPF program")
    }
}

fn to_sc(a: Action) -> SeccompAction {
    match a {
        Action::Allow => SeccompAction::Allow,
        Action::Errno(e) => SeccompAction::Errno(e),
        Action::KillThread => SeccompAction::KillThread,
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Log => SeccompAction::Log,
        Action::Trace(n) => SeccompAction::Trace(n),
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
        && inc.min_kernel.map_or(true, |min| kernel >= min)
        && !exc.caps.iter().any(|c| caps.has_name(c))
        && !exc.arches.iter().any(|a| arch_matches(arch, a))
        && exc.min_kernel.map_or(true, |min| kernel < min)
}
// ANCHOR_END: applies

// ANCHOR: plan
/// Resolve a profile for this container (its capabilities, this arch and kernel) into layers.
pub fn plan(profile: &Profile, caps: CapSet, arch: &Arch, kernel: (u32, u32)) -> Plan {
    let mut special: Vec<Layer> = Vec::new();
    let mut base = Layer {
        matched: Action::Allow,
        otherwise: profile.default_action,
        rules: BTreeMap::new(),
    };
    for rule in profile
        .rules
        .iter()
        .filter(|r| applies(r, caps, arch, kernel))
    {
        for nr in rule
            .names
            .iter()
            .filter_map(|n| syscalls::number(arch.table, n))
        {
            // The base layer lets through whatever some rule decides on; the special layers decide.
            base.add(nr, &rule.args);
            if rule.action != Action::Allow {
                let idx = match special.iter().position(|l| l.matched == rule.action) {
                    Some(i) => i,
                    None => {
                        special.push(Layer {
                            matched: rule.action,
                            otherwise: Action::Allow,
                            rules: BTreeMap::new(),
                        });
                        special.len() - 1
                    }
                };
                special[idx].add(nr, &rule.args);
            }
        }
    }
    let mut layers = special;
    if profile.default_action != Action::Allow {
        layers.push(base);
    }
    Plan { layers }
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
/// Install the programs (the base allow-list last, so `seccomp(2)` itself is still allowed while
/// the earlier ones go in). Without no_new_privs the kernel demands CAP_SYS_ADMIN for this.
///
/// We make the syscall ourselves: `seccompiler::apply_filter` would also switch no_new_privs on,
/// and `--security-opt no-new-privileges=false` must be able to leave it off.
pub fn install(programs: &[BpfProgram]) -> Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const seccompiler::sock_filter,
    }
    for p in programs {
        let prog = SockFprog {
            len: p.len() as u16,
            filter: p.as_ptr(),
        };
        // SAFETY: the kernel copies `prog` and the instructions it points to; both outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const SockFprog,
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                crate::error::hint(
                    "failed to install the seccomp filter",
                    "the kernel needs CONFIG_SECCOMP_FILTER; --security-opt seccomp=unconfined runs without",
                )
            });
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
    fn programs_build_and_fit() {
        let p = plan(
            &default_profile(),
            CapSet::docker_default(),
            &arch(),
            (6, 18),
        );
        let progs = p.programs(&arch()).unwrap();
        assert_eq!(progs.len(), 2, "an ENOSYS layer and the base layer");
        assert!(progs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        let all = plan(&default_profile(), CapSet::all(), &arch(), (6, 18));
        assert_eq!(
            all.layers.len(),
            1,
            "with SYS_ADMIN clone3 is simply allowed"
        );
        all.programs(&arch()).unwrap();
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
        p.programs(&arch()).unwrap();
    }

    #[test]
    fn a_deny_list_profile_has_no_base_layer() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
        let p = plan(
            &parse_docker_json(text).unwrap(),
            CapSet(0),
            &arch(),
            (6, 18),
        );
        assert_eq!(p.layers.len(), 1);
        assert!(blocked(&p, "mkdirat", NO_ARGS));
        assert!(!blocked(&p, "keyctl", NO_ARGS));
    }
}
