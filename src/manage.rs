//! The commands that manage containers after `minictr run` started them — `ps`, `inspect`, `exec`
//! (chapter 8), `rm`,
//! `diff` (chapter 5) and `stats` (chapter 4). Like `run.rs` they are orchestration: they wire the
//! stages together and know nothing the stages do not tell them.

use crate::lifecycle::commands::{self, PsRow};
use crate::lifecycle::pty;
use crate::lifecycle::supervise::{self, block_signals, wait_forwarding, Started};
use crate::state::Status;
use crate::sync::Channel;
use crate::{cgroups, error, namespaces, overlay, process, security, state, sync, userns};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

// ANCHOR: ps
/// `minictr ps [-a] [-q]`: the running containers; with -a also the detached ones that exited and
/// the kept ones (`--name`, `--keep`) that only have their writable layer and record left.
pub fn ps(all: bool, quiet: bool) -> Result<i32> {
    let entries = state::list(&state::base_dir());
    let mut rows: Vec<PsRow> = entries
        .iter()
        .filter(|e| all || commands::is_running(e))
        .map(PsRow::of)
        .collect();
    if all {
        for (_, kept) in overlay::list_kept() {
            if rows.iter().any(|r| r.id == kept.id) || entries.iter().any(|e| e.state.id == kept.id)
            {
                continue; // still has its runtime directory: listed above
            }
            rows.push(PsRow {
                status: commands::exited_status(
                    kept.exit_code,
                    kept.finished.unwrap_or(kept.created),
                ),
                id: kept.id,
                name: kept.name,
                pid: None,
                command: kept.command,
                created: kept.created,
                address: None,
            });
        }
    }
    rows.sort_by_key(|r| r.created);
    commands::print_ps(&rows, quiet)
}
// ANCHOR_END: ps

// ANCHOR: inspect
/// `minictr inspect ID|NAME`: the container's record as JSON — its state.json, and for a kept
/// container the record of its writable layer (`kept`, with the layer's directory).
pub fn inspect(what: &str) -> Result<i32> {
    let (mut json, id) = match state::find(&state::base_dir(), what) {
        Ok(e) => {
            let mut v = serde_json::to_value(&e.state).context("failed to serialise the state")?;
            v["runtime_dir"] = serde_json::json!(e.path);
            v["live"] = serde_json::json!(e.live);
            (v, e.state.id)
        }
        Err(not_found) => {
            let Ok((_, kept)) = overlay::find_kept(what) else {
                return Err(not_found);
            };
            // Only the layer is left: the record stands for the state.
            let v = serde_json::json!({
                "id": kept.id,
                "name": kept.name,
                "status": "exited",
                "exit_code": kept.exit_code,
                "created": kept.created,
                "finished": kept.finished,
                "command": kept.command,
                "live": false,
            });
            (v, kept.id)
        }
    };
    if let Some((dir, kept)) = overlay::list_kept().into_iter().find(|(_, k)| k.id == id) {
        let mut k = serde_json::to_value(&kept).context("failed to serialise the kept record")?;
        k["layer"] = serde_json::json!(dir);
        json["kept"] = k;
    }
    let text = serde_json::to_string_pretty(&json).context("failed to serialise the record")?;
    println!("{text}");
    Ok(0)
}
// ANCHOR_END: inspect

/// `minictr diff ID|NAME`.
pub fn diff(what: &str) -> Result<i32> {
    let (dir, kept) = match overlay::find_kept(what) {
        Ok(found) => found,
        Err(e) => match state::find(&state::base_dir(), what) {
            // ch05: a running container that is removed at exit writes into memory.
            Ok(c) if c.live && c.state.resources.overlay.is_none() => bail!(error::hint(
                format!("container {what} has no writable layer on disk: it is removed at exit, so its writes stay in memory (or it has no layer at all)"),
                "start it with --keep or --name to diff it; while it runs its files are under /proc/PID/root"
            )),
            _ => return Err(e),
        },
    };
    for (kind, path) in overlay::diff(&dir.join("upper"), &kept.lowers)? {
        println!("{kind} {path}");
    }
    Ok(0)
}

// ANCHOR: rm
/// `minictr rm [-f] ID|NAME…`: a stopped (or, with -f, running) container's runtime directory, writable
/// layer and name; or a kept container that only has a layer.
pub fn rm(what: &[String], force: bool) -> Result<i32> {
    // Like `docker rm`: every container is tried; the last error is minictr's exit (125), the
    // others are printed as they happen.
    let mut failed = None;
    for w in what {
        if let Err(e) = rm_one(w, force) {
            if let Some(prev) = failed.replace(e) {
                eprintln!("minictr: {}", error::one_line(&prev));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// `minictr rm` of one container.
fn rm_one(w: &str, force: bool) -> Result<()> {
    match state::find(&state::base_dir(), w) {
        Ok(e) => {
            if e.live {
                if !force {
                    bail!(error::hint(
                        format!("container {w} is running"),
                        "stop it first (`minictr stop`), or use rm -f"
                    ));
                }
                if let Some(pid) = e.state.container_pid {
                    crate::explain!(state::CHAPTER, "kill({pid}, SIGKILL) — rm -f");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                if !crate::lifecycle::commands::wait_gone(&e, std::time::Duration::from_secs(10)) {
                    bail!("container {w} did not stop within 10 s");
                }
                // Its minictr normally tears everything down before it lets go of the lock; if it
                // died instead, what it reserved (address, veth, cgroup) is undone here, as the
                // next command would have — before its state.json is removed with it.
                if e.path.exists() {
                    state::cleanup_stale(&crate::run::Stages(&crate::host::Host::detect()));
                }
            }
            if let Some(layer) = &e.state.resources.overlay {
                overlay::cleanup_stale(&overlay::LayerRecord {
                    keep: false,
                    ..layer.clone()
                });
            }
            // A foreground minictr removes its own directory when its container dies.
            match std::fs::remove_dir_all(&e.path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err)
                        .with_context(|| format!("failed to remove {}", e.path.display()));
                }
                _ => {}
            }
            println!("{}", e.state.id);
        }
        Err(_) => {
            let (dir, kept) = overlay::find_kept(w)?;
            if running_ids().contains(&kept.id) {
                bail!(error::hint(
                    format!("container {w} is running"),
                    "stop it first"
                ));
            }
            overlay::remove_kept(&dir, &kept)?;
            println!("{}", kept.id);
        }
    }
    Ok(())
}
// ANCHOR_END: rm

/// Options of `minictr exec`.
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    pub tty: bool,
    pub interactive: bool,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
}

// ANCHOR: exec
/// `minictr exec`: start another process in a running container — in all of its namespaces, as its
/// user, with the same environment.
pub fn exec(o: ExecOptions) -> Result<i32> {
    let e = state::find(&state::base_dir(), &o.container)?;
    let pid = match (e.live, e.state.status, e.state.container_pid) {
        (true, Status::Running, Some(p)) => Pid::from_raw(p),
        _ => bail!(error::hint(
            format!("container {} is not running", o.container),
            "start a new one with `minictr run`; see `minictr ps -a`"
        )),
    };
    let p = ExecProcess::new(&o, &e.state)?;
    // Non-dumpable before we enter: a process of the container must never get at our memory or at
    // /proc/<us>/exe — the minictr binary (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0) failed")?;
    // The container's cgroup first (ch04), from the host: its limits then cover what we start.
    if let Some(paths) = &e.state.resources.cgroup {
        cgroups::join(paths)?;
    }
    let joined = namespaces::join(pid, &e.state.exec.namespaces)?;
    let (old_mask, sfd) = block_signals(o.tty)?;
    let (parent_end, child_end) = sync::pair()?;
    // Entering a PID namespace applies to children only: fork.
    crate::explain!(
        namespaces::CHAPTER,
        "fork() — setns(CLONE_NEWPID) only affects children"
    );
    // SAFETY: single-threaded; the child only sets itself up and execs.
    let child = match unsafe { nix::unistd::fork() }.context("fork failed")? {
        nix::unistd::ForkResult::Child => {
            drop(parent_end);
            drop(sfd);
            let Err(err) = exec_child(&p, &child_end, &old_mask, joined.user);
            let code = error::exit_code(&err);
            let _ = child_end.send_failed(code, &error::one_line(&err));
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(child_end);
    match supervise::wait_started(&parent_end, child, o.interactive, "exec")? {
        Started::Running(relay) => wait_forwarding(child, sfd, relay),
        Started::Failed(e) => Err(e),
    }
}
// ANCHOR_END: exec

/// The exec'd process: the first process's settings from state.json, with exec's own `-e`, `-u`, `-w`.
struct ExecProcess<'a> {
    o: &'a ExecOptions,
    user: process::UserSpec,
    workdir: PathBuf,
    env: Vec<(String, String)>,
    hostname: &'a str,
    /// ch07: the container's capabilities, seccomp filter, no_new_privs and rlimits (compiled here,
    /// before we enter).
    hardening: security::Config,
}

impl<'a> ExecProcess<'a> {
    fn new(o: &'a ExecOptions, st: &'a state::State) -> Result<ExecProcess<'a>> {
        let info = &st.exec;
        let mut env: Vec<(String, String)> = info.env.clone();
        for kv in &o.env {
            if let Some(pair) = process::parse_env(kv)? {
                env.push(pair);
            }
        }
        let user = match o.user.as_deref().or(info.user.as_deref()) {
            Some(u) => process::parse_user(u)?,
            None => process::UserSpec::default(),
        };
        Ok(ExecProcess {
            o,
            user,
            workdir: o.workdir.clone().unwrap_or_else(|| info.workdir.clone()),
            env,
            hostname: &st.hostname,
            hardening: security::Config::from_options(&info.security.options())?,
        })
    }
}

// ANCHOR: exec_child
/// In the forked child, inside the container's namespaces: root inside, then the same tail as the
/// container's first process (identity, working directory, ch07's walls), then exec.
fn exec_child(
    p: &ExecProcess,
    ch: &Channel,
    mask: &SigSet,
    in_userns: bool,
) -> Result<std::convert::Infallible> {
    process::die_with_parent()?;
    // A rootless container without subordinate ids denied setgroups(2) in its user namespace.
    let may_setgroups =
        std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow");
    if in_userns {
        userns::become_root(may_setgroups)?;
    }
    let tail = process::Tail {
        user: &p.user,
        workdir: &p.workdir,
        hostname: p.hostname,
        env: &p.env,
        may_setgroups,
        mask,
    };
    let env = process::become_process(
        &tail,
        // ch07: rlimits and the bounding set, while still root in the container's user namespace.
        || security::before_user_switch(&p.hardening),
        || {
            if p.o.tty {
                let master = pty::open_in_container()?;
                ch.send_pty(master.as_raw_fd())?;
            }
            // ch07: capability sets, no_new_privs, seccomp — as for the container's first process.
            security::after_user_switch(&p.hardening)
        },
    )?;
    Err(process::exec(&p.o.command, &env).into())
}
// ANCHOR_END: exec_child

/// Ids of the containers whose minictr is alive.
fn running_ids() -> Vec<String> {
    let stale: Vec<PathBuf> = state::stale_entries(&state::base_dir())
        .into_iter()
        .map(|s| s.path)
        .collect();
    std::fs::read_dir(state::base_dir())
        .map(|rd| {
            rd.flatten()
                .filter(|e| !stale.contains(&e.path()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ANCHOR: stats
/// `minictr stats [ID…]`: each running container's cgroup counters (chapter 4's reading code),
/// refreshed every second until Ctrl-C, or once with `--no-stream`.
pub fn stats(what: &[String], no_stream: bool) -> Result<i32> {
    use std::io::Write;
    let base = state::base_dir();
    let pick = || -> Result<Vec<state::Entry>> {
        let running = |e: &state::Entry| e.live && e.state.status == Status::Running;
        if what.is_empty() {
            return Ok(state::list(&base).into_iter().filter(running).collect());
        }
        what.iter()
            .map(|w| {
                let e = state::find(&base, w)?;
                if !running(&e) {
                    bail!(error::hint(
                        format!("container {w} is not running"),
                        "see `minictr ps -a`"
                    ));
                }
                Ok(e)
            })
            .collect()
    };
    loop {
        let mut out = String::new();
        for e in pick()? {
            let name = e.state.name.clone().unwrap_or_else(|| e.state.id.clone());
            match &e.state.resources.cgroup {
                Some(paths) => {
                    let st = cgroups::stats_of(paths)?;
                    out.push_str(&format!("{name} ({})\n{}", e.state.id, st.report().lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()));
                }
                None => out.push_str(&format!("{name} ({}): no cgroup (started with --no-cgroup, or rootless without delegation)\n", e.state.id)),
            }
        }
        if out.is_empty() {
            out.push_str("no running containers\n");
        }
        let mut stdout = std::io::stdout().lock();
        if !no_stream {
            // Clear the screen and go home, like `docker stats`.
            stdout.write_all(b"\x1b[2J\x1b[H")?;
        }
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        if no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
// ANCHOR_END: stats
