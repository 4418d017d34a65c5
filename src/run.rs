//! The orchestrator: `minictr run`'s start sequence. It is the only place that knows the order of
//! the stages; each stage is a module that knows nothing of the others. The numbered steps are
//! the start sequence of chapter 0 and its appendix:
//!
//! parent: 1 validate → 2 reserve → 3 clone → 4 map ids → 5 prepare the root, attach cgroup and
//! network → 6 go → child: 7 become root → 8 hostname → 9 mounts → 10 pivot_root → 11 user, env,
//! exec → parent: 12 supervise → 13 tear down, exit with the command's status.

use crate::host::Host;
use crate::lifecycle::supervise::{self, Started};
use crate::lifecycle::{detach, init, pty};
use crate::spec::Spec;
use crate::state::{self, Status};
use crate::sync::{Channel, Msg};
use crate::RunArgs;
use crate::{
    cgroups, error, image, namespaces, network, overlay, process, rootfs, security, sync, userns,
};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

// ANCHOR: run
/// `minictr run`: returns the exit status minictr should exit with.
pub fn run(args: RunArgs, host: &Host) -> Result<i32> {
    if args.explain {
        crate::explain::enable();
    }
    // Workshop levels: `--until N` turns off the stages of the chapters after N (src/workshop.rs).
    let (args, host) = crate::workshop::gate(args, host)?;
    let host = &host;
    // 1. Validate everything before creating anything. ch09: an image is found in the store (or
    // pulled) first; its layers and config go into the spec.
    let in_use = || images_in_use(host);
    let image = image::for_run(&overlay::data_dir(), &args.rootfs, args.image.pull, &in_use)?;
    let spec = Spec::from_args(&args, host, image)?;
    // Kernel features this run needs, probed once per boot (src/probe.rs): one clear error now
    // instead of a refused system call halfway through the start.
    crate::probe::preflight(spec.userns.is_some(), spec.overlay.is_some())
        .map_err(|e| userns_disabled_error(e, &spec))?;
    // -d: from here on we are the monitor; the foreground process waits for our verdict.
    let mut notifier = if spec.lifecycle.detach {
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
// ANCHOR_END: run

// ANCHOR: start
/// Steps 2–13 of `minictr run`, in the foreground or in a detached container's monitor. Each step
/// is a call into the stage that owns it; dropping what a step returns undoes it.
fn start(spec: &Spec, notifier: Option<&mut detach::Notifier>) -> Result<i32> {
    // 2. Reserve what is named on the host, each recorded before it is made.
    let mut reserved = reserve(spec)?;
    // Signals are blocked from here on and read from a signalfd: none can kill minictr half-way,
    // and each one is passed on to the container once it runs.
    let (old_mask, sfd) = supervise::block_signals(spec.lifecycle.tty)?;
    // 3. Clone: the child is born in its namespaces and waits for "go".
    let (mut child, channel) = clone(spec, &mut reserved, &old_mask, &sfd)?;
    // 4. Map ids: the child's root becomes an unprivileged host user (ch03).
    let mut fds = map_ids(spec, child.pid)?;
    // 5. Prepare the root (ch02/03/05), then attach the network (ch06). (The cgroup, ch04: v2's
    // clone3 started the child in it; on v1 the child moves itself after "go".)
    fds.extend(prepare_root(spec, &reserved, child.pid)?);
    attach(&mut reserved, child.pid)?;
    // 6. Go: the child sets itself up (steps 7–11) and execs the command.
    let relay = go(spec, &mut reserved, &channel, fds, &mut child)?;
    if let Some(n) = notifier {
        n.started(&spec.id);
    }
    // 12. Supervise: forward signals until the command exits.
    let code = supervise::wait_forwarding(child.pid, sfd, relay)?;
    child.reaped();
    // 13. Tear down everything step 2 reserved; exit with the command's status.
    Ok(tear_down(spec, reserved, code))
}
// ANCHOR_END: start

/// What step 2 reserved on the host. Dropping it undoes the reservations in reverse order: the
/// network, the cgroup, the writable layer (unless kept), the runtime directory.
struct Reserved {
    net: network::Network,
    cgroup: Option<cgroups::Cgroup>,
    layer: Option<overlay::WritableLayer>,
    rt: state::RuntimeDir,
}

// ANCHOR: reserve
/// Step 2: the runtime directory (ch08), the writable layer (ch05), the cgroup with its limits
/// (ch04), an address (ch06) — each recorded in state.json before it is made, so a crash can be undone.
fn reserve(spec: &Spec) -> Result<Reserved> {
    // Every reservation is named in the first state.json (each is undone only if it exists).
    let mut first = initial_state(spec);
    first.resources.overlay = layer_record(spec);
    if let cgroups::Decision::Use(plan) = &spec.cgroup {
        first.resources.cgroup = Some(plan.paths());
    }
    first.resources.network = network::pending_lease(&spec.network, &spec.id)?;
    let rt = state::RuntimeDir::create(&spec.host.run_dir, first)?;
    // ch09: the image's use is recorded in state.json now; from here on no rmi removes its layers.
    if let Some(img) = &spec.image {
        image::run::check_still_there(&overlay::data_dir(), img)?;
    }
    if spec.lifecycle.detach {
        // (The directory outlives the container only once it ran: see `go`.)
        detach::redirect_output(&rt.path().join("log"))?;
    }
    crate::explain::checkpoint(2, "runtime-dir")?;
    let layer = reserve_layer(spec, &rt)?;
    let cgroup = reserve_cgroup(spec)?;
    // ch06: the bridge (made once), an address, the /etc files; recorded before the veth exists.
    let net = network::reserve(
        &spec.network,
        &spec.id,
        &spec.hostname,
        spec.overlay.as_ref().and_then(|o| o.name.as_deref()),
        rt.path(),
        &network_dir(&spec.host),
        state::is_live,
        root_owner(spec),
    )?;
    crate::explain::checkpoint(2, "network-reserved")?;
    Ok(Reserved {
        net,
        cgroup,
        layer,
        rt,
    })
}
// ANCHOR_END: reserve

/// What state.json says about a container before anything of it exists.
fn initial_state(spec: &Spec) -> state::State {
    state::State {
        id: spec.id.clone(),
        owner_pid: std::process::id() as i32,
        created: state::now(),
        rootfs: spec.rootfs.rootfs.clone(),
        command: spec.command.clone(),
        hostname: spec.hostname.clone(),
        name: spec.overlay.as_ref().and_then(|o| o.name.clone()),
        status: Status::Created,
        detached: spec.lifecycle.detach,
        exec: state::ExecInfo {
            env: spec.env.clone(),
            user: spec.user.user.as_ref().map(|u| match &spec.user.group {
                Some(g) => format!("{u}:{g}"),
                None => u.clone(),
            }),
            workdir: spec.rootfs.workdir.clone(),
            namespaces: spec.namespaces.proc_names(),
            security: spec.security.recorded.clone(),
        },
        resources: state::Resources {
            image: spec.image.as_ref().map(image::Use::of),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// ch05: the writable layer's record, as not kept: until the container runs, even a kept layer is
/// removed by a failed start or by the next command after a crash.
fn layer_record(spec: &Spec) -> Option<overlay::LayerRecord> {
    if layer_in_memory(spec) {
        return None; // nothing on the host to undo: the tmpfs goes with minictr
    }
    let ov = spec.overlay.as_ref().filter(|o| !o.readonly)?;
    Some(overlay::LayerRecord {
        dir: overlay::containers_dir().join(&spec.id),
        keep: false,
        name: ov.name.clone(),
    })
}

// ANCHOR: layer_in_memory
/// ch05: a container removed at exit (no --keep or --name, not -d) writes into memory, not into
/// the data directory — where the kernel takes an upper layer on a detached tmpfs (probed once per
/// boot) and unless `--disk-layer` asks for the disk.
fn layer_in_memory(spec: &Spec) -> bool {
    spec.overlay
        .as_ref()
        .is_some_and(|ov| !ov.readonly && !ov.keep && !ov.disk_layer)
        && !spec.lifecycle.detach
        && crate::probe::get().overlay_upper_in_memory == crate::probe::Probe::Yes
}
// ANCHOR_END: layer_in_memory

/// ch05: the writable layer (recorded by the first state.json), or in memory (recorded nowhere).
/// Rootless, a layer in memory is made by the child, inside its user namespace (`mount_everything`).
fn reserve_layer(spec: &Spec, rt: &state::RuntimeDir) -> Result<Option<overlay::WritableLayer>> {
    if layer_in_memory(spec) {
        if !spec.host.is_root() {
            return Ok(None);
        }
        let layer = overlay::WritableLayer::in_memory(root_owner(spec))?;
        crate::explain::checkpoint(2, "writable-layer")?;
        return Ok(Some(layer));
    }
    let Some(record) = layer_record(spec) else {
        return Ok(None);
    };
    let layer = overlay::WritableLayer::create(record.dir, root_owner(spec), record.name)?;
    layer.set_owner(rt.path())?;
    crate::explain::checkpoint(2, "writable-layer")?;
    Ok(Some(layer))
}

/// ch04: the cgroup (recorded by the first state.json), created and limited before clone: the
/// child never runs unlimited.
fn reserve_cgroup(spec: &Spec) -> Result<Option<cgroups::Cgroup>> {
    match &spec.cgroup {
        cgroups::Decision::Use(plan) => {
            let cg = cgroups::Cgroup::create(plan)?;
            crate::explain::checkpoint(2, "cgroup")?;
            Ok(Some(cg))
        }
        cgroups::Decision::Skip(why) => {
            cgroups::note_skipped(why);
            Ok(None)
        }
        cgroups::Decision::Off => Ok(None),
    }
}

/// The child between clone and exec. If the parent fails meanwhile, dropping it kills and reaps the
/// child: no half-made container.
struct Child {
    pid: Pid,
    armed: bool,
}

impl Child {
    /// The child was reaped (its pid may belong to someone else now): nothing left to kill.
    fn reaped(&mut self) {
        self.armed = false;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

// ANCHOR: clone
/// Step 3: clone3 into the new namespaces (v2: straight into the cgroup). The child runs
/// [`child_main`] and blocks on the channel until the parent says "go".
fn clone(
    spec: &Spec,
    r: &mut Reserved,
    old_mask: &SigSet,
    sfd: &SignalFd,
) -> Result<(Child, Channel)> {
    let (parent_end, child_end) = sync::pair()?;
    let mut flags = spec.namespaces.clone_flags();
    if late_cgroupns(spec) {
        flags &= !(libc::CLONE_NEWCGROUP as u64); // ch04: v1 — the child unshares it once moved
    }
    let cgroup_fd = r.cgroup.as_ref().and_then(|c| c.clone_fd());
    // ch04, v1: the `tasks` files the child moves itself with (the parent's copies close with the
    // closure once clone returns).
    let cgroup_entry = r.cgroup.as_ref().map(|cg| cg.self_attach()).transpose()?;
    let layer_dir = r.layer.as_ref().map(|l| l.dir.clone());
    let parent_only = [parent_end.raw_fd(), sfd.as_raw_fd(), r.rt.lock_fd()];
    let pid = namespaces::clone_child(flags, cgroup_fd, || {
        child_main(
            spec,
            Inherited {
                layer_dir: layer_dir.as_deref(),
                cgroup: cgroup_entry,
                parent_only,
            },
            &child_end,
            old_mask,
        )
    })
    .map_err(|e| userns_disabled_error(e, spec))?;
    drop(child_end);
    let child = Child { pid, armed: true };
    r.rt.state.container_pid = Some(pid.as_raw());
    // ch06: the address and published ports, recorded before attach makes the veth and rules
    // (without a bridge the pid is written with "running").
    if let Some(lease) = r.net.record() {
        r.rt.state.resources.network = Some(lease);
        r.rt.save()?;
    }
    crate::explain::checkpoint(3, "clone")?;
    Ok((child, parent_end))
}
// ANCHOR_END: clone

// ANCHOR: map_ids
/// Step 4 (ch03): the uid/gid maps, before the child does anything as "root". As host root, every
/// volume is then prepared here as a detached mount — `:idmap` ones idmapped like the root —
/// because the child, uid 100000 on the host, may not be allowed to walk to the host path.
fn map_ids(spec: &Spec, pid: Pid) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    let Some(plan) = &spec.userns else {
        return Ok(fds);
    };
    userns::write_maps(pid, plan)?;
    crate::explain::checkpoint(4, "id-maps")?;
    if spec.host.is_root() {
        for v in &spec.rootfs.volumes {
            fds.push(if v.idmap {
                userns::idmapped_mount(pid, &v.host, v.readonly)?
            } else {
                rootfs::prepare_bind(&v.host, v.readonly)?
            });
        }
    }
    Ok(fds)
}
// ANCHOR_END: map_ids

// ANCHOR: prepare_root
/// Step 5: the root, prepared by the parent as a detached mount (root only: rootless has no rights
/// on the host's mount table, its child mounts the overlay itself). Sent after the volumes.
fn prepare_root(spec: &Spec, r: &Reserved, pid: Pid) -> Result<Option<OwnedFd>> {
    let idmap_for = spec.userns.as_ref().map(|_| pid);
    match &spec.overlay {
        _ if !spec.host.is_root() => Ok(None),
        Some(ov) => Ok(Some(overlay::mount_detached(
            &ov.lowers,
            r.layer.as_ref(),
            idmap_for,
            r.rt.path(),
        )?)),
        None if spec.userns.is_none() => Ok(None),
        None => match userns::idmapped_mount(pid, &spec.rootfs.rootfs, spec.rootfs.readonly) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) => {
                eprintln!(
                    "minictr: note: {} — falling back to a plain bind: files owned by host root appear as nobody (65534) inside and container root cannot change them",
                    error::one_line(&e)
                );
                Ok(Some(rootfs::prepare_bind(
                    &spec.rootfs.rootfs,
                    spec.rootfs.readonly,
                )?))
            }
        },
    }
}
// ANCHOR_END: prepare_root

// ANCHOR: attach
/// Step 5, continued: the network stage gives the child its veth, address, route and published
/// ports. (The cgroup needs nothing here: v2's clone3 started the child inside it, and on v1 the
/// child moves itself after "go", through the `tasks` files opened before clone.)
fn attach(r: &mut Reserved, pid: Pid) -> Result<()> {
    crate::explain::checkpoint(5, "root-prepared")?;
    r.net.attach(pid.as_raw())?;
    crate::explain::checkpoint(5, "network-attached")?;
    Ok(())
}
// ANCHOR_END: attach

// ANCHOR: go
/// Step 6: send "go" with the prepared mounts and wait until the command runs (EOF on the channel)
/// or the child says why it failed. Then the writable layer is committed (kept if asked) and the
/// state says "running".
fn go(
    spec: &Spec,
    r: &mut Reserved,
    channel: &Channel,
    fds: Vec<OwnedFd>,
    child: &mut Child,
) -> Result<Option<pty::Relay>> {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    channel.send_go(&raw)?;
    drop(fds);
    let relay = match supervise::wait_started(
        channel,
        child.pid,
        spec.lifecycle.interactive,
        "container setup",
    )? {
        Started::Running(relay) => relay,
        Started::Failed(e) => {
            child.reaped();
            return Err(e);
        }
    };
    crate::explain::checkpoint(6, "running")?;
    // The container runs. Until the single save below, a failure (or a crash) still removes
    // everything; after it, the state says "running" and names the layer as kept.
    let mut keep_layer = false;
    if let (Some(layer), Some(ov)) = (r.layer.as_ref(), &spec.overlay) {
        keep_layer = ov.keep || spec.lifecycle.detach;
        if ov.keep {
            layer.save_kept(&overlay::Kept {
                id: spec.id.clone(),
                name: ov.name.clone(),
                lowers: ov.lowers.clone(),
                command: spec.command.clone(),
                created: r.rt.state.created,
                exit_code: None,
                finished: None,
            })?;
        }
        if keep_layer {
            let name = ov.name.clone().filter(|_| ov.keep);
            r.rt.state.resources.overlay = Some(overlay::LayerRecord {
                dir: layer.dir.clone(),
                keep: true,
                name,
            });
        }
    }
    r.rt.set_status(Status::Running)?;
    // Committed: a detached container's directory (log, state) and any kept layer outlive it.
    r.rt.persist = spec.lifecycle.detach;
    if let Some(layer) = r.layer.as_mut() {
        layer.commit(keep_layer);
    }
    Ok(relay)
}
// ANCHOR_END: go

// ANCHOR: tear_down
/// Step 13: ch04's OOM check and metrics from the cgroup, then everything step 2 reserved goes —
/// the cgroup (killing anything left in it), the network, the writable layer unless kept, the
/// runtime directory.
fn tear_down(spec: &Spec, r: Reserved, code: i32) -> i32 {
    let Reserved {
        net,
        cgroup,
        layer,
        mut rt,
    } = r;
    rt.state.exit_code = Some(code);
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
    let _ = crate::explain::checkpoint(13, "teardown"); // (the container ran: nothing to fail)
    drop(net); // ch06: ports, veth, address
    rt.state.resources.network = None; // released (`ps -a` shows no address)
    let finished = state::now();
    rt.state.finished = Some(finished);
    if let Some(l) = &layer {
        if let Err(e) = l.record_exit(code, finished) {
            eprintln!("minictr: warning: {}", error::one_line(&e));
        }
    }
    drop(layer);
    drop(rt);
    // ch09: layers an `rmi -f` (or a moved tag) left to this container go with it.
    if spec.image.is_some() {
        image::run::collect_after(&overlay::data_dir(), &|| images_in_use(&spec.host));
    }
    code
}
// ANCHOR_END: tear_down

/// The stages' part of cleaning up after a crashed minictr (`state::cleanup_stale` calls it for
/// each runtime directory whose owner died).
pub struct Stages<'a>(pub &'a Host);

impl state::UndoStale for Stages<'_> {
    fn undo(&self, st: &state::State) -> bool {
        let r = &st.resources;
        // ch04: kill what is left in the dead run's cgroups and remove them.
        if let Some(paths) = &r.cgroup {
            if !cgroups::remove_stale(paths) {
                return false;
            }
        }
        if let Some(layer) = &r.overlay {
            overlay::cleanup_stale(layer);
        }
        // ch06: the veth, published ports and address of a crashed run.
        if let Some(lease) = &r.network {
            network::cleanup_stale(lease, &network_dir(self.0));
        }
        true
    }

    fn finish(&self, dirs: &std::collections::HashSet<std::ffi::OsString>) {
        // The scan's listing of the runtime directories instead of a link and a stat per layer.
        overlay::remove_orphans(&|id| dirs.contains(std::ffi::OsStr::new(id)));
    }
}

/// ch09: the images containers run on — every container that still has a runtime directory
/// (running, or exited and waiting for `minictr rm`); `rmi` and the store's clean-up leave their
/// layers alone.
pub fn images_in_use(host: &Host) -> Vec<(String, image::Use)> {
    state::list(&host.run_dir)
        .into_iter()
        .filter_map(|e| Some((e.state.id, e.state.resources.image?)))
        .collect()
}

/// ch06: where address allocations live (shared by every minictr of this machine).
fn network_dir(host: &Host) -> PathBuf {
    host.run_dir.join("network")
}

/// `minictr network rm` (ch06).
pub fn network_rm(host: &Host) -> Result<i32> {
    network::remove(&network_dir(host), state::is_live)?;
    Ok(0)
}

/// ch03: when clone fails for a normal user because a sysctl forbids unprivileged user namespaces,
/// the error names that setting and the command that changes it.
fn userns_disabled_error(e: anyhow::Error, spec: &Spec) -> anyhow::Error {
    if !spec.namespaces.user || spec.host.is_root() {
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

/// The host uid/gid that is root inside the container: the owner of its writable layer.
fn root_owner(spec: &Spec) -> (u32, u32) {
    let Some(plan) = &spec.userns else {
        return (0, 0);
    };
    if !spec.host.is_root() {
        return (spec.host.euid, spec.host.egid);
    }
    let find =
        |maps: &[userns::IdMap]| maps.iter().find(|m| m.inside == 0).map_or(0, |m| m.outside);
    (find(&plan.uid_maps), find(&plan.gid_maps))
}

/// ch04: whether the child makes its cgroup namespace itself (v1: after moving into its cgroups).
fn late_cgroupns(spec: &Spec) -> bool {
    spec.namespaces.cgroup && matches!(&spec.cgroup, cgroups::Decision::Use(p) if p.late_cgroupns())
}

/// What the child takes over from the parent at clone, besides the spec and the channel.
struct Inherited<'a> {
    /// ch05: the writable layer (rootless mounts the overlay itself).
    layer_dir: Option<&'a std::path::Path>,
    /// ch04: the `tasks` files to move itself with (v1; v2: none to write), if there is a cgroup.
    cgroup: Option<cgroups::SelfAttach>,
    /// Descriptors that are the parent's alone: the child closes its copies first.
    parent_only: [i32; 3],
}

/// The container's first process, before exec. Runs in the child and never returns normally.
fn child_main(spec: &Spec, inherited: Inherited, ch: &Channel, mask: &SigSet) -> i32 {
    // The parent's end of the channel is the parent's: closing our copy lets each side see EOF when
    // the other dies. Likewise its signalfd, and the runtime directory's lock: the lock must die
    // with minictr, or a crash would look like a live container until we are gone too.
    for fd in inherited.parent_only {
        let _ = nix::unistd::close(fd);
    }
    match child_setup(spec, inherited.layer_dir, inherited.cgroup, ch, mask) {
        Ok(code) => code,
        Err(e) => {
            let code = error::exit_code(&e);
            let _ = ch.send_failed(code, &error::one_line(&e));
            code
        }
    }
}

// ANCHOR: child
/// Steps 7–11, in the child: root inside, hostname, mounts, pivot_root, then the process itself.
fn child_setup(
    spec: &Spec,
    layer_dir: Option<&std::path::Path>,
    cgroup: Option<cgroups::SelfAttach>,
    ch: &Channel,
    mask: &SigSet,
) -> Result<i32> {
    let fds = wait_for_go(ch)?;
    // ch04, v1: into the container's cgroups first — one thread, nothing forked yet, and before
    // become_root makes the cgroup namespace (which must be rooted at the container's cgroup).
    if let Some(cgroup) = cgroup {
        cgroup.attach()?;
    }
    // ch07: non-dumpable from now until execve. Not earlier: until "go" the parent still opens our
    // /proc/PID files (uid_map when rootless, ns/* for the network), which non-dumpable would make
    // root's. Nothing else runs in the container's namespaces before we exec.
    security::set_nondumpable()?;
    // 7. Root inside the user namespace (the parent wrote the maps).
    become_root(spec, ch)?;
    // 8. Hostname.
    if spec.namespaces.uts {
        namespaces::set_hostname(&spec.hostname)?;
    }
    // 9.–10. Mounts in chapter 2's order, private first, pivot_root last: from then on the host's
    // files are out of reach.
    // (`--until 1`: no root filesystem stage — the command runs in the host's files.)
    if crate::workshop::stage_on(&spec.host, 2) {
        mount_everything(spec, layer_dir, fds)?;
    }
    if spec.namespaces.net {
        namespaces::loopback_up()?;
    }
    if spec.lifecycle.tty {
        let master = pty::open_in_container()?;
        ch.send_pty(master.as_raw_fd())?;
    }
    // 11. The process: user, working directory, environment, exec.
    let env = become_process(spec, mask)?;
    if spec.lifecycle.init {
        // minictr stays PID 1 and never execs, so close-on-exec cannot tell the parent that the
        // container runs: close our end of the channel explicitly (EOF = "running").
        let _ = nix::unistd::close(ch.raw_fd());
        return Ok(init::run(mask, || process::exec(&spec.command, &env)));
    }
    Err(process::exec(&spec.command, &env).into())
}
// ANCHOR_END: child

/// Block until the parent says "go"; the message carries the prepared mounts.
fn wait_for_go(ch: &Channel) -> Result<Vec<OwnedFd>> {
    match ch.recv()? {
        Some(Msg::Go(fds)) => Ok(fds),
        Some(Msg::Failed { message, .. }) => bail!("parent failed: {message}"),
        Some(Msg::Pty(_)) => bail!("unexpected message from the parent"),
        None => bail!("minictr exited before the container started"),
    }
}

/// Step 7: root inside the user namespace; v1's late cgroup namespace; die with minictr.
fn become_root(spec: &Spec, ch: &Channel) -> Result<()> {
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
    Ok(())
}

// ANCHOR: mounts
/// Steps 9–10: chapter 2's mount plan, applied — the root (the parent's prepared mount, or rootless
/// the overlay made here), /proc /sys /dev, volumes, read-only root, the working directory,
/// pivot_root last. Other stages mount at the places the plan leaves them: /sys/fs/cgroup
/// (chapter 4), `--tmpfs` (chapter 5), the masks (chapter 7).
fn mount_everything(
    spec: &Spec,
    layer_dir: Option<&std::path::Path>,
    fds: Vec<OwnedFd>,
) -> Result<()> {
    let (prepared_volumes, prepared_root) = rootfs::split_prepared(&spec.rootfs, fds);
    let source = match (&spec.overlay, prepared_root) {
        // Rootless: mount the overlay here, inside the user namespace.
        (Some(ov), None) => rootfs::RootSource::MountedBy(Box::new(|at: &std::path::Path| {
            if layer_dir.is_none() && layer_in_memory(spec) {
                // The tmpfs fd may close after the mount: the overlay holds the layer.
                let memory = overlay::MemoryLayer::create(None)?;
                return overlay::mount_in_child(&ov.lowers, Some(&memory.dir()), at);
            }
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
                cgroups::Decision::Use(plan) => mount_cgroupfs(
                    root,
                    cgroups::fs::cgroupfs_plan(&plan.inside(), spec.namespaces.cgroup),
                ), // ch04
                _ => Ok(()),
            },
            rootfs::Other::Tmpfs => spec
                .tmpfs
                .iter()
                .try_for_each(|t| rootfs::mount_tmpfs(root, &t.path, t.flags, &t.data)),
            // ch07: mask /proc/kcore, … and make /proc/sys, … read-only (after /proc, before pivot_root).
            rootfs::Other::Masks => security::protect_paths(&spec.security, root),
        },
    )
}
// ANCHOR_END: mounts

/// ch04's plan for /sys/fs/cgroup, made with the root filesystem stage's mount calls. The tmpfs a
/// step mounts is opened once (`top`): the directories bound into it and its read-only switch go
/// through that descriptor instead of resolving each path from the root again.
fn mount_cgroupfs(root: &rootfs::safepath::Root, steps: Vec<cgroups::fs::FsStep>) -> Result<()> {
    use nix::fcntl::OFlag;
    let mut top: Option<(PathBuf, OwnedFd)> = None;
    // The mount now at `at` (the lookup crosses onto the tmpfs just mounted there).
    let top_of = |at: &std::path::Path| -> Result<OwnedFd> {
        root.resolve(at, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .with_context(|| format!("failed to open {} inside the rootfs", at.display()))
    };
    for step in steps {
        match step {
            cgroups::fs::FsStep::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let dir = root.mkdir_all(&target)?;
                rootfs::mount_on(&source, dir.as_fd(), &target, fstype, flags, data)?;
                top = None;
            }
            cgroups::fs::FsStep::BindInto { source, at, name } => {
                let fd = match top.take() {
                    Some((p, fd)) if p == at => fd,
                    _ => top_of(&at)?,
                };
                let shown = at.join(&name);
                let dir = mkdir_in(fd.as_fd(), &name, &shown)?;
                rootfs::mount_on(
                    &source,
                    dir.as_fd(),
                    &shown,
                    None,
                    nix::mount::MsFlags::MS_BIND,
                    None,
                )?;
                top = Some((at, fd));
            }
            cgroups::fs::FsStep::ReadOnly(at) => {
                let fd = match top.take() {
                    Some((p, fd)) if p == at => fd,
                    _ => root.mkdir_all(&at)?,
                };
                rootfs::make_readonly(fd.as_fd(), &at, true)?;
            }
        }
    }
    Ok(())
}

/// `name`, a new directory in the fresh tmpfs `parent`, opened (O_PATH) as a mount point.
fn mkdir_in(
    parent: std::os::fd::BorrowedFd<'_>,
    name: &str,
    shown: &std::path::Path,
) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::sys::stat::mkdirat(
        parent,
        name,
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    )
    .with_context(|| format!("failed to create {} inside the rootfs", shown.display()))?;
    nix::fcntl::openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("failed to open {} inside the rootfs", shown.display()))
}

// ANCHOR: ch07_steps
/// Step 11: the process's identity, as for `minictr exec` — with chapter 7's walls: rlimits and the
/// bounding set while still root with every capability; capability sets, fds close-on-exec,
/// no_new_privs and seccomp last.
fn become_process(spec: &Spec, mask: &SigSet) -> Result<Vec<(String, String)>> {
    let tail = process::Tail {
        user: &spec.user,
        workdir: &spec.rootfs.workdir,
        hostname: &spec.hostname,
        env: &spec.env,
        may_setgroups: spec.userns.as_ref().is_none_or(|p| p.setgroups_allowed()),
        mask,
    };
    process::become_process(
        &tail,
        || security::before_user_switch(&spec.security),
        || security::after_user_switch(&spec.security),
    )
}
// ANCHOR_END: ch07_steps
