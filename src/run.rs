//! The orchestrator: `minictr run`'s start sequence. It is the only place that knows the order of
//! the stages; each stage is a module that knows nothing of the others. The numbered steps follow
//! chapter 0's picture (and shared/notes/start-sequence.md):
//!
//! parent: 1 validate → 2 reserve → 3 clone → 4 uid/gid maps → 5 prepare the root → 6 "go" →
//! child: 7 become root → 8 hostname → 9 mounts → 10 pivot_root → 11 user, env, exec →
//! parent: 12 forward signals, wait → 13 tear down, exit with the command's status.

use crate::error::{CommandError, EXIT_RUNTIME};
use crate::lifecycle::{detach, init, pty};
use crate::sync::{Channel, Msg};
use crate::{
    cgroups, error, namespaces, network, overlay, process, rootfs, security, state, sync, userns,
    RunArgs,
};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub const CHAPTER: &str = "ch01 namespaces";

/// Signals minictr passes on to the container's first process.
pub(crate) const FORWARDED: [Signal; 6] = [
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
    /// `None` with `--no-overlay`: the rootfs itself is the container's root (chapter 2).
    pub overlay: Option<overlay::Config>,
    pub tmpfs: Vec<overlay::Tmpfs>,
    /// `-t`, `-i`, `--init` (chapter 8).
    pub tty: bool,
    pub interactive: bool,
    pub init: bool,
    pub detach: bool,
    /// ch06: --network, --subnet, -p.
    pub network: network::Config,
    /// Chapter 7: capabilities, no_new_privs, seccomp (compiled here, once), masks, rlimits.
    pub security: security::Config,
}

// ANCHOR: validate
impl Spec {
    /// Step 1: parse and check every input. Nothing exists yet, so an error here leaves nothing behind.
    pub fn from_args(args: &RunArgs) -> Result<Spec> {
        let id = state::new_id();
        let hostname = match (&args.hostname, args.no_uts) {
            (Some(_), true) => bail!(error::hint(
                "--hostname needs the container's own UTS namespace, and --no-uts keeps the host's",
                "drop --no-uts, or drop --hostname"
            )),
            // No UTS namespace: the container shares the host's name, and $HOSTNAME says so.
            (None, true) => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| id.clone()),
            (Some(h), false) => h.clone(),
            (None, false) => id.clone(),
        };
        if !args.no_uts {
            namespaces::validate_hostname(&hostname)?;
        }
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
        // ch06: --network/--subnet/-p; /etc/hosts, /etc/hostname, /etc/resolv.conf are written into
        // the runtime directory (step 2) and bound first, so a user's -v can still replace them.
        // MINICTR_NETWORK: the default when neither --network nor --no-net is given (the test suite
        // sets it to `none` so that ordinary tests never build a bridge in the machine's namespace).
        let env_network = std::env::var("MINICTR_NETWORK")
            .ok()
            .filter(|v| !v.is_empty());
        let network = network::Config::parse(
            args.network.as_deref().or(if args.no_net {
                None
            } else {
                env_network.as_deref()
            }),
            args.no_net,
            args.subnet.as_deref(),
            &args.publish,
            nix::unistd::geteuid().is_root(),
        )?;
        let mut volumes = volumes;
        let etc = network::etc_binds(&network, &state::base_dir().join(&id));
        volumes.splice(
            0..0,
            etc.into_iter().map(|(host, target)| rootfs::Volume {
                host,
                target,
                readonly: false,
                idmap: false,
                is_dir: false,
            }),
        );
        if args.command.first().is_some_and(|c| c.is_empty()) {
            bail!(error::hint(
                "the command is an empty string",
                "give the program to run inside the container, e.g. /bin/sh"
            ));
        }
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
        // ch03: an idmapped volume needs a user namespace to map into, and host root to make it.
        if volumes.iter().any(|v| v.idmap) {
            if userns.is_none() {
                bail!(error::hint(
                    "`:idmap` volumes need a user namespace",
                    "drop --userns=host, or drop :idmap"
                ));
            }
            if !nix::unistd::geteuid().is_root() {
                bail!(error::hint(
                    "`:idmap` volumes need root: the kernel lets only host root create idmapped mounts",
                    "drop :idmap (rootless, files you own appear as root inside already)"
                ));
            }
            if volumes.iter().filter(|v| v.idmap).count() > 16 {
                bail!(error::hint(
                    "more than 16 `:idmap` volumes",
                    "idmap a common parent directory instead"
                ));
            }
        }
        let namespaces = namespaces::Namespaces {
            user: userns.is_some(),
            pid: !args.no_pid,
            net: network.own_netns(), // ch06: --network host (or --no-net) shares minictr's
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
        let rootfs_path = rootfs::check_rootfs(&args.rootfs)?;
        if let Some(n) = &args.name {
            overlay::validate_name(n)?;
        }
        // --read-only with nothing to stack needs no overlay: the image itself is mounted read-only.
        let overlay = if args.no_overlay || (args.read_only && args.layers.is_empty()) {
            if args.no_overlay && (!args.layers.is_empty() || args.keep || args.name.is_some()) {
                bail!(error::hint(
                    "--layer, --keep and --name need the overlay stage",
                    "drop --no-overlay"
                ));
            }
            None
        } else {
            Some(overlay::Config {
                lowers: overlay::lower_stack(&rootfs_path, &args.layers)?,
                readonly: args.read_only,
                keep: args.keep || args.name.is_some(),
                name: args.name.clone(),
            })
        };
        if args.read_only && (args.keep || args.name.is_some()) {
            bail!(error::hint(
                "--read-only has no writable layer to keep",
                "drop --keep/--name or --read-only"
            ));
        }
        let tmpfs = args
            .tmpfs
            .iter()
            .map(|t| overlay::parse_tmpfs(t))
            .collect::<Result<Vec<_>>>()?;
        let rootfs = rootfs::Config {
            rootfs: rootfs_path,
            mountpoint: state::base_dir().join(&id).join("root"),
            volumes_prepared: userns.is_some() && nix::unistd::geteuid().is_root(),
            readonly: args.read_only,
            volumes,
            workdir,
            own_netns: namespaces.net,
            own_ipcns: namespaces.ipc,
            own_pidns: namespaces.pid,
        };
        // ch07: every hardening option checked and the seccomp filter compiled before clone.
        let security = security::Config::from_options(&security::Options {
            cap_add: &args.cap_add,
            cap_drop: &args.cap_drop,
            security_opt: &args.security_opt,
            ulimit: &args.ulimit,
            no_security: args.no_security,
            no_caps: args.no_caps,
            no_seccomp: args.no_seccomp,
            no_masks: args.no_masks,
        })?;
        Ok(Spec {
            security,
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
            overlay,
            tmpfs,
            tty: args.tty,
            interactive: args.interactive,
            init: args.init,
            detach: args.detach,
            network,
        })
    }
}
// ANCHOR_END: validate

/// Undo what crashed runs left behind. Every minictr command calls this first.
pub fn cleanup_stale() {
    let base = state::base_dir();
    for stale in state::stale_entries(&base) {
        // ch04: kill what is left in the dead run's cgroups and remove them.
        if let Some(paths) = stale.state.as_ref().and_then(|s| s.resources.get("cgroup")) {
            cgroups::remove_stale(paths);
        }
        crate::explain!(
            state::CHAPTER,
            "removing stale runtime directory {:?} (its minictr died)",
            stale.path
        );
        if let Some(st) = &stale.state {
            if let Some(v) = st.resources.get("overlay") {
                overlay::cleanup_stale(v);
            }
            // ch06: the veth, published ports and address of a crashed run.
            if let Some(v) = st.resources.get("network") {
                network::cleanup_stale(v, &network_dir(), state::is_live);
            }
        }
        // A detached container that was running when its monitor died stays listed as exited
        // (its log and kept layer wait for `minictr rm`); anything else goes entirely.
        let keep_entry = stale
            .state
            .as_ref()
            .is_some_and(|s| s.detached && s.status == "running");
        let result = if keep_entry {
            stale.mark_exited()
        } else {
            stale.remove()
        };
        if let Err(e) = result {
            eprintln!("minictr: warning: {}", error::one_line(&e));
        }
    }
    overlay::remove_orphans();
}

/// ch06: where address allocations live (shared by every minictr of this machine).
fn network_dir() -> PathBuf {
    state::base_dir().join("network")
}

/// `minictr network rm` (ch06).
pub fn network_rm() -> Result<i32> {
    cleanup_stale();
    network::remove(&network_dir(), state::is_live)?;
    Ok(0)
}

/// Block the signals minictr forwards (and SIGCHLD, and SIGWINCH with a terminal) and read them
/// from a signalfd instead. Returns the mask to restore in the child before exec.
pub(crate) fn block_signals(tty: bool) -> Result<(SigSet, SignalFd)> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    if tty {
        mask.add(Signal::SIGWINCH);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .context("failed to block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .context("failed to create a signalfd")?;
    Ok((old_mask, sfd))
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
    // -d: from here on we are the monitor; the foreground process waits for our verdict.
    let mut notifier = if spec.detach {
        Some(detach::daemonize()?)
    } else {
        None
    };
    let result = start(&spec, notifier.as_mut());
    if let (Err(e), Some(n)) = (&result, notifier.as_mut()) {
        n.failed(error::exit_code(e), &error::one_line(e));
    }
    result
}

/// Steps 2–13 of `minictr run`, in the foreground or in a detached container's monitor.
fn start(spec: &Spec, mut notifier: Option<&mut detach::Notifier>) -> Result<i32> {
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
            name: spec.overlay.as_ref().and_then(|o| o.name.clone()),
            status: "created".into(),
            detached: spec.detach,
            exec: state::ExecInfo {
                env: spec.env.clone(),
                user: spec.user.user.as_ref().map(|u| match &spec.user.group {
                    Some(g) => format!("{u}:{g}"),
                    None => u.clone(),
                }),
                workdir: spec.rootfs.workdir.clone(),
                namespaces: spec.namespaces.proc_names(),
                security: spec.security.words.clone(),
            },
            ..Default::default()
        },
    )?;
    if spec.detach {
        rt.persist = true;
        detach::redirect_output(&rt.path().join("log"))?;
    }
    // The container's "/" is mounted on root/ here (chapter 2).
    std::fs::create_dir(&spec.rootfs.mountpoint)
        .with_context(|| format!("failed to create {}", spec.rootfs.mountpoint.display()))?;

    crate::explain::checkpoint("runtime-dir");

    // The writable layer (chapter 5), recorded before it is created (as "discard": until the
    // container runs, even a kept layer is removed by a failed start or the next command after a crash).
    let mut layer = match &spec.overlay {
        Some(ov) if !ov.readonly => {
            let dir = overlay::containers_dir().join(&spec.id);
            let mut record = vec![dir.to_string_lossy().into_owned(), "discard".into()];
            record.extend(ov.name.clone());
            rt.record("overlay", record)?;
            let layer = overlay::WritableLayer::create(dir, root_owner(spec), ov.name.clone())?;
            layer.set_owner(rt.path())?;
            crate::explain::checkpoint("writable-layer");
            Some(layer)
        }
        _ => None,
    };

    // 2. ch04: the cgroup — recorded, created and limited before clone: the child never runs unlimited.
    let cgroup = match &spec.cgroup {
        cgroups::Decision::Use(plan) => {
            rt.record("cgroup", plan.paths())?;
            let cg = cgroups::Cgroup::create(plan)?;
            crate::explain::checkpoint("cgroup");
            Some(cg)
        }
        cgroups::Decision::Skip(why) => {
            cgroups::note_skipped(why);
            None
        }
        cgroups::Decision::Off => None,
    };

    // ch06: the bridge (made once), an address, the /etc files; recorded before the veth exists.
    let mut net = network::reserve(
        &spec.network,
        &spec.id,
        &spec.hostname,
        rt.path(),
        &network_dir(),
        state::is_live,
        root_owner(spec),
    )?;
    let record = net.record(); // empty unless --network bridge
    if !record.is_empty() {
        rt.record("network", record)?;
    }
    crate::explain::checkpoint("network-reserved");

    // Signals are blocked from here on and read from a signalfd: none can kill minictr half-way, and
    // each one is passed on to the container once it runs.
    let (old_mask, sfd) = block_signals(spec.tty)?;

    // 3. clone: the child blocks on the channel until the parent says "go".
    let (parent_end, child_end) = sync::pair()?;
    let mut flags = spec.namespaces.clone_flags();
    if late_cgroupns(spec) {
        flags &= !(libc::CLONE_NEWCGROUP as u64); // ch04: v1 — the child unshares it once moved
    }
    let cgroup_fd = cgroup.as_ref().and_then(|c| c.clone_fd());
    let layer_dir = layer.as_ref().map(|l| l.dir.clone());
    let lock_fd = rt.lock_fd();
    let pid = namespaces::clone_child(flags, cgroup_fd, || {
        child_main(
            spec,
            layer_dir.as_deref(),
            &child_end,
            &parent_end,
            &old_mask,
            [sfd.as_raw_fd(), lock_fd],
        )
    })
    .map_err(|e| userns_disabled_error(e, spec))?;
    drop(child_end);
    let mut guard = ChildGuard(Some(pid));
    rt.state.container_pid = Some(pid.as_raw());
    rt.save()?;
    crate::explain::checkpoint("clone");

    // 4. User namespace: the maps, before the child does anything as "root".
    let mut go_fds: Vec<OwnedFd> = Vec::new();
    if let Some(plan) = &spec.userns {
        userns::write_maps(pid, plan)?;
        crate::explain::checkpoint("id-maps");
        // ch03: as host root, every volume is prepared here as a detached mount — `:idmap` ones
        // idmapped like the root — because the child, uid 100000 on the host, may not be allowed to
        // walk to the host path. Sent first, in volume order.
        if nix::unistd::geteuid().is_root() {
            for v in &spec.rootfs.volumes {
                go_fds.push(if v.idmap {
                    userns::idmapped_mount(pid, &v.host, v.readonly)?
                } else {
                    rootfs::prepare_bind(&v.host, v.readonly)?
                });
            }
        }
    }
    // 5. The root, prepared by the parent as a detached mount (root only: rootless has no rights on
    //    the host's mount table, its child mounts the overlay itself). Sent last.
    let host_root = nix::unistd::geteuid().is_root();
    let idmap_for = spec.userns.as_ref().map(|_| pid);
    match &spec.overlay {
        Some(ov) if host_root => go_fds.push(overlay::mount_detached(
            &ov.lowers,
            layer.as_ref(),
            idmap_for,
            rt.path(),
        )?),
        Some(_) => {}
        None if host_root && spec.userns.is_some() => {
            match userns::idmapped_mount(pid, &spec.rootfs.rootfs, spec.rootfs.readonly) {
                Ok(fd) => go_fds.push(fd),
                Err(e) => {
                    eprintln!(
                        "minictr: note: {} — falling back to a plain bind: files owned by host root appear as nobody (65534) inside and container root cannot change them",
                        error::one_line(&e)
                    );
                    go_fds.push(rootfs::prepare_bind(
                        &spec.rootfs.rootfs,
                        spec.rootfs.readonly,
                    )?);
                }
            }
        }
        None => {}
    }

    // 5. ch04: v1 — move the child into its cgroups (v2: CLONE_INTO_CGROUP already did).
    if let Some(cg) = &cgroup {
        cg.attach(pid)?;
    }
    crate::explain::checkpoint("root-prepared");

    // 5b. Network (ch06): veth pair, eth0's address and route inside, published ports.
    net.attach(pid.as_raw())?;
    crate::explain::checkpoint("network-attached");

    // 6. Go. EOF on the channel means the command was exec'd; a message means the child failed.
    let raw: Vec<i32> = go_fds.iter().map(|f| f.as_raw_fd()).collect();
    parent_end.send_go(&raw)?;
    drop(go_fds);
    let mut relay = None;
    loop {
        match parent_end.recv()? {
            None => break,
            Some(Msg::Pty(master)) => relay = Some(pty::Relay::new(master, spec.interactive)),
            Some(Msg::Failed { code, message }) => {
                let _ = waitpid(pid, None);
                guard.0 = None;
                if code == EXIT_RUNTIME {
                    bail!("container setup failed: {message}");
                }
                return Err(CommandError { code, message }.into());
            }
            Some(Msg::Go(_)) => bail!("unexpected message from the container process"),
        }
    }
    crate::explain::checkpoint("running");
    if let (Some(layer), Some(ov)) = (layer.as_mut(), &spec.overlay) {
        if ov.keep {
            layer.save_kept(&overlay::Kept {
                id: spec.id.clone(),
                name: ov.name.clone(),
                lowers: ov.lowers.clone(),
                command: spec.command.clone(),
                created: state::now(),
            })?;
            let mut record = vec![layer.dir.to_string_lossy().into_owned(), "keep".into()];
            record.extend(ov.name.clone());
            rt.record("overlay", record)?;
        }
        layer.commit(ov.keep || spec.detach);
        if spec.detach && !ov.keep {
            rt.record(
                "overlay",
                vec![layer.dir.to_string_lossy().into_owned(), "keep".into()],
            )?;
        }
    }
    rt.state.status = "running".into();
    rt.save()?;
    if let Some(n) = notifier.as_mut() {
        n.started(&spec.id);
    }

    // 12. Forward signals until the container's first process exits. The guard stays armed: if
    // waiting fails, the container is killed and reaped rather than left running unattended.
    let code = wait_forwarding(pid, sfd, relay)?;
    guard.0 = None; // reaped by wait_forwarding: its pid may belong to someone else now
    rt.state.exit_code = Some(code);
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
    // 13. Tear down: the writable layer (unless kept), then the runtime directory.
    crate::explain::checkpoint("teardown");
    drop(net); // ch06: ports, veth, address
    rt.state.resources.remove("network"); // ch06: released (`ps -a` shows no address)
    drop(layer);
    drop(rt);
    Ok(code)
}
// ANCHOR_END: run

/// ch03: when clone fails for a normal user because a sysctl forbids unprivileged user namespaces,
/// the error names that setting and the command that changes it.
fn userns_disabled_error(e: anyhow::Error, spec: &Spec) -> anyhow::Error {
    if !spec.namespaces.user || nix::unistd::geteuid().is_root() {
        return e;
    }
    match userns::diagnose_disabled() {
        Some(why) => {
            let what = e
                .downcast_ref::<error::Hint>()
                .map(|h| h.what.clone())
                .unwrap_or_else(|| error::one_line(&e));
            error::hint(
                format!("{what}: unprivileged user namespaces are disabled"),
                why,
            )
        }
        None => e,
    }
}

// ANCHOR: wait
/// Pass signals on and wait for the child; returns its exit code, or 128+N if signal N killed it.
/// With `-t`, also relay the terminal: the container's output to our stdout, our stdin (with `-i`)
/// to the container, and window-size changes.
pub(crate) fn wait_forwarding(
    pid: Pid,
    sfd: SignalFd,
    mut relay: Option<pty::Relay>,
) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    // With -t, when the user's terminal hangs up the container gets SIGHUP and a grace period; a
    // PID 1 without a SIGHUP handler ignores it (chapter 8), so then it is killed.
    let mut hangup_deadline: Option<std::time::Instant> = None;
    loop {
        if let Some(d) = hangup_deadline {
            if std::time::Instant::now() >= d {
                crate::explain!(
                    CHAPTER,
                    "kill({pid}, SIGKILL) — the terminal is gone and the container ignored SIGHUP"
                );
                let _ = kill(pid, Signal::SIGKILL);
                hangup_deadline = None;
            }
        }
        let timeout = match hangup_deadline {
            Some(d) => {
                PollTimeout::try_from(d.saturating_duration_since(std::time::Instant::now()))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let (sig_ready, out_ready, in_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(r) = &relay {
                fds.push(PollFd::new(r.master.as_fd(), PollFlags::POLLIN));
                if r.stdin_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll failed"),
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (ready(0), ready(1), ready(2))
        };
        // The terminal closed (EIO): stop polling it; the exit status still comes via SIGCHLD.
        if out_ready && relay.as_ref().is_some_and(|r| !r.pump_output()) {
            relay = None;
        }
        if in_ready {
            if let Some(r) = &mut relay {
                r.pump_input();
            }
        }
        if !sig_ready {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("failed to read signals"),
        };
        let sig = Signal::try_from(info.ssi_signo as i32).ok();
        match sig {
            Some(Signal::SIGCHLD) => match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    if let Some(code) = error::status_code(status) {
                        if let Some(r) = &relay {
                            r.drain();
                        }
                        return Ok(code);
                    }
                }
                Err(nix::errno::Errno::ECHILD) => return Ok(EXIT_RUNTIME),
                Err(e) => return Err(e).context("failed to wait for the container"),
            },
            Some(Signal::SIGWINCH) => {
                if let Some(r) = &relay {
                    pty::copy_winsize(stdin.as_fd(), r.master.as_fd());
                }
            }
            // A terminal's Ctrl-C (si_code SI_KERNEL) already went to the whole foreground process
            // group, the container included: passing it on again would deliver it twice.
            // (With -t the container has a terminal of its own and gets nothing from ours.)
            Some(_) if info.ssi_code == libc::SI_KERNEL && relay.is_none() => {}
            Some(Signal::SIGHUP) if relay.is_some() => {
                crate::explain!(CHAPTER, "kill({pid}, SIGHUP) — the terminal hung up");
                let _ = kill(pid, Signal::SIGHUP);
                hangup_deadline =
                    Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
            }
            Some(sig) => {
                crate::explain!(
                    CHAPTER,
                    "kill({pid}, {sig}) — forwarding a signal minictr received"
                );
                let _ = kill(pid, sig);
            }
            None => {}
        }
    }
}
// ANCHOR_END: wait

/// The container's first process, before exec. Runs in the child and never returns normally.
/// The host uid/gid that is root inside the container: the owner of its writable layer.
fn root_owner(spec: &Spec) -> (u32, u32) {
    let Some(plan) = &spec.userns else {
        return (0, 0);
    };
    if !nix::unistd::geteuid().is_root() {
        return (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
    }
    let find =
        |maps: &[userns::IdMap]| maps.iter().find(|m| m.inside == 0).map_or(0, |m| m.outside);
    (find(&plan.uid_maps), find(&plan.gid_maps))
}

fn child_main(
    spec: &Spec,
    layer_dir: Option<&std::path::Path>,
    ch: &Channel,
    parent_end: &Channel,
    mask: &SigSet,
    parent_only: [i32; 2],
) -> i32 {
    // The parent's ends are the parent's: closing our copies lets each side see EOF when the other
    // dies. Likewise its signalfd, and the runtime directory's lock: the lock must die with minictr,
    // or a crash would look like a live container until we are gone too.
    let _ = nix::unistd::close(parent_end_raw(parent_end));
    for fd in parent_only {
        let _ = nix::unistd::close(fd);
    }
    match child_setup(spec, layer_dir, ch, mask) {
        Ok(code) => code,
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
fn child_setup(
    spec: &Spec,
    layer_dir: Option<&std::path::Path>,
    ch: &Channel,
    mask: &SigSet,
) -> Result<i32> {
    let fds = match ch.recv()? {
        Some(Msg::Go(fds)) => fds,
        Some(Msg::Failed { message, .. }) => bail!("parent failed: {message}"),
        Some(Msg::Pty(_)) => bail!("unexpected message from the parent"),
        None => bail!("minictr exited before the container started"),
    };
    // ch07: non-dumpable from now until execve. Not earlier: until "go" the parent still opens our
    // /proc/PID files (uid_map when rootless, ns/* for the network), which non-dumpable would make
    // root's. Nothing else runs in the container's namespaces before we exec.
    security::set_nondumpable()?;
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
    process::die_with_parent()?;
    // The parent may have died before the prctl: then nobody would ever kill us.
    if !ch.peer_alive() {
        bail!("minictr exited before the container started");
    }
    // 8. Hostname.
    if spec.namespaces.uts {
        namespaces::set_hostname(&spec.hostname)?;
    }
    // 9.–10. Mounts in chapter 2's order, private first, pivot_root last; other stages mount at
    // the places the plan leaves them. From pivot_root on the host's files are out of reach.
    let (prepared_volumes, prepared_root) = rootfs::split_prepared(&spec.rootfs, fds);
    let source = match (&spec.overlay, prepared_root) {
        // Rootless: mount the overlay here, inside the user namespace.
        (Some(ov), None) => rootfs::RootSource::MountedBy(Box::new(|at: &std::path::Path| {
            overlay::mount_in_child(&ov.lowers, layer_dir, at)
        })),
        (_, Some(fd)) => rootfs::RootSource::Prepared(fd),
        (None, None) => rootfs::RootSource::Bind,
    };
    let plan = rootfs::plan(&spec.rootfs);
    rootfs::apply(
        &plan,
        &spec.rootfs,
        source,
        prepared_volumes,
        &mut |other, root| match other {
            rootfs::Other::Cgroupfs => match &spec.cgroup {
                cgroups::Decision::Use(plan) => {
                    mount_cgroupfs(root, &plan.inside(), spec.namespaces.cgroup)
                } // ch04
                _ => Ok(()),
            },
            rootfs::Other::Tmpfs => spec
                .tmpfs
                .iter()
                .try_for_each(|t| rootfs::mount_tmpfs(root, &t.path, t.flags, &t.data)),
            // ch07: mask /proc/kcore, … and make /proc/sys, … read-only (after /proc, before pivot_root).
            rootfs::Other::Masks => security::protect_paths(&spec.security, root),
        },
    )?;
    if spec.namespaces.net {
        namespaces::loopback_up()?;
    }
    if spec.tty {
        let master = pty::open_in_container()?;
        ch.send_pty(master.as_raw_fd())?;
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
    // ANCHOR: ch07_steps
    // ch07 (step 13): rlimits, then the bounding set — while still root with every capability.
    security::before_user_switch(&spec.security)?;
    let may_setgroups = spec.userns.as_ref().map_or(true, |p| p.setgroups_allowed());
    process::switch_user(&id, may_setgroups)?;
    let home = id.home.clone().unwrap_or_else(|| "/".into());
    let env = process::build_env(&spec.hostname, &home, &spec.env);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
        .context("failed to restore the signal mask")?;
    // ch07 (step 13): capability sets, fds close-on-exec, no_new_privs, seccomp — the last walls.
    security::after_user_switch(&spec.security)?;
    // ANCHOR_END: ch07_steps
    if spec.init {
        // minictr stays PID 1 and never execs, so close-on-exec cannot tell the parent that the
        // container runs: close our end of the channel explicitly (EOF = "running").
        let _ = nix::unistd::close(ch.raw_fd());
        return Ok(init::run(mask, || process::exec(&spec.command, &env)));
    }
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
