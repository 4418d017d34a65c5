//! Chapter 1 — the container's first process: its environment, user and working directory, and the
//! final `execve`. The exit codes 126 and 127 are decided here, where the reason is known.

use crate::error::{CommandError, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use std::ffi::CString;
use std::path::{Path, PathBuf};

pub const CHAPTER: &str = "ch01 namespaces";

/// The default PATH of Docker and runc.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `-u` as given: numbers or names, resolved against the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSpec {
    pub user: Option<String>,
    pub group: Option<String>,
}

// ANCHOR: parse_user
/// Parse `-u UID[:GID]` (names allowed, as in Docker: `-u nobody`, `-u 1000:users`).
pub fn parse_user(s: &str) -> Result<UserSpec> {
    let usage =
        "use -u UID[:GID], numbers or names from the container's /etc/passwd, e.g. -u 1000:1000";
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let valid = |x: &str| {
        !x.is_empty()
            && x.len() <= 32
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && !x.starts_with('-')
    };
    if !valid(u) || g.is_some_and(|g| !valid(g)) {
        bail!(crate::error::hint(format!("invalid user {s:?}"), usage));
    }
    for id in std::iter::once(u).chain(g) {
        if id.bytes().all(|b| b.is_ascii_digit())
            && id.parse::<u32>().map_or(true, |n| n == u32::MAX)
        {
            bail!(crate::error::hint(
                format!("invalid user {s:?}: {id} is out of range"),
                usage
            ));
        }
    }
    Ok(UserSpec {
        user: Some(u.to_string()),
        group: g.map(str::to_string),
    })
}
// ANCHOR_END: parse_user

/// Parse `-e KEY=VAL`; `-e KEY` takes the value from minictr's own environment (Docker does the same)
/// and is dropped when unset there.
pub fn parse_env(s: &str) -> Result<Option<(String, String)>> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (s, None),
    };
    if k.is_empty()
        || k.contains('\0')
        || v.is_some_and(|v| v.contains('\0'))
        || k.contains(char::is_whitespace)
    {
        bail!(crate::error::hint(
            format!("invalid environment variable {s:?}"),
            "use -e KEY=VALUE (KEY not empty, no spaces), or -e KEY to pass the host's value"
        ));
    }
    Ok(match v {
        Some(v) => Some((k.to_string(), v.to_string())),
        None => std::env::var(k).ok().map(|v| (k.to_string(), v)),
    })
}

/// The environment: a sane default, then every `-e` in order (later ones win).
pub fn build_env(hostname: &str, home: &str, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), home.into()),
    ];
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".into(), term));
    }
    for (k, v) in extra {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// What `-u` resolved to inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

/// Resolve a `UserSpec` against the contents of the container's /etc/passwd and /etc/group.
pub fn resolve_identity(spec: &UserSpec, passwd: &str, group: &str) -> Result<Identity> {
    let user = spec.user.as_deref().unwrap_or("0");
    let pw_entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 7
                && (f[0] == user || (user.bytes().all(|b| b.is_ascii_digit()) && f[2] == user))
        });
    let (uid, mut gid, home, name) = match (&pw_entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .with_context(|| format!("bad uid in /etc/passwd for {user}"))?,
            f[3].parse::<u32>()
                .with_context(|| format!("bad gid in /etc/passwd for {user}"))?,
            Some(f[5].to_string()),
            Some(f[0].to_string()),
        ),
        (None, Ok(n)) => (n, n, None, None),
        (None, Err(_)) => bail!(crate::error::hint(
            format!(
                "unable to find user {user}: no matching entries in the container's /etc/passwd"
            ),
            "add the user to the image, or give a numeric uid"
        )),
    };
    if let Some(g) = &spec.group {
        gid = match group.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[0] == g) {
            Some(f) => f[2].parse().with_context(|| format!("bad gid in /etc/group for {g}"))?,
            None => g.parse::<u32>().map_err(|_| {
                crate::error::hint(
                    format!("unable to find group {g}: no matching entries in the container's /etc/group"),
                    "add the group to the image, or give a numeric gid",
                )
            })?,
        };
    }
    // Supplementary groups: every group that lists the user by name (only when -u did not pin a group).
    let mut groups = Vec::new();
    if let (Some(name), None) = (&name, &spec.group) {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

// ANCHOR: switch_user
/// Become the requested user: supplementary groups, then gid, then uid (after setuid we could no
/// longer change the groups). `may_setgroups` is false in a user namespace whose `setgroups` file
/// says "deny" (a normal user without subordinate ids, chapter 3): the kernel refuses setgroups(2)
/// there, so the supplementary groups stay as they are.
pub fn switch_user(id: &Identity, may_setgroups: bool) -> Result<()> {
    crate::explain!(
        CHAPTER,
        "{}setresgid({g}, {g}, {g}); setresuid({u}, {u}, {u})",
        if may_setgroups {
            format!("setgroups({:?}); ", id.groups)
        } else {
            String::new()
        },
        g = id.gid,
        u = id.uid
    );
    if may_setgroups {
        let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).context("failed to set the supplementary groups")?;
    } else if !id.groups.is_empty() {
        crate::explain!(
            CHAPTER,
            "not setting supplementary groups {:?}: setgroups is denied in this user namespace",
            id.groups
        );
    }
    let g = Gid::from_raw(id.gid);
    nix::unistd::setresgid(g, g, g).with_context(|| {
        crate::error::hint(
            format!("failed to switch to gid {}", id.gid),
            "the gid must be mapped into the container's user namespace (see --gidmap)",
        )
    })?;
    let u = Uid::from_raw(id.uid);
    nix::unistd::setresuid(u, u, u).with_context(|| {
        crate::error::hint(
            format!("failed to switch to uid {}", id.uid),
            "the uid must be mapped into the container's user namespace (see --uidmap)",
        )
    })?;
    Ok(())
}
// ANCHOR_END: switch_user

/// What the container's process becomes: the same for its first process and for `minictr exec`.
pub struct Tail<'a> {
    pub user: &'a UserSpec,
    pub workdir: &'a Path,
    pub hostname: &'a str,
    pub env: &'a [(String, String)],
    /// Whether setgroups(2) is allowed in the user namespace (rootless without subordinate ids: no).
    pub may_setgroups: bool,
    /// The signal mask to restore (minictr blocked the signals it forwards).
    pub mask: &'a nix::sys::signal::SigSet,
}

// ANCHOR: tail
/// The tail of every container process, after its root is in place: the identity (from the
/// container's own /etc/passwd), the working directory, `while_root` (ch07: rlimits and the
/// bounding set, which need every capability), the user switch, the environment and signal mask,
/// then `last_walls` (ch07: capabilities, no_new_privs, seccomp). Returns the environment to exec.
pub fn become_process(
    t: &Tail,
    while_root: impl FnOnce() -> Result<()>,
    last_walls: impl FnOnce() -> Result<()>,
) -> Result<Vec<(String, String)>> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let id = resolve_identity(t.user, &passwd, &group)?;
    nix::unistd::chdir(t.workdir).with_context(|| {
        format!(
            "failed to enter the working directory {}",
            t.workdir.display()
        )
    })?;
    while_root()?;
    switch_user(&id, t.may_setgroups)?;
    let home = id.home.clone().unwrap_or_else(|| "/".into());
    let env = build_env(t.hostname, &home, t.env);
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(t.mask),
        None,
    )
    .context("failed to restore the signal mask")?;
    last_walls()?;
    Ok(env)
}
// ANCHOR_END: tail

/// Where `cmd` is: as given when it contains a '/', else the first match on the container's PATH.
fn find_command(cmd: &str, path_var: &str) -> std::result::Result<PathBuf, CommandError> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CommandError {
        code: EXIT_NOT_FOUND,
        message: format!("{cmd}: command not found in the container (PATH={path_var})"),
    })
}

// ANCHOR: exec
/// Replace this process with the command. Returns only on failure, with the exit code a shell would
/// use: 127 not found, 126 found but not executable.
pub fn exec(args: &[String], env: &[(String, String)]) -> CommandError {
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let cmd = &args[0];
    let program = match find_command(cmd, path_var) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let to_c = |s: &str| CString::new(s).unwrap_or_else(|_| CString::from(c"?"));
    let c_prog = to_c(&program.to_string_lossy());
    let c_args: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let c_env: Vec<CString> = env.iter().map(|(k, v)| to_c(&format!("{k}={v}"))).collect();
    crate::explain!(
        CHAPTER,
        "execve({program:?}, {args:?}, [{} variables])",
        env.len()
    );
    let err = match nix::unistd::execve(&c_prog, &c_args, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let (code, why) = match err {
        Errno::ENOENT if program.exists() => (
            EXIT_NOT_EXECUTABLE,
            "its interpreter or dynamic loader is missing from the rootfs".to_string(),
        ),
        Errno::ENOENT | Errno::ENOTDIR => {
            (EXIT_NOT_FOUND, "no such file in the container".to_string())
        }
        Errno::EACCES if program.is_dir() => (EXIT_NOT_EXECUTABLE, "it is a directory".into()),
        Errno::EACCES => (
            EXIT_NOT_EXECUTABLE,
            "permission denied (not executable, or on a noexec mount)".into(),
        ),
        Errno::ENOEXEC => (
            EXIT_NOT_EXECUTABLE,
            "not an executable format (no #! line or wrong architecture)".into(),
        ),
        e => (EXIT_NOT_EXECUTABLE, e.desc().to_string()),
    };
    CommandError {
        code,
        message: format!("cannot run {}: {why}", program.display()),
    }
}
// ANCHOR_END: exec

/// PR_SET_PDEATHSIG(SIGKILL): if minictr dies, so does this process. Cleared by a uid change, so
/// set after one; the caller checks afterwards that the parent is still there.
pub fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("prctl(PR_SET_PDEATHSIG, SIGKILL) failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap().user.as_deref(), Some("1000"));
        let u = parse_user("1000:50").unwrap();
        assert_eq!(u.group.as_deref(), Some("50"));
        assert!(parse_user("nobody").is_ok());
        for bad in [
            "",
            ":",
            "1000:",
            ":5",
            "a:b:c",
            "-1",
            "4294967295",
            "99999999999",
            "a b",
        ] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envs() {
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            Some(("A".into(), "b=c".into()))
        );
        assert_eq!(
            parse_env("EMPTY=").unwrap(),
            Some(("EMPTY".into(), "".into()))
        );
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A B=x").is_err());
        assert_eq!(parse_env("MINICTR_SURELY_UNSET_VAR").unwrap(), None);
        let env = build_env(
            "box",
            "/root",
            &[("PATH".into(), "/x".into()), ("A".into(), "1".into())],
        );
        assert_eq!(env[0], ("PATH".into(), "/x".into()));
        assert!(env.contains(&("HOSTNAME".into(), "box".into())));
        assert!(env.contains(&("A".into(), "1".into())));
    }

    #[test]
    fn identities_from_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nusers:x:100:alice\nalice:x:1000:\n";
        let id = resolve_identity(&UserSpec::default(), passwd, group).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_deref()), (0, 0, Some("/root")));
        let id = resolve_identity(&parse_user("alice").unwrap(), passwd, group).unwrap();
        assert_eq!((id.uid, id.gid, id.groups.clone()), (1000, 1000, vec![100]));
        let id = resolve_identity(&parse_user("1000:users").unwrap(), passwd, group).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 100));
        let id = resolve_identity(&parse_user("4242:4343").unwrap(), passwd, group).unwrap();
        assert_eq!((id.uid, id.gid, id.home), (4242, 4343, None));
        assert!(resolve_identity(&parse_user("bob").unwrap(), passwd, group).is_err());
        assert!(resolve_identity(&parse_user("0:nogroup").unwrap(), passwd, group).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::{clear, input};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_user_and_env_is_parsed_or_clearly_refused(s in input(&["0", "1000", "4294967296", "-1", ":", "root", "nobody", "=", "PATH", "A", "$", ""])) {
            clear(&parse_user(&s))?;
            clear(&parse_env(&s))?;
        }
    }
}
