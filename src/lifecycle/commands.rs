//! `minictr ps`, `logs`, `stop`, `kill` (chapter 8): commands that read the state directory.

use crate::state::{self, Entry, Status};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

fn status_of(e: &Entry) -> String {
    match (e.live, e.state.status, e.state.exit_code) {
        (true, Status::Running, _) => "running".into(),
        (true, _, _) => "starting".into(),
        (false, Status::Exited, Some(c)) => format!("exited ({c})"),
        (false, Status::Exited, None) => "exited (minictr died)".into(),
        (false, _, _) => "dead".into(),
    }
}

fn age(secs: u64) -> String {
    let d = state::now().saturating_sub(secs);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

// ANCHOR: ps
/// `minictr ps [-a]`: id, name, pid, status, command, created, address.
pub fn ps(all: bool) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<12}  {:<16}  {:>7}  {:<16}  {:<24}  {:<10}  ADDRESS",
        "ID", "NAME", "PID", "STATUS", "COMMAND", "CREATED"
    )?;
    for e in state::list(&state::base_dir()) {
        let running = e.live && e.state.status == Status::Running;
        if !all && !running {
            continue;
        }
        let mut cmd = e.state.command.join(" ");
        if cmd.chars().count() > 24 {
            cmd = cmd.chars().take(23).collect::<String>() + "…";
        }
        let pid = if running {
            e.state
                .container_pid
                .map(|p| p.to_string())
                .unwrap_or_default()
        } else {
            "-".into()
        };
        let addr = e
            .state
            .resources
            .network
            .as_ref()
            .filter(|l| !l.addr.is_unspecified()) // not yet allocated: the start is under way
            .map_or_else(|| "-".into(), |l| l.addr.to_string());
        writeln!(
            out,
            "{:<12}  {:<16}  {:>7}  {:<16}  {:<24}  {:<10}  {}",
            e.state.id,
            e.state.name.clone().unwrap_or_else(|| "-".into()),
            pid,
            status_of(&e),
            cmd,
            age(e.state.created),
            addr
        )?;
    }
    Ok(0)
}
// ANCHOR_END: ps

/// `minictr logs [-f] ID`: the output of a detached container.
pub fn logs(what: &str, follow: bool) -> Result<i32> {
    let e = state::find(&state::base_dir(), what)?;
    let path = e.path.join("log");
    let mut f = std::fs::File::open(&path).map_err(|err| {
        crate::error::hint(
            format!("container {what} has no log ({}): {err}", path.display()),
            "only containers started with -d have a log",
        )
    })?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !follow {
            return Ok(0);
        }
        // Follow until the container's monitor is gone and nothing more was written.
        let alive = state::find(&state::base_dir(), &e.state.id)
            .map(|e| e.live)
            .unwrap_or(false);
        if !alive {
            let pos = f.stream_position()?;
            if pos >= std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) {
                return Ok(0);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running container's first process, or an error that says it is not running.
fn running_pid(e: &Entry, what: &str) -> Result<Pid> {
    match (e.live, e.state.container_pid) {
        (true, Some(p)) if e.state.status == Status::Running => Ok(Pid::from_raw(p)),
        _ => bail!(crate::error::hint(
            format!("container {what} is not running"),
            "see `minictr ps -a`"
        )),
    }
}

/// Parse a signal given as `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let up = s.to_ascii_uppercase();
    let sig = if let Ok(n) = up.parse::<i32>() {
        Signal::try_from(n).ok()
    } else {
        let name = if up.starts_with("SIG") {
            up.clone()
        } else {
            format!("SIG{up}")
        };
        name.parse::<Signal>().ok()
    };
    sig.ok_or_else(|| {
        crate::error::hint(
            format!("unknown signal {s:?}"),
            "use a name like TERM, KILL, HUP, or a number",
        )
    })
}

/// `minictr kill ID [-s SIGNAL]`.
pub fn kill_cmd(what: &str, signal: &str) -> Result<i32> {
    let sig = parse_signal(signal)?;
    let e = state::find(&state::base_dir(), what)?;
    let pid = running_pid(&e, what)?;
    crate::explain!("ch08 lifecycle", "kill({pid}, {sig})");
    kill(pid, sig).with_context(|| format!("failed to send {sig} to container {what}"))?;
    println!("{}", e.state.id);
    Ok(0)
}

// ANCHOR: stop
/// `minictr stop [-t SECONDS] ID`: SIGTERM, then SIGKILL after the grace period, like `docker stop`.
pub fn stop(what: &str, timeout: u64) -> Result<i32> {
    let e = state::find(&state::base_dir(), what)?;
    let pid = running_pid(&e, what)?;
    crate::explain!(
        "ch08 lifecycle",
        "kill({pid}, SIGTERM); after {timeout}s kill({pid}, SIGKILL)"
    );
    kill(pid, Signal::SIGTERM).with_context(|| format!("failed to stop container {what}"))?;
    if !wait_gone(&e, Duration::from_secs(timeout)) {
        let _ = kill(pid, Signal::SIGKILL);
        wait_gone(&e, Duration::from_secs(10));
    }
    println!("{}", e.state.id);
    Ok(0)
}
// ANCHOR_END: stop

/// Wait until the container's monitor released the lock (the container exited and was torn down).
pub fn wait_gone(e: &Entry, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let live = state::list(&state::base_dir())
            .iter()
            .any(|x| x.state.id == e.state.id && x.live);
        if !live {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("99").is_err());
    }
}
