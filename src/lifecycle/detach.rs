//! `-d`: detached containers (chapter 8). minictr forks a *monitor* that runs the whole start sequence,
//! owns the container (holds its lock, waits for it, tears it down) and writes its output to
//! `/run/minictr/<id>/log`; the process the user started waits only until the container runs, prints
//! its id, and exits.

use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const CHAPTER: &str = "ch08 lifecycle";

/// The monitor's line back to the foreground process.
pub struct Notifier {
    pipe: Option<std::fs::File>,
}

impl Notifier {
    /// The container runs: the foreground prints the id and exits 0.
    pub fn started(&mut self, id: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = writeln!(p, "ok {id}");
        }
    }

    /// Starting failed: the foreground prints the message and exits with `code`.
    pub fn failed(&mut self, code: i32, message: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = writeln!(p, "err {code} {}", message.replace('\n', " "));
        }
    }
}

// ANCHOR: daemonize
/// Fork the monitor. Returns in the monitor (a new session, stdin on /dev/null); the foreground
/// process never returns: it relays the monitor's verdict and exits.
pub fn daemonize() -> Result<Notifier> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("failed to create a pipe")?;
    crate::explain!(
        CHAPTER,
        "fork(); setsid() — a monitor process owns the detached container"
    );
    // SAFETY: minictr is single-threaded here; both sides continue with ordinary code.
    match unsafe { nix::unistd::fork() }.context("failed to fork the monitor")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            // One line is the verdict; don't wait for EOF (a descendant may still hold the pipe).
            let mut text = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(r)).read_line(&mut text);
            if let Some(id) = text.strip_prefix("ok ") {
                println!("{}", id.trim());
                std::process::exit(0);
            }
            if let Some(rest) = text.strip_prefix("err ") {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                eprintln!("minictr: {}", msg.trim_end());
                std::process::exit(code.parse().unwrap_or(crate::error::EXIT_RUNTIME));
            }
            eprintln!("minictr: the container's monitor process died while starting it");
            std::process::exit(crate::error::EXIT_RUNTIME);
        }
        nix::unistd::ForkResult::Child => {
            drop(r);
            nix::unistd::setsid().context("setsid failed")?;
            let null = std::fs::File::open("/dev/null").context("failed to open /dev/null")?;
            nix::unistd::dup2_stdin(&null).context("failed to redirect stdin")?;
            Ok(Notifier {
                pipe: Some(std::fs::File::from(w)),
            })
        }
    }
}
// ANCHOR_END: daemonize

/// Send the monitor's (and so the container's) stdout and stderr to `log`.
pub fn redirect_output(log: &Path) -> Result<()> {
    let f: OwnedFd = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("failed to open the log {}", log.display()))?
        .into();
    crate::explain!(
        CHAPTER,
        "dup2({log:?} → 1, 2) — the container's output goes to its log"
    );
    nix::unistd::dup2_stdout(&f)
        .and_then(|()| nix::unistd::dup2_stderr(&f))
        .context("failed to redirect output to the log")?;
    Ok(())
}
