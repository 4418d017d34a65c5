//! The progress of `minictr pull`, one layer at a time, as Docker shows it: on a terminal a line
//! redrawn in place (`\r`, at most ten times a second) — `3f4e5a6b7c8d: downloading  [=====>    ]
//! 1.20 MiB/3.45 MiB` — kept on the screen when the layer is done; otherwise (a pipe, a log file)
//! one plain line per step and no bar.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The widest bar; narrower when the terminal is.
const BAR: usize = 30;
/// How often the line is redrawn at most while bytes arrive.
const REDRAW: Duration = Duration::from_millis(100);

/// Progress of one layer.
pub struct Progress {
    label: String,
    quiet: bool,
    total: u64,
    /// Columns of the terminal on stderr; `None` when stderr is not a terminal (plain lines).
    columns: Option<usize>,
    line: RefCell<Line>,
}

struct Line {
    msg: String,
    done: u64,
    drawn: Option<Instant>,
    /// Drawn and not finished: the cursor is still on it.
    open: bool,
}

impl Progress {
    /// For the config blob: no output (Docker shows layers only).
    pub fn quiet() -> Progress {
        Progress::with(String::new(), 0, true, None)
    }

    /// `total` bytes to come for the layer `label`.
    pub fn new(label: String, total: u64) -> Progress {
        let stderr = std::io::stderr();
        let columns = stderr.is_terminal().then(|| columns(&stderr));
        Progress::with(label, total, false, columns)
    }

    fn with(label: String, total: u64, quiet: bool, columns: Option<usize>) -> Progress {
        Progress {
            label,
            quiet,
            total,
            columns,
            line: RefCell::new(Line {
                msg: String::new(),
                done: 0,
                drawn: None,
                open: false,
            }),
        }
    }

    /// A new step ("downloading", "unpacking").
    pub fn status(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut line = self.line.borrow_mut();
        line.msg = msg.to_string();
        match self.columns {
            Some(cols) => self.draw(&mut line, cols, false),
            None => eprintln!("{}: {msg}", self.label),
        }
    }

    /// `done` bytes of the total have arrived.
    pub fn set(&self, done: u64) {
        let Some(cols) = self.columns else { return };
        let mut line = self.line.borrow_mut();
        line.done = done;
        if line.drawn.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw(&mut line, cols, false);
        }
    }

    /// The last step ("Pull complete"); on a terminal the line stays.
    pub fn finish(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut line = self.line.borrow_mut();
        line.msg = msg.to_string();
        line.done = self.total;
        match self.columns {
            Some(cols) => self.draw(&mut line, cols, true),
            None => eprintln!("{}: {msg}", self.label),
        }
    }

    fn draw(&self, line: &mut Line, cols: usize, last: bool) {
        let text = render(&self.label, &line.msg, line.done, self.total, cols);
        // Back to the start of the line, the new text, the rest of the old one erased (ESC [ K).
        let end = if last { "\n" } else { "" };
        let _ = write!(std::io::stderr().lock(), "\r{text}\x1b[K{end}");
        line.drawn = Some(Instant::now());
        line.open = !last;
    }
}

impl Drop for Progress {
    /// A layer that failed half-way: end its line, so the error goes on a line of its own.
    fn drop(&mut self) {
        if self.line.get_mut().open {
            eprintln!();
        }
    }
}

/// One line of progress, at most `cols` characters: `LABEL: MSG [BAR] DONE/TOTAL`, the bar as
/// wide as fits (up to 30), no bar at all below 3 columns of it; cut at `cols` if still too long.
pub fn render(label: &str, msg: &str, done: u64, total: u64, cols: usize) -> String {
    let head = format!("{label}: {msg:12} ");
    let tail = format!(" {}/{}", bytes(done), bytes(total));
    let room = cols.saturating_sub(head.chars().count() + tail.chars().count() + 2);
    let width = room.min(BAR);
    let mut s = head;
    if width >= 3 {
        let filled = if total == 0 {
            width
        } else {
            (u128::from(done.min(total)) * width as u128 / u128::from(total)) as usize
        };
        s.push('[');
        s.extend(std::iter::repeat_n('=', filled));
        if filled < width {
            s.push('>');
            s.extend(std::iter::repeat_n(' ', width - filled - 1));
        }
        s.push(']');
    } else {
        s.pop();
    }
    s.push_str(&tail);
    s.chars().take(cols).collect()
}

/// A byte count with binary prefixes: `512 B`, `1.46 KiB`, `3.45 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// The width of the terminal on `fd` (TIOCGWINSZ), 80 if the kernel does not say.
fn columns(fd: &impl AsRawFd) -> usize {
    // SAFETY: winsize is plain data and TIOCGWINSZ writes exactly one; fd is open for the call.
    let ws = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0).then_some(ws)
    };
    match ws {
        Some(ws) if ws.ws_col > 0 => usize::from(ws.ws_col),
        _ => 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_as_docker_and_indicatif_print_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1500), "1.46 KiB");
        assert_eq!(bytes(1_500_000), "1.43 MiB");
        assert_eq!(bytes(1_500_000_000), "1.40 GiB");
        assert_eq!(bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn the_bar_fills_with_the_bytes() {
        let l = |done| render("3f4e5a6b7c8d", "downloading", done, 2048, 80);
        assert_eq!(
            l(0),
            "3f4e5a6b7c8d: downloading  [>                             ] 0 B/2.00 KiB"
        );
        assert_eq!(
            l(1024),
            "3f4e5a6b7c8d: downloading  [===============>              ] 1.00 KiB/2.00 KiB"
        );
        assert_eq!(
            l(2048),
            "3f4e5a6b7c8d: downloading  [==============================] 2.00 KiB/2.00 KiB"
        );
        // More than announced (a registry that lied about the size) does not overflow the bar.
        assert_eq!(l(4096).matches('=').count(), 30);
    }

    #[test]
    fn a_narrow_terminal_gets_a_narrower_bar_never_a_wrapped_line() {
        for cols in 0..100 {
            let s = render("3f4e5a6b7c8d", "Pull complete", 5 << 20, 5 << 20, cols);
            assert!(s.chars().count() <= cols, "{cols}: {s}");
        }
        let s = render("3f4e5a6b7c8d", "unpacking", 1, 2, 46);
        assert_eq!(s, "3f4e5a6b7c8d: unpacking    [====>    ] 1 B/2 B");
        let s = render("3f4e5a6b7c8d", "unpacking", 1, 2, 38);
        assert_eq!(s, "3f4e5a6b7c8d: unpacking    1 B/2 B");
    }

    #[test]
    fn nothing_announced_shows_a_full_bar() {
        assert!(render("x", "Already exists", 0, 0, 80).contains("[====="));
    }
}
