//! Seccomp profiles in Docker's JSON format (chapter 7): `--security-opt seccomp=FILE.json` is parsed
//! into a [`Profile`], and minictr's own default is built as the same [`Profile`] from the tables
//! below, so both go through one compiler (`seccomp.rs`).
//!
//! The default is equivalent to Docker's default profile: an allow-list (anything not named gets
//! EPERM), some syscalls allowed only with the capability that the kernel would demand anyway, and
//! `clone`/`clone3` refused when they would create namespaces.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::borrow::Cow;

/// What the filter answers for a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Log,
    Trace(u32),
}

/// A comparison on one syscall argument (libseccomp's `SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & value) == value_two`
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    pub index: u8,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

/// When a rule applies: `includes` must all hold, `excludes` must all fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Capability names (`CAP_SYS_ADMIN`).
    pub caps: Vec<String>,
    /// Docker/Go architecture names (`amd64`, `arm64`, …).
    pub arches: Vec<String>,
    /// `(major, minor)`
    pub min_kernel: Option<(u32, u32)>,
}

/// One entry of `syscalls`: these names get `action` when `args` all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Borrowed for the built-in profile (no allocation per name), owned when parsed from JSON.
    pub names: Vec<Cow<'static, str>>,
    pub action: Action,
    pub args: Vec<Arg>,
    pub includes: Filter,
    pub excludes: Filter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub default_action: Action,
    pub rules: Vec<Rule>,
}

// ANCHOR: default_allow
/// Allowed for every container: what ordinary programs need. Names that do not exist on the
/// running architecture are skipped when the filter is built.
#[rustfmt::skip]
const ALLOW: &[&str] = &[
    // files and directories
    "access", "chdir", "chmod", "chown", "close", "close_range", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir",
    "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate",
    "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "lchown", "lgetxattr", "link", "linkat",
    "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "mkdir", "mkdirat",
    "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "removexattr", "rename", "renameat", "renameat2", "rmdir", "sendfile", "setxattr", "splice",
    "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee",
    "truncate", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vmsplice", "write",
    "writev",
    // processes, identity, signals
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getegid", "geteuid",
    "getgid", "getgroups", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid",
    "getresuid", "getrlimit", "get_robust_list", "getrusage", "getsid", "gettid", "getuid",
    "ioprio_get", "ioprio_set", "kill", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
    "process_mrelease", "restart_syscall", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsuid", "setgid", "setgroups",
    "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
    "set_robust_list", "setsid", "set_tid_address", "setuid", "sigaltstack", "signalfd",
    "signalfd4", "tgkill", "tkill", "vfork", "wait4", "waitid",
    // memory
    "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
    "mlockall", "mmap", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    // time and waiting
    "alarm", "adjtimex", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "eventfd", "eventfd2", "futex", "futex_waitv", "getitimer", "gettimeofday", "nanosleep",
    "pause", "poll", "ppoll", "pselect6", "select", "setitimer", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
    "timerfd_gettime", "timerfd_settime", "times",
    // IPC, async IO (not io_uring), sockets (socket itself has its own rule below)
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
    "msgctl", "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop",
    "semtimedop", "shmat", "shmctl", "shmdt", "shmget", "accept", "accept4", "bind", "connect",
    "getpeername", "getsockname", "getsockopt", "listen", "recvfrom", "recvmmsg", "recvmsg",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketpair",
    // system information, sandboxing of oneself
    "getcpu", "getrandom", "ioctl", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "sysinfo", "uname",
    // since 4.8 the kernel checks these like ptrace itself (Docker allows them from 4.8)
    "ptrace", "process_vm_readv", "process_vm_writev",
];
// ANCHOR_END: default_allow

// ANCHOR: default_gated
/// Allowed only when the container has the capability: the kernel would ask for it anyway, so these
/// syscalls are pure attack surface for a container without it.
#[rustfmt::skip]
const CAP_GATED: &[(&str, &[&str])] = &[
    ("CAP_SYS_ADMIN", &[
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    ]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &[
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace",
    ]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Any of these flags in clone's first argument creates a namespace: CLONE_NEWNS, NEWCGROUP,
/// NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. (CLONE_NEWTIME exists only for clone3 and unshare.)
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// mknod's file types: S_IFMT masks them; regular files, FIFOs and sockets carry no power.
const S_IFMT: u64 = 0o170000;
const HARMLESS_NODES: [u64; 4] = [0, 0o100000, 0o010000, 0o140000];
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;
// ANCHOR_END: default_gated

fn rule(names: &[&'static str], action: Action, args: Vec<Arg>) -> Rule {
    Rule {
        names: names.iter().map(|s| Cow::Borrowed(*s)).collect(),
        action,
        args,
        includes: Filter::default(),
        excludes: Filter::default(),
    }
}

fn arg(index: u8, op: Op, value: u64, value_two: u64) -> Arg {
    Arg {
        index,
        value,
        value_two,
        op,
    }
}

// ANCHOR: default_profile
/// minictr's default profile, in the same shape as a parsed Docker JSON file.
pub fn default_profile() -> Profile {
    let mut rules = vec![rule(ALLOW, Action::Allow, vec![])];
    let arch_only = |names: &[&'static str], arches: &[&str]| {
        let mut r = rule(names, Action::Allow, vec![]);
        r.includes.arches = arches.iter().map(|s| s.to_string()).collect();
        r
    };
    rules.push(arch_only(&["arch_prctl", "modify_ldt"], &["amd64"]));
    rules.push(arch_only(&["sync_file_range2"], &["arm64"]));
    // socket: everything but the kernel crypto API (AF_ALG) and host/VM sockets (AF_VSOCK).
    rules.push(rule(
        &["socket"],
        Action::Allow,
        vec![arg(0, Op::Ne, AF_ALG, 0), arg(0, Op::Ne, AF_VSOCK, 0)],
    ));
    // personality: only the harmless personas (Linux, UNAME26, READ_IMPLIES_EXEC… as Docker), and query.
    for p in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(rule(
            &["personality"],
            Action::Allow,
            vec![arg(0, Op::Eq, p, 0)],
        ));
    }
    // mknod/mknodat: files, FIFOs and sockets only. Docker allows device nodes too and relies on the
    // devices cgroup to refuse opening them; minictr has no devices cgroup, so a device node is
    // refused here (a user namespace refuses it anyway; this covers --userns=host).
    for t in HARMLESS_NODES {
        rules.push(rule(
            &["mknod"],
            Action::Allow,
            vec![arg(1, Op::MaskedEq, S_IFMT, t)],
        ));
        rules.push(rule(
            &["mknodat"],
            Action::Allow,
            vec![arg(2, Op::MaskedEq, S_IFMT, t)],
        ));
    }
    for (cap, names) in CAP_GATED {
        let mut r = rule(names, Action::Allow, vec![]);
        r.includes.caps = vec![cap.to_string()];
        rules.push(r);
    }
    // Without SYS_ADMIN: clone only without CLONE_NEW* flags; clone3 (whose flags sit in memory
    // where a filter cannot look) answers ENOSYS, so libc falls back to clone.
    let mut clone = rule(
        &["clone"],
        Action::Allow,
        vec![arg(0, Op::MaskedEq, CLONE_NAMESPACE_FLAGS, 0)],
    );
    clone.excludes.caps = vec!["CAP_SYS_ADMIN".into()];
    rules.push(clone);
    let mut clone3 = rule(&["clone3"], Action::Errno(ENOSYS), vec![]);
    clone3.excludes.caps = vec!["CAP_SYS_ADMIN".into()];
    rules.push(clone3);
    Profile {
        default_action: Action::Errno(libc::EPERM as u32),
        rules,
    }
}
// ANCHOR_END: default_profile

// ---- Docker's JSON format ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Option<Vec<JsonSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    #[serde(default)]
    names: Option<Vec<String>>,
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<JsonArg>>,
    #[serde(default)]
    includes: Option<JsonFilter>,
    #[serde(default)]
    excludes: Option<JsonFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn action(name: &str, errno: Option<u32>, default_errno: u32) -> Result<Action> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(default_errno)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(errno.unwrap_or(0)),
        other => bail!(
            "unsupported action {other:?} (minictr knows SCMP_ACT_ALLOW, ERRNO, KILL, KILL_PROCESS, TRAP, LOG, TRACE)"
        ),
    })
}

fn op(name: &str) -> Result<Op> {
    Ok(match name {
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => bail!("unknown argument comparison {other:?}"),
    })
}

fn kernel_version(s: &str) -> Result<(u32, u32)> {
    let mut it = s.split('.').map(|p| p.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        (Some(Ok(a)), None) => Ok((a, 0)),
        _ => bail!("invalid minKernel {s:?} (expected e.g. \"4.8\")"),
    }
}

fn filter(f: Option<JsonFilter>) -> Result<Filter> {
    let f = f.unwrap_or_default();
    Ok(Filter {
        caps: f.caps.unwrap_or_default(),
        arches: f.arches.unwrap_or_default(),
        min_kernel: f.min_kernel.as_deref().map(kernel_version).transpose()?,
    })
}

// ANCHOR: parse_json
/// Parse a profile in Docker's format: `defaultAction`, `defaultErrnoRet`, and `syscalls` entries
/// with `names`, `action`, `errnoRet`, `args`, `includes`/`excludes` (`caps`, `arches`,
/// `minKernel`). Other keys (`archMap`, `comment`, …) are accepted and ignored.
pub fn parse_docker_json(text: &str) -> Result<Profile> {
    let p: JsonProfile = serde_json::from_str(text).context("not a Docker seccomp profile")?;
    let default_errno = p.default_errno_ret.unwrap_or(libc::EPERM as u32);
    let default_action =
        action(&p.default_action, p.default_errno_ret, default_errno).context("defaultAction")?;
    let mut rules = Vec::new();
    for (i, s) in p.syscalls.unwrap_or_default().into_iter().enumerate() {
        let mut names = s.names.unwrap_or_default();
        names.extend(s.name);
        let args = s
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a.index > 5 {
                    bail!("argument index {} out of range 0..=5", a.index);
                }
                Ok(Arg {
                    index: a.index,
                    value: a.value,
                    value_two: a.value_two,
                    op: op(&a.op)?,
                })
            })
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("syscalls[{i}]"))?;
        rules.push(Rule {
            names: names.into_iter().map(Cow::Owned).collect(),
            action: action(&s.action, s.errno_ret, libc::EPERM as u32)
                .with_context(|| format!("syscalls[{i}]"))?,
            args,
            includes: filter(s.includes).with_context(|| format!("syscalls[{i}].includes"))?,
            excludes: filter(s.excludes).with_context(|| format!("syscalls[{i}].excludes"))?,
        });
    }
    Ok(Profile {
        default_action,
        rules,
    })
}
// ANCHOR_END: parse_json

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shape_of_dockers_default() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"name": "arch_prctl", "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]},
                 "comment": "old single-name form"}
            ]
        }"#;
        let p = parse_docker_json(text).unwrap();
        assert_eq!(p.default_action, Action::Errno(1));
        assert_eq!(p.rules.len(), 7);
        assert_eq!(p.rules[1].includes.min_kernel, Some((4, 8)));
        assert_eq!(p.rules[2].args[0].op, Op::Ne);
        assert_eq!(p.rules[3].includes.caps, vec!["CAP_SYS_ADMIN"]);
        assert_eq!(p.rules[4].args[0].op, Op::MaskedEq);
        assert_eq!(p.rules[4].excludes.arches, vec!["s390", "s390x"]);
        assert_eq!(p.rules[5].action, Action::Errno(38));
        assert_eq!(p.rules[6].names, vec!["arch_prctl"]);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(parse_docker_json("{}").is_err());
        assert!(parse_docker_json("not json").is_err());
        assert!(parse_docker_json(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).is_err());
        let bad_op = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}"#;
        assert!(parse_docker_json(bad_op).is_err());
        let bad_index = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#;
        assert!(parse_docker_json(bad_index).is_err());
        // A deny-list: default allow, errno without errnoRet is EPERM.
        let deny = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let p = parse_docker_json(deny).unwrap();
        assert_eq!(p.default_action, Action::Allow);
        assert_eq!(p.rules[0].action, Action::Errno(1));
    }

    #[test]
    fn the_default_never_allows_the_dangerous_ones() {
        let p = default_profile();
        let unconditional: Vec<&str> = p
            .rules
            .iter()
            .filter(|r| {
                r.includes.caps.is_empty() && r.action == Action::Allow && r.args.is_empty()
            })
            .flat_map(|r| r.names.iter().map(|n| n.as_ref()))
            .collect();
        for never in [
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "userfaultfd",
            "swapon",
            "swapoff",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "nfsservctl",
            "uselib",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "clone",
            "clone3",
            "open_by_handle_at",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "settimeofday",
            "clock_settime",
            "iopl",
            "ioperm",
            "syslog",
            "perf_event_open",
            "fsopen",
            "fsmount",
            "open_tree",
            "move_mount",
        ] {
            assert!(
                !unconditional.contains(&never),
                "{never} must not be allowed unconditionally"
            );
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::clear;
    use proptest::prelude::*;
    use serde_json::Value;

    /// JSON built from the words of Docker's profile format, so most cases are near-misses of a
    /// real profile (a wrong type here, an unknown action there) rather than plain garbage.
    fn json() -> impl Strategy<Value = Value> {
        let words = prop::sample::select(vec![
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY",
            "SCMP_CMP_EQ",
            "SCMP_CMP_NE",
            "SCMP_CMP_MASKED_EQ",
            "SCMP_CMP_GT",
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_AARCH64",
            "read",
            "write",
            "clone",
            "mount",
            "CAP_SYS_ADMIN",
            "4.8",
            "",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (0u64..8).prop_map(Value::from),
            words.prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        let keys = prop::sample::select(vec![
            "defaultAction",
            "defaultErrnoRet",
            "syscalls",
            "names",
            "name",
            "action",
            "errnoRet",
            "args",
            "index",
            "value",
            "valueTwo",
            "op",
            "includes",
            "excludes",
            "caps",
            "arches",
            "minKernel",
            "architectures",
            "archMap",
            "comment",
        ]);
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn parse_and_compile(text: &str) -> Result<(), TestCaseError> {
        let r = parse_docker_json(text);
        clear(&r)?;
        if let (Ok(p), Some(arch)) = (r, crate::security::seccomp::native_arch()) {
            let plan = crate::security::seccomp::plan(
                &p,
                crate::security::caps::CapSet::all(),
                &arch,
                (6, 18),
            );
            clear(&plan.program(&arch))?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_text_is_a_profile_or_clearly_refused(s: String) {
            parse_and_compile(&s)?;
        }

        #[test]
        fn any_profile_shaped_json_is_a_profile_or_clearly_refused(
            default in json(),
            rules in prop::collection::vec(json(), 0..6),
        ) {
            let doc = serde_json::json!({ "defaultAction": default, "syscalls": rules });
            parse_and_compile(&doc.to_string())?;
            parse_and_compile(&serde_json::json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": doc["syscalls"] }).to_string())?;
        }
    }
}
