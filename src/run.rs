//! The orchestrator: `minictr run`'s start sequence. It is the only place that knows the order of
//! the stages; each stage is a module that knows nothing of the others. The numbered steps follow
//! chapter 0's picture (and shared/notes/start-sequence.md):
//!
//! parent: 1 validate → 2 reserve → 3 clone → 4 uid/gid maps → 5 prepare the root → 6 "go" →
//! child: 7 become root → 8 hostname → 9 mounts → 10 pivot_root → 11 user, env, exec →
//! parent: 12 forward signals, wait → 13 tear down, exit with the command's status.

use crate::error::{CommandError, EXIT_RUNTIME};
use crate::sync::{Channel, Msg};
use crate::{cgroups, error, namespaces, process, rootfs, state, sync, userns, RunArgs};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub const CHAPTER: &str = "ch01 namespaces";

/// Signals minictr passes on to the container's first process.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Everything `minictr run` will do, validated before anything is created (step 1).
pub struct Spec {
    pub id: String,
    pub hostname: String,
    pub namespaces: namespaces::Namespaces,
    pub rootfs: rootfs::Config,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: process::UserSpec,
    pub userns: Option<userns::Plan>,
    /// ch04: the container's cgroup (planned; created in step 2) and `--stats`.
    pub cgroup: cgroups::Decision,
    pub stats: bool,
}

// ANCHOR: validate
impl Spec {
    /// Step 1: parse and check every input. Nothing exists yet, so an error here leaves nothing behind.
    pub fn from_args(args: &RunArgs) -> Result<Spec> {
        let id = state::new_id();
        let hostname = args.hostname.clone().unwrap_or_else(|| id.clone());
        namespaces::validate_hostname(&hostname)?;
        let env = args
            .env
            .iter()
            .map(|e| process::parse_env(e))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let user = match &args.user {
            Some(u) => process::parse_user(u)?,
            None => process::UserSpec::default(),
        };
        let volumes = args
            .volumes
            .iter()
            .map(|v| rootfs::parse_volume(v))
            .collect::<Result<Vec<_>>>()?;
        let workdir = args.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        if !workdir.is_absolute() {
            bail!(error::hint(
                format!(
                    "invalid working directory {}: not absolute",
                    workdir.display()
                ),
                "give an absolute path inside the container, e.g. -w /tmp"
            ));
        }
        let userns = match args.userns.as_str() {
            "private" | "" => {
                let parse = |v: &[String]| {
                    v.iter()
                        .map(|m| userns::IdMap::parse(m))
                        .collect::<Result<Vec<_>>>()
                };
                Some(userns::plan(&parse(&args.uidmap)?, &parse(&args.gidmap)?)?)
            }
            "host" => {
                if !args.uidmap.is_empty() || !args.gidmap.is_empty() {
                    bail!(error::hint(
                        "--uidmap/--gidmap need a user namespace",
                        "drop --userns=host"
                    ));
                }
                if !nix::unistd::geteuid().is_root() {
                    bail!(error::hint(
                        "--userns=host needs root",
                        "run as root (sudo), or leave the user namespace on so your own uid becomes root inside"
                    ));
                }
                None
            }
            other => bail!(error::hint(
                format!("invalid --userns value {other:?}"),
                "use --userns=private or --userns=host"
            )),
        };
        let namespaces = namespaces::Namespaces {
            user: userns.is_some(),
            pid: !args.no_pid,
            net: !args.no_net,
            uts: !args.no_uts,
            ipc: !args.no_ipc,
            cgroup: !args.no_cgroupns,
        };
        // ch04: limits parsed and checked, layout detected, directories chosen — nothing created.
        let cgroup = cgroups::plan(
            &cgroups::Options {
                memory: args.memory.clone(),
                memory_swap: args.memory_swap.clone(),
                cpus: args.cpus.clone(),
                cpu_shares: args.cpu_shares.clone(),
                pids_limit: args.pids_limit.clone(),
                cpuset_cpus: args.cpuset_cpus.clone(),
                blkio_weight: args.blkio_weight.clone(),
                cgroup_parent: args.cgroup_parent.clone(),
                off: args.no_cgroup,
            },
            &id,
            !nix::unistd::geteuid().is_root(),
        )?;
        let rootfs = rootfs::Config {
            rootfs: rootfs::check_rootfs(&args.rootfs)?,
            volumes,
            workdir,
            own_netns: namespaces.net,
            own_ipcns: namespaces.ipc,
        };
        Ok(Spec {
            id,
            hostname,
            namespaces,
            rootfs,
            command: args.command.clone(),
            env,
            user,
            userns,
            cgroup,
            stats: args.stats,
        })
    }
}
// ANCHOR_END: validate

/// Undo what crashed runs left behind. Every minictr command calls this first.
pub fn cleanup_stale() {
    for stale in state::stale_entries(&state::base_dir()) {
        // ch04: kill what is left in the dead run's cgroups and remove them.
        if let Some(paths) = stale.state.as_ref().and_then(|s| s.resources.get("cgroup")) {
            cgroups::remove_stale(paths);
        }
        crate::explain!(
            state::CHAPTER,
            "removing stale runtime directory {:?} (its minictr died)",
            stale.path
        );
        if let Err(e) = stale.remove() {
            eprintln!("minictr: warning: {}", error::one_line(&e));
        }
    }
}

/// Kills and reaps the child if the parent fails between clone and exec: no half-made container.
struct ChildGuard(Option<Pid>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

// ANCHOR: run
/// `minictr run`: returns the exit status minictr should exit with.
pub fn run(args: RunArgs) -> Result<i32> {
    if args.explain {
        crate::explain::enable();
    }
    // 1. Validate everything before creating anything.
    let spec = Spec::from_args(&args)?;
    if spec.userns.is_none() && !nix::unistd::geteuid().is_root() {
        bail!(error::hint(
            "creating namespaces without a user namespace needs root",
            "run with sudo, or drop --userns=host"
        ));
    }
    cleanup_stale();

    // 2. Reserve what is named on the host (recorded first, so a crash can be undone).
    let mut rt = state::RuntimeDir::create(
        &state::base_dir(),
        state::State {
            id: spec.id.clone(),
            owner_pid: std::process::id() as i32,
            created: state::now(),
            rootfs: spec.rootfs.rootfs.clone(),
            command: spec.command.clone(),
            hostname: spec.hostname.clone(),
            ..Default::default()
        },
    )?;

    // 2. ch04: the cgroup — recorded, created and limited before clone: the child never runs unlimited.
    let cgroup = match &spec.cgroup {
        cgroups::Decision::Use(plan) => {
            rt.record("cgroup", plan.paths())?;
            Some(cgroups::Cgroup::create(plan)?)
        }
        cgroups::Decision::Skip(why) => {
            eprintln!("minictr: note: {why}");
            None
        }
        cgroups::Decision::Off => None,
    };

    // Signals are blocked from here on and read from a signalfd: none can kill minictr half-way, and
    // each one is passed on to the container once it runs.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .context("failed to block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .context("failed to create a signalfd")?;

    // 3. clone: the child blocks on the channel until the parent says "go".
    let (parent_end, child_end) = sync::pair()?;
    let mut flags = spec.namespaces.clone_flags();
    if late_cgroupns(&spec) {
        flags &= !(libc::CLONE_NEWCGROUP as u64); // ch04: v1 — the child unshares it once moved
    }
    let cgroup_fd = cgroup.as_ref().and_then(|c| c.clone_fd());
    let pid = namespaces::clone_child(flags, cgroup_fd, || {
        child_main(&spec, &child_end, &parent_end, &old_mask, sfd.as_raw_fd())
    })?;
    drop(child_end);
    let mut guard = ChildGuard(Some(pid));
    rt.state.container_pid = Some(pid.as_raw());
    rt.save()?;

    // 4. User namespace: the maps, before the child does anything as "root".
    let mut go_fds: Vec<OwnedFd> = Vec::new();
    if let Some(plan) = &spec.userns {
        userns::write_maps(pid, plan)?;
        // 5. The root: an idmapped copy of the rootfs (root only; rootless owns its rootfs already).
        if plan.writer == userns::Writer::Direct {
            match userns::idmapped_mount(pid, &spec.rootfs.rootfs, false) {
                Ok(fd) => go_fds.push(fd),
                Err(e) => eprintln!(
                    "minictr: note: {} — falling back to a plain bind: files owned by host root appear as nobody (65534) inside and container root cannot change them",
                    error::one_line(&e)
                ),
            }
        }
    }

    // 5. ch04: v1 — move the child into its cgroups (v2: CLONE_INTO_CGROUP already did).
    if let Some(cg) = &cgroup {
        cg.attach(pid)?;
    }

    // 6. Go. EOF on the channel means the command was exec'd; a message means the child failed.
    let raw: Vec<i32> = go_fds.iter().map(|f| f.as_raw_fd()).collect();
    parent_end.send_go(&raw)?;
    drop(go_fds);
    if let Some(Msg::Failed { code, message }) = parent_end.recv()? {
        let _ = waitpid(pid, None);
        guard.0 = None;
        if code == EXIT_RUNTIME {
            bail!("container setup failed: {message}");
        }
        return Err(CommandError { code, message }.into());
    }
    guard.0 = None;

    // 12. Forward signals until the container's first process exits.
    let code = wait_forwarding(pid, sfd)?;
    // 16. ch04: OOM check and metrics from the cgroup, then it goes (killing anything left in it).
    if let Some(cg) = cgroup {
        if spec.stats || code != 0 || cg.has_memory_limit() {
            let st = cg.stats();
            if let Some(msg) = cg.oom_message(&st, code) {
                eprintln!("minictr: {msg}");
            }
            if spec.stats {
                eprint!("{}", st.report());
            }
        }
        drop(cg);
    }
    // 13. Tear down (the runtime directory goes with `rt`).
    drop(rt);
    Ok(code)
}
// ANCHOR_END: run

// ANCHOR: wait
/// Pass signals on and wait for the child; returns its exit code, or 128+N if signal N killed it.
fn wait_forwarding(pid: Pid, mut sfd: SignalFd) -> Result<i32> {
    loop {
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("failed to read signals"),
        };
        let sig = Signal::try_from(info.ssi_signo as i32).ok();
        if sig == Some(Signal::SIGCHLD) {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                Ok(status) => {
                    if let Some(code) = error::status_code(status) {
                        return Ok(code);
                    }
                }
                Err(nix::errno::Errno::ECHILD) => return Ok(EXIT_RUNTIME),
                Err(e) => return Err(e).context("failed to wait for the container"),
            }
            continue;
        }
        if let Some(sig) = sig {
            // A terminal's Ctrl-C (si_code SI_KERNEL) already went to the whole foreground process
            // group, the container included: passing it on again would deliver it twice.
            if info.ssi_code == libc::SI_KERNEL {
                continue;
            }
            crate::explain!(
                CHAPTER,
                "kill({pid}, {sig}) — forwarding a signal minictr received"
            );
            let _ = kill(pid, sig);
        }
    }
}
// ANCHOR_END: wait

/// The container's first process, before exec. Runs in the child and never returns normally.
fn child_main(spec: &Spec, ch: &Channel, parent_end: &Channel, mask: &SigSet, sfd: i32) -> i32 {
    // The parent's ends are the parent's: closing our copies lets each side see EOF when the other dies.
    let _ = nix::unistd::close(parent_end_raw(parent_end));
    let _ = nix::unistd::close(sfd);
    match child_setup(spec, ch, mask) {
        Ok(never) => match never {},
        Err(e) => {
            let code = error::exit_code(&e);
            let _ = ch.send_failed(code, &error::one_line(&e));
            code
        }
    }
}

fn parent_end_raw(c: &Channel) -> i32 {
    c.raw_fd()
}

// ANCHOR: child
fn child_setup(spec: &Spec, ch: &Channel, mask: &SigSet) -> Result<std::convert::Infallible> {
    let mut fds = match ch.recv()? {
        Some(Msg::Go(fds)) => fds,
        Some(Msg::Failed { message, .. }) => bail!("parent failed: {message}"),
        None => bail!("minictr exited before the container started"),
    };
    // 7. Root inside the user namespace (the parent wrote the maps).
    if let Some(plan) = &spec.userns {
        userns::become_root(plan.setgroups_allowed())?;
    }
    // ch04: v1 — now that the parent moved us into our cgroups, a cgroup namespace rooted there.
    if late_cgroupns(spec) {
        crate::explain!(
            cgroups::CHAPTER,
            "unshare(CLONE_NEWCGROUP) — the container's cgroup becomes its /"
        );
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .context("failed to create the cgroup namespace")?;
    }
    // If minictr dies, so does the container (set after the uid change, which would clear it).
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // 8. Hostname.
    if spec.namespaces.uts {
        namespaces::set_hostname(&spec.hostname)?;
    }
    // 9. Mounts: private first, then the root, the kernel filesystems, volumes.
    rootfs::make_private()?;
    let root = rootfs::mount_root(&spec.rootfs, fds.pop())?;
    rootfs::mount_kernel_filesystems(&root, &spec.rootfs)?;
    if let cgroups::Decision::Use(plan) = &spec.cgroup {
        mount_cgroupfs(&root, &plan.inside(), spec.namespaces.cgroup)?; // ch04
    }
    rootfs::mount_volumes(&root, &spec.rootfs.volumes)?;
    rootfs::prepare_workdir(&root, &spec.rootfs.workdir)?;
    // 10. pivot_root: from here on the host's files are out of reach.
    rootfs::pivot(root)?;
    if spec.namespaces.net {
        namespaces::loopback_up()?;
    }
    // 11. The process: user, working directory, environment, exec.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let id = process::resolve_identity(&spec.user, &passwd, &group)?;
    nix::unistd::chdir(&spec.rootfs.workdir).with_context(|| {
        format!(
            "failed to enter the working directory {}",
            spec.rootfs.workdir.display()
        )
    })?;
    process::switch_user(&id)?;
    let home = id.home.clone().unwrap_or_else(|| "/".into());
    let env = process::build_env(&spec.hostname, &home, &spec.env);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
        .context("failed to restore the signal mask")?;
    Err(process::exec(&spec.command, &env).into())
}
// ANCHOR_END: child

/// ch04: whether the child makes its cgroup namespace itself (v1: after being moved into its cgroups).
fn late_cgroupns(spec: &Spec) -> bool {
    spec.namespaces.cgroup && matches!(&spec.cgroup, cgroups::Decision::Use(p) if p.late_cgroupns())
}

// ANCHOR: cgroupfs
/// ch04: /sys/fs/cgroup inside the container, read-only. v2: a cgroup2 mount, which in the cgroup
/// namespace shows the container's cgroup as its root. v1 (as runc does): a tmpfs holding one
/// directory per hierarchy, each with the container's own cgroup directory bound on it.
fn mount_cgroupfs(
    root: &rootfs::safepath::Root,
    inside: &cgroups::Inside,
    cgroupns: bool,
) -> Result<()> {
    use nix::mount::MsFlags;
    use std::os::fd::AsFd;
    use std::path::Path;
    let at = Path::new("/sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let dir = root.mkdir_all(at)?;
    match inside {
        cgroups::Inside::V2 { .. } if cgroupns => {
            rootfs::mount_on(
                "cgroup2",
                dir.as_fd(),
                at,
                Some("cgroup2"),
                flags | MsFlags::MS_RDONLY,
                None,
            )?;
        }
        cgroups::Inside::V2 { host } => {
            let src = host.display().to_string();
            rootfs::mount_on(&src, dir.as_fd(), at, None, MsFlags::MS_BIND, None)?;
            let dir = root.mkdir_all(at)?;
            rootfs::make_readonly(dir.as_fd(), at, true)?;
        }
        cgroups::Inside::V1 { hierarchies } => {
            rootfs::mount_on(
                "tmpfs",
                dir.as_fd(),
                at,
                Some("tmpfs"),
                flags,
                Some("mode=755"),
            )?;
            for (name, host) in hierarchies {
                let inner = at.join(name);
                let d = root.mkdir_all(&inner)?;
                let src = host.display().to_string();
                rootfs::mount_on(&src, d.as_fd(), &inner, None, MsFlags::MS_BIND, None)?;
            }
            let dir = root.mkdir_all(at)?;
            rootfs::make_readonly(dir.as_fd(), at, true)?;
        }
    }
    Ok(())
}
// ANCHOR_END: cgroupfs
