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
/// A named point of the start sequence, in its numbered step. Test-only hook (chapter 8): when the environment variable
/// `MINICTR_CRASH_AT` names this step, minictr SIGKILLs itself right here — proving that whatever
/// step a crash interrupts, the next minictr command leaves the host clean. With `MINICTR_CRASH_AT`
/// set to anything, `--explain` also lists the steps. Without the variable this costs one getenv.
pub fn checkpoint(number: u8, step: &str) {
    let Some(target) = std::env::var_os("MINICTR_CRASH_AT") else {
        return;
    };
    if enabled() {
        say(
            "ch08 lifecycle",
            format_args!("step {step:?} (step {number} of the start sequence; a crash-test point)"),
        );
    }
    if target == step {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
// ANCHOR_END: checkpoint
