//! The commands that manage containers after `minictr run` started them — `exec` (chapter 8), `rm`,
//! `diff` (chapter 5) and `stats` (chapter 4). Like `run.rs` they are orchestration: they wire the
//! stages together and know nothing the stages do not tell them.

use crate::error::{CommandError, EXIT_RUNTIME};
use crate::lifecycle::pty;
use crate::run::{block_signals, cleanup_stale, wait_forwarding};
use crate::sync::{Channel, Msg};
use crate::{cgroups, error, namespaces, overlay, process, security, state, sync, userns};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// `minictr diff ID|NAME`.
pub fn diff(what: &str) -> Result<i32> {
    cleanup_stale();
    let (dir, kept) = overlay::find_kept(what)?;
    for (kind, path) in overlay::diff(&dir.join("upper"), &kept.lowers)? {
        println!("{kind} {path}");
    }
    Ok(0)
}

// ANCHOR: rm
/// `minictr rm [-f] ID|NAME…`: a stopped (or, with -f, running) container's runtime directory, writable
/// layer and name; or a kept container that only has a layer.
pub fn rm(what: &[String], force: bool) -> Result<i32> {
    cleanup_stale();
    for w in what {
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
                    if !crate::lifecycle::commands::wait_gone(
                        &e,
                        std::time::Duration::from_secs(10),
                    ) {
                        bail!("container {w} did not stop within 10 s");
                    }
                }
                if let Some(v) = e.state.resources.get("overlay") {
                    let mut v = v.clone();
                    if v.len() >= 2 {
                        v[1] = "discard".into();
                    }
                    overlay::cleanup_stale(&v);
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
    }
    Ok(0)
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
    cleanup_stale();
    let e = state::find(&state::base_dir(), &o.container)?;
    let pid = match (e.live, e.state.status.as_str(), e.state.container_pid) {
        (true, "running", Some(p)) => Pid::from_raw(p),
        _ => bail!(error::hint(
            format!("container {} is not running", o.container),
            "start a new one with `minictr run`; see `minictr ps -a`"
        )),
    };
    let info = &e.state.exec;
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
    let workdir = o.workdir.clone().unwrap_or_else(|| info.workdir.clone());
    // ch07: the exec'd process gets the container's capabilities, seccomp filter, no_new_privs and
    // rlimits (compiled here, before we enter).
    let hardening = security::Config::from_options(
        &security::OwnedOptions::from_words(&info.security).borrow(),
    )?;
    // Non-dumpable before we enter: a process of the container must never get at our memory or at
    // /proc/<us>/exe — the minictr binary (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0) failed")?;
    // The container's cgroup first (ch04), from the host: its limits then cover what we start.
    if let Some(paths) = e.state.resources.get("cgroup") {
        cgroups::join(paths)?;
    }
    let joined = namespaces::join(pid, &info.namespaces)?;

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
            let code = match exec_child(
                &o,
                &user,
                &workdir,
                &env,
                &e.state.hostname,
                &child_end,
                &old_mask,
                joined.user,
                &hardening,
            ) {
                Ok(never) => match never {},
                Err(err) => {
                    let code = error::exit_code(&err);
                    let _ = child_end.send_failed(code, &error::one_line(&err));
                    code
                }
            };
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(child_end);
    let mut relay = None;
    loop {
        match parent_end.recv()? {
            None => break,
            Some(Msg::Pty(master)) => relay = Some(pty::Relay::new(master, o.interactive)),
            Some(Msg::Failed { code, message }) => {
                let _ = waitpid(child, None);
                if code == EXIT_RUNTIME {
                    bail!("exec failed: {message}");
                }
                return Err(CommandError { code, message }.into());
            }
            Some(Msg::Go(_)) => bail!("unexpected message from the exec'd process"),
        }
    }
    wait_forwarding(child, sfd, relay)
}

#[allow(clippy::too_many_arguments)]
fn exec_child(
    o: &ExecOptions,
    user: &process::UserSpec,
    workdir: &std::path::Path,
    env: &[(String, String)],
    hostname: &str,
    ch: &Channel,
    mask: &SigSet,
    in_userns: bool,
    hardening: &security::Config,
) -> Result<std::convert::Infallible> {
    process::die_with_parent()?;
    // A rootless container without subordinate ids denied setgroups(2) in its user namespace.
    let may_setgroups =
        std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow");
    if in_userns {
        userns::become_root(may_setgroups)?;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let id = process::resolve_identity(user, &passwd, &group)?;
    nix::unistd::chdir(workdir).with_context(|| {
        format!(
            "failed to enter the working directory {}",
            workdir.display()
        )
    })?;
    // ch07: rlimits and the bounding set, while still root in the container's user namespace.
    security::before_user_switch(hardening)?;
    process::switch_user(&id, may_setgroups)?;
    if o.tty {
        let master = pty::open_in_container()?;
        ch.send_pty(master.as_raw_fd())?;
    }
    let home = id.home.clone().unwrap_or_else(|| "/".into());
    let env = process::build_env(hostname, &home, env);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
        .context("failed to restore the signal mask")?;
    // ch07: capability sets, no_new_privs, seccomp — as for the container's first process.
    security::after_user_switch(hardening)?;
    Err(process::exec(&o.command, &env).into())
}
// ANCHOR_END: exec

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
        let running = |e: &state::Entry| e.live && e.state.status == "running";
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
            match e.state.resources.get("cgroup") {
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
