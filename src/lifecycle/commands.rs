//! `minictr ps`, `logs`, `stop`, `kill` (chapter 8): commands that read the state directory.

use crate::state::{self, Entry, Status};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

/// A span of time as Docker prints it (`docker ps`: "Up 3 seconds", "About a minute", "2 hours").
pub fn human_duration(secs: u64) -> String {
    let (minutes, hours) = (secs / 60, (secs + 1800) / 3600);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 14 => format!("{} days", hours / 24),
        _ if hours < 24 * 60 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 730 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

fn ago(secs: u64) -> String {
    format!("{} ago", human_duration(state::now().saturating_sub(secs)))
}

/// `Exited (0) 5 seconds ago`; a container whose minictr died has no exit status.
pub fn exited_status(code: Option<i32>, finished: u64) -> String {
    match code {
        Some(c) => format!("Exited ({c}) {}", ago(finished)),
        None => format!("Exited (minictr died) {}", ago(finished)),
    }
}

/// The STATUS column, as `docker ps` words it: "Up 3 seconds", "Exited (137) 5 seconds ago",
/// "Created" (still starting).
fn status_of(e: &Entry) -> String {
    let st = &e.state;
    match (e.live, st.status) {
        (true, Status::Running) => format!(
            "Up {}",
            human_duration(state::now().saturating_sub(st.created))
        ),
        (true, _) => "Created".into(),
        (false, Status::Exited) => exited_status(st.exit_code, st.finished.unwrap_or(st.created)),
        (false, _) => "Dead".into(),
    }
}

/// One line of `minictr ps`.
pub struct PsRow {
    pub id: String,
    pub name: Option<String>,
    /// The first process, while the container runs.
    pub pid: Option<i32>,
    pub status: String,
    pub command: Vec<String>,
    pub created: u64,
    pub address: Option<String>,
}

impl PsRow {
    /// A container with a runtime directory (running, starting, or detached and exited).
    pub fn of(e: &Entry) -> PsRow {
        let running = e.live && e.state.status == Status::Running;
        PsRow {
            id: e.state.id.clone(),
            name: e.state.name.clone(),
            pid: e.state.container_pid.filter(|_| running),
            status: status_of(e),
            command: e.state.command.clone(),
            created: e.state.created,
            address: e
                .state
                .resources
                .network
                .as_ref()
                .filter(|l| !l.addr.is_unspecified()) // not yet allocated: the start is under way
                .map(|l| l.addr.to_string()),
        }
    }
}

/// Whether a container's minictr is alive and its command runs (what `ps` without -a lists).
pub fn is_running(e: &Entry) -> bool {
    e.live && e.state.status == Status::Running
}

// ANCHOR: ps
/// `minictr ps`: id, name, pid, status, command, created, address — or with `-q` the ids alone.
pub fn print_ps(rows: &[PsRow], quiet: bool) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    if quiet {
        for r in rows {
            writeln!(out, "{}", r.id)?;
        }
        return Ok(0);
    }
    let mut table = vec![[
        "ID", "NAME", "PID", "STATUS", "COMMAND", "CREATED", "ADDRESS",
    ]
    .map(String::from)];
    for r in rows {
        let mut cmd = r.command.join(" ");
        if cmd.chars().count() > 24 {
            cmd = cmd.chars().take(23).collect::<String>() + "…";
        }
        table.push([
            r.id.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            r.status.clone(),
            cmd,
            ago(r.created),
            r.address.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    // Each column as wide as its widest cell (like `docker ps`); the pid right-aligned.
    let mut width = [0usize; 7];
    for row in &table {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(width[i] - cell.chars().count());
            match i {
                2 => line.push_str(&format!("{pad}{cell}   ")),
                6 => line.push_str(cell),
                _ => line.push_str(&format!("{cell}{pad}   ")),
            }
        }
        writeln!(out, "{line}")?;
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
    fn durations_read_like_docker_ps() {
        for (secs, text) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86400, "2 weeks"),
            (60 * 86400, "2 months"),
            (800 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs} s");
        }
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("99").is_err());
    }
}
