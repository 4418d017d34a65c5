//! `--explain`: one line on stderr before each step of the start sequence, naming the kernel call with its
//! real arguments and the chapter that teaches it. Every stage narrates through [`explain!`]; nothing is
//! printed unless the flag is on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn narration on for this process (and, through fork/clone, for the container's first process
/// until it execs).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Print one narration line: `[ch01 namespaces] clone3(CLONE_NEWPID|…)`. Written with a single
/// `write` so lines from the parent and the child never interleave mid-line.
pub fn say(chapter: &str, args: std::fmt::Arguments<'_>) {
    let line = format!("[{chapter}] {args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `explain!(CHAPTER, "mount({:?}, …)", path)` — cheap when `--explain` is off: the arguments are
/// not even formatted.
#[macro_export]
macro_rules! explain {
    ($chapter:expr, $($arg:tt)*) => {
        if $crate::explain::enabled() {
            $crate::explain::say($chapter, format_args!($($arg)*))
        }
    };
}

// ANCHOR: checkpoint
/// A named point of the start sequence, in its numbered step. Test-only hooks (chapter 8): when the
/// environment variable `MINICTR_CRASH_AT` names this step, minictr SIGKILLs itself right here —
/// proving that whatever step a crash interrupts, the next minictr command leaves the host clean.
/// When `MINICTR_FAIL_AT` names it, the step fails with an error instead — proving that a failed
/// start undoes everything itself. With either variable set, `--explain` also lists the steps.
/// Without them this costs two getenvs.
pub fn checkpoint(number: u8, step: &str) -> anyhow::Result<()> {
    let crash = std::env::var_os("MINICTR_CRASH_AT");
    let fail = std::env::var_os("MINICTR_FAIL_AT");
    if crash.is_none() && fail.is_none() {
        return Ok(());
    }
    if enabled() {
        say(
            "ch08 lifecycle",
            format_args!("step {step:?} (step {number} of the start sequence; a crash-test point)"),
        );
    }
    if crash.is_some_and(|t| t == step) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
    if fail.is_some_and(|t| t == step) {
        return Err(crate::error::hint(
            format!("failure injected at step {step:?} of the start sequence"),
            "MINICTR_FAIL_AT is a test hook: unset it",
        ));
    }
    Ok(())
}
// ANCHOR_END: checkpoint
