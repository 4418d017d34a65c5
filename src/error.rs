//! Exit codes and user-facing errors.
//!
//! Docker's convention: the command's own exit code passes through; 125 means minictr itself failed;
//! 126 the command was found but cannot be executed; 127 the command was not found; 128+N the command
//! was killed by signal N. Every error minictr prints is one line: what went wrong, and what to do.

use std::fmt;

/// minictr itself failed (bad input, a kernel call refused, …).
pub const EXIT_RUNTIME: i32 = 125;
/// The command exists but cannot be executed (permission, format).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command does not exist inside the container.
pub const EXIT_NOT_FOUND: i32 = 127;

/// An error with a suggestion for the user. It is the innermost error of an `anyhow` chain, so the
/// printed line reads `minictr: <context>: <what> (hint: <what to do>)`.
#[derive(Debug)]
pub struct Hint {
    pub what: String,
    pub hint: String,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (hint: {})", self.what, self.hint)
    }
}

impl std::error::Error for Hint {}

/// Build an error that tells the user what to do: `bail_hint("rootfs /x does not exist", "build one with …")`.
pub fn hint(what: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hint {
        what: what.into(),
        hint: hint.into(),
    })
}

/// The command could not be started; carries 126 or 127 instead of 125.
#[derive(Debug)]
pub struct CommandError {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// The exit code for an error: 126/127 when the command could not be run, 125 for everything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<CommandError>().map(|c| c.code))
        .unwrap_or(EXIT_RUNTIME)
}

/// The one-line message: every context of the chain joined by ": ".
pub fn one_line(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    let mut out = String::new();
    for p in parts {
        // anyhow chains often repeat the inner error inside an outer message; skip exact repeats.
        if out.ends_with(&p) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&p);
    }
    out.replace('\n', " ")
}

/// Exit status of a process the way a shell reports it: the code, or 128 + the signal.
pub fn status_code(status: nix::sys::wait::WaitStatus) -> Option<i32> {
    // EXERCISE(ch01, "report the exit status like a shell", hint = "Exited(code) -> code, Signaled(sig) -> 128 + sig, anything else -> None")
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
    // EXERCISE_END
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn runtime_errors_are_125_and_command_errors_keep_their_code() {
        let e = anyhow::anyhow!("boom");
        assert_eq!(exit_code(&e), 125);
        let e = anyhow::Error::new(CommandError {
            code: 127,
            message: "nope: not found".into(),
        })
        .context("starting the command");
        assert_eq!(exit_code(&e), 127);
    }

    #[test]
    fn one_line_joins_the_chain_with_the_hint_last() {
        let e = Err::<(), _>(hint("rootfs /x does not exist", "build one"))
            .context("checking the root filesystem")
            .unwrap_err();
        assert_eq!(
            one_line(&e),
            "checking the root filesystem: rootfs /x does not exist (hint: build one)"
        );
    }

    #[test]
    fn signals_become_128_plus_n() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        use nix::unistd::Pid;
        let p = Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(p, 42)), Some(42));
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
    }
}

/// Property-test support for every parser a user feeds (each module's `mod proptests`): no input
/// panics, and every refused input gets a message of one non-empty line.
#[cfg(test)]
pub mod prop {
    use proptest::prelude::*;

    /// Any text, or a few of the parser's own words (`tokens`, the first one being how valid input
    /// starts) glued together with a newline, a non-ASCII letter or any character thrown in:
    /// near-misses of valid input are then common rather than astronomically rare.
    pub fn input(tokens: &'static [&'static str]) -> BoxedStrategy<String> {
        let token = prop_oneof![
            6 => proptest::sample::select(tokens).prop_map(str::to_string),
            3 => proptest::sample::select(&["\n", "\n", "é", " "][..]).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
        ];
        let words = proptest::collection::vec(token, 0..8).prop_map(|v| v.concat());
        prop_oneof![
            1 => any::<String>(),
            1 => words.clone(),
            3 => words.prop_map(move |w| format!("{}{w}", tokens[0])),
        ]
        .boxed()
    }

    /// 1024 cases per property (proptest's default is 256: the parsers are fast), and no
    /// regression files written into src/ (a failure prints its minimal input: make it a test).
    pub fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// A parser's verdict is fine when it is Ok, or an error of one non-empty line.
    pub fn clear<T>(r: &anyhow::Result<T>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            prop_assert!(!super::one_line(e).trim().is_empty(), "an empty error");
            for c in e.chain() {
                let m = c.to_string();
                prop_assert!(!m.contains(['\n', '\r']), "a multi-line error: {m:?}");
            }
        }
        Ok(())
    }
}
