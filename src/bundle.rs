//! Chapter 9 — the OCI runtime bundle: `minictr run --bundle DIR` runs what `runc run` would run
//! from DIR/config.json and its root filesystem (made by `runc spec`, `umoci unpack`, Podman, …).
//!
//! No second start sequence: the config is translated into the `minictr run` words that say the
//! same thing (`--hostname runc -u 0:0 --cap-drop ALL --cap-add CAP_KILL … ROOTFS sh`), and those
//! words go through the same command-line parser as typed ones — same validation, same errors.
//! What config.json says and minictr cannot express is named in one warning line.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a config.json stands for.
#[derive(Debug, Default, PartialEq)]
pub struct Translation {
    /// `minictr run` options as (flag, value) pairs, e.g. `("--hostname", Some("runc"))`.
    pub flags: Vec<(String, Option<String>)>,
    /// root.path, absolute.
    pub rootfs: PathBuf,
    /// process.args.
    pub args: Vec<String>,
    /// linux.seccomp, already checked: the caller hands it over as `--security-opt seccomp=FILE`.
    pub seccomp: Option<Value>,
    /// Fields minictr does not implement, as `linux.devices`, `hooks.prestart`, …
    pub ignored: Vec<String>,
}

impl Translation {
    fn flag(&mut self, flag: &str, value: impl Into<Option<String>>) {
        self.flags.push((flag.to_string(), value.into()));
    }
}

/// Removes `key` from `map` and deserializes it; absent and null are `None`.
fn take<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<T>> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .with_context(|| format!("{at}{key}")),
    }
}

/// Removes the object `key` from `map` (empty when absent).
fn take_obj(map: &mut Map<String, Value>, key: &str, at: &str) -> Result<Map<String, Value>> {
    Ok(take(map, key, at)?.unwrap_or_default())
}

/// A value that says nothing: null, false, 0-length.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Every key still in `map` that says something is a field minictr ignores.
fn leftovers(map: Map<String, Value>, at: &str, ignored: &mut Vec<String>) {
    ignored.extend(
        map.into_iter()
            .filter(|(_, v)| !is_empty(v))
            .map(|(k, _)| format!("{at}{k}")),
    );
}

/// The mounts minictr makes itself in every container (chapters 2 and 3), by destination and type.
const OWN_MOUNTS: [(&str, &str); 7] = [
    ("/proc", "proc"),
    ("/dev", "tmpfs"),
    ("/dev/pts", "devpts"),
    ("/dev/shm", "tmpfs"),
    ("/dev/mqueue", "mqueue"),
    ("/sys", "sysfs"),
    ("/sys/fs/cgroup", "cgroup"),
];

/// Options a bind mount may carry that `-v` expresses (or that change nothing for it).
const BIND_OPTS: [&str; 6] = ["bind", "rbind", "rw", "ro", "private", "rprivate"];
/// Options `--tmpfs` understands besides size= and mode=.
const TMPFS_OPTS: [&str; 8] = [
    "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
];

// ANCHOR: translate
/// Translate config.json (`text`) of the bundle in `dir` into `minictr run` words. Pure: reads
/// nothing but its arguments.
pub fn translate(dir: &Path, text: &str) -> Result<Translation> {
    let mut top: Map<String, Value> = serde_json::from_str(text).context("not valid JSON")?;
    let mut t = Translation::default();
    let version: String = take(&mut top, "ociVersion", "")?.unwrap_or_default();
    if !version.starts_with("1.") {
        bail!("ociVersion {version:?}: minictr reads runtime-spec 1.x");
    }

    // root: the rootfs, relative to the bundle
    let mut root = take_obj(&mut top, "root", "")?;
    let path: String =
        take(&mut root, "path", "root.")?.ok_or_else(|| anyhow::anyhow!("root.path is missing"))?;
    t.rootfs = dir.join(path);
    let read_only = take(&mut root, "readonly", "root.")?.unwrap_or(false);
    if read_only {
        t.flag("--read-only", None);
    } else {
        // runc writes into the bundle's rootfs itself: no overlay (chapter 5) above it.
        t.flag("--no-overlay", None);
    }
    leftovers(root, "root.", &mut t.ignored);

    if let Some(h) = take::<String>(&mut top, "hostname", "")? {
        t.flag("--hostname", h);
    }
    process(&mut t, take_obj(&mut top, "process", "")?)?;
    let mut linux = take_obj(&mut top, "linux", "")?;
    namespaces(&mut t, &mut linux)?;
    resources(&mut t, take_obj(&mut linux, "resources", "linux.")?)?;
    paths(&mut t, &mut linux)?;
    match linux.remove("seccomp") {
        None | Some(Value::Null) => t.flag("--security-opt", "seccomp=unconfined".to_string()),
        Some(Value::Object(mut s)) => {
            for k in ["flags", "listenerPath", "listenerMetadata"] {
                if let Some(v) = s.remove(k).filter(|v| !is_empty(v)) {
                    let _ = v;
                    t.ignored.push(format!("linux.seccomp.{k}"));
                }
            }
            let v = Value::Object(s);
            crate::security::profile::parse_docker_json(&v.to_string()).context("linux.seccomp")?;
            t.seccomp = Some(v);
        }
        Some(_) => bail!("linux.seccomp: not an object"),
    }
    leftovers(linux, "linux.", &mut t.ignored);

    for m in take::<Vec<Map<String, Value>>>(&mut top, "mounts", "")?.unwrap_or_default() {
        mount(&mut t, dir, m)?;
    }
    // hooks are named one by one: `hooks.prestart`, `hooks.poststop`, …
    let hooks = take_obj(&mut top, "hooks", "")?;
    // Annotations are metadata about the container (umoci copies the image's there), not settings.
    top.remove("annotations");
    leftovers(hooks, "hooks.", &mut t.ignored);
    leftovers(top, "", &mut t.ignored);
    Ok(t)
}
// ANCHOR_END: translate

fn process(t: &mut Translation, mut p: Map<String, Value>) -> Result<()> {
    let at = "process.";
    t.args = take(&mut p, "args", at)?.unwrap_or_default();
    if t.args.is_empty() {
        bail!("process.args is missing or empty: config.json names no command to run");
    }
    if take(&mut p, "terminal", at)?.unwrap_or(false) {
        t.flag("-t", None);
        t.flag("-i", None);
    }
    for e in take::<Vec<String>>(&mut p, "env", at)?.unwrap_or_default() {
        t.flag("-e", e);
    }
    if let Some(cwd) = take::<String>(&mut p, "cwd", at)? {
        t.flag("-w", cwd);
    }
    let mut user = take_obj(&mut p, "user", at)?;
    let uid: u32 = take(&mut user, "uid", "process.user.")?.unwrap_or(0);
    let gid: u32 = take(&mut user, "gid", "process.user.")?.unwrap_or(0);
    t.flag("-u", format!("{uid}:{gid}"));
    leftovers(user, "process.user.", &mut t.ignored);

    // Capabilities: minictr gives one set to bounding, permitted and effective (chapter 7).
    let mut caps = take_obj(&mut p, "capabilities", at)?;
    let mut set = |k: &str| -> Result<Option<BTreeSet<String>>> {
        take(&mut caps, k, "process.capabilities.")
    };
    let bounding = set("bounding")?.unwrap_or_default();
    let (effective, permitted) = (set("effective")?, set("permitted")?);
    let (inheritable, ambient) = (set("inheritable")?, set("ambient")?);
    t.flag("--cap-drop", "ALL".to_string());
    for c in &bounding {
        t.flag("--cap-add", c.clone());
    }
    for (k, s) in [("effective", effective), ("permitted", permitted)] {
        if s.is_some_and(|s| s != bounding) {
            t.ignored.push(format!("process.capabilities.{k}"));
        }
    }
    if inheritable.is_some_and(|s| !s.is_empty()) {
        t.ignored.push("process.capabilities.inheritable".into());
    }
    // For uid 0 the ambient set adds nothing: root's permitted set is the bounding set anyway.
    if ambient.is_some_and(|s| !s.is_empty()) && uid != 0 {
        t.ignored.push("process.capabilities.ambient".into());
    }
    leftovers(caps, "process.capabilities.", &mut t.ignored);

    #[derive(serde::Deserialize)]
    struct Rlimit {
        #[serde(rename = "type")]
        kind: String,
        soft: u64,
        hard: u64,
    }
    for r in take::<Vec<Rlimit>>(&mut p, "rlimits", at)?.unwrap_or_default() {
        let name = r.kind.trim_start_matches("RLIMIT_").to_ascii_lowercase();
        let n = |v: u64| match v {
            u64::MAX => "-1".to_string(),
            v => v.to_string(),
        };
        t.flag("--ulimit", format!("{name}={}:{}", n(r.soft), n(r.hard)));
    }
    // The spec's default is false; minictr's is true.
    if !take(&mut p, "noNewPrivileges", at)?.unwrap_or(false) {
        t.flag("--security-opt", "no-new-privileges=false".to_string());
    }
    leftovers(p, at, &mut t.ignored);
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdMap {
    #[serde(rename = "containerID")]
    container_id: u32,
    #[serde(rename = "hostID")]
    host_id: u32,
    size: u32,
}

fn namespaces(t: &mut Translation, linux: &mut Map<String, Value>) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Ns {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        path: Option<String>,
    }
    let list: Vec<Ns> = take(linux, "namespaces", "linux.")?.unwrap_or_default();
    if let Some(ns) = list
        .iter()
        .find(|n| n.path.as_deref().is_some_and(|p| !p.is_empty()))
    {
        bail!(crate::error::hint(
            format!(
                "linux.namespaces: joining the existing {} namespace {} is not supported",
                ns.kind,
                ns.path.as_deref().unwrap_or_default()
            ),
            "remove \"path\" so that minictr creates a new one, or start the bundle with runc"
        ));
    }
    let has = |k: &str| list.iter().any(|n| n.kind == k);
    for (kind, off) in [
        ("pid", "--no-pid"),
        ("uts", "--no-uts"),
        ("ipc", "--no-ipc"),
        ("cgroup", "--no-cgroupns"),
    ] {
        if !has(kind) {
            t.flag(off, None);
        }
    }
    // A new network namespace from runc holds only lo: minictr's --network none.
    let net = if has("network") { "none" } else { "host" };
    t.flag("--network", net.to_string());
    if !has("mount") {
        t.ignored
            .push("linux.namespaces (no mount namespace)".into());
    }
    if has("time") {
        t.ignored.push("linux.namespaces (time)".into());
    }
    let maps = [("uidMappings", "--uidmap"), ("gidMappings", "--gidmap")];
    if has("user") {
        t.flag("--userns", "private".to_string());
        for (key, flag) in maps {
            for m in take::<Vec<IdMap>>(linux, key, "linux.")?.unwrap_or_default() {
                t.flag(flag, format!("{}:{}:{}", m.container_id, m.host_id, m.size));
            }
        }
    } else {
        t.flag("--userns", "host".to_string());
    }
    Ok(())
}

fn resources(t: &mut Translation, mut r: Map<String, Value>) -> Result<()> {
    let at = "linux.resources.";
    let mut mem = take_obj(&mut r, "memory", at)?;
    let m_at = "linux.resources.memory.";
    if let Some(l) = take::<i64>(&mut mem, "limit", m_at)?.filter(|l| *l > 0) {
        t.flag("-m", l.to_string());
    }
    if let Some(s) = take::<i64>(&mut mem, "swap", m_at)?.filter(|s| *s != 0) {
        t.flag("--memory-swap", s.max(-1).to_string());
    }
    leftovers(mem, m_at, &mut t.ignored);

    let mut cpu = take_obj(&mut r, "cpu", at)?;
    let c_at = "linux.resources.cpu.";
    let quota = take::<i64>(&mut cpu, "quota", c_at)?.filter(|q| *q > 0);
    let period = take::<u64>(&mut cpu, "period", c_at)?.filter(|p| *p > 0);
    if let Some(q) = quota {
        // minictr's --cpus always uses a 100 ms period; the ratio is what limits.
        let p = period.unwrap_or(100_000);
        t.flag("--cpus", format!("{}", q as f64 / p as f64));
    }
    if period.is_some_and(|p| p != 100_000) {
        t.ignored.push(format!("{c_at}period"));
    }
    if let Some(s) = take::<u64>(&mut cpu, "shares", c_at)?.filter(|s| *s > 0) {
        t.flag("--cpu-shares", s.to_string());
    }
    if let Some(c) = take::<String>(&mut cpu, "cpus", c_at)?.filter(|c| !c.is_empty()) {
        t.flag("--cpuset-cpus", c);
    }
    leftovers(cpu, c_at, &mut t.ignored);

    let mut pids = take_obj(&mut r, "pids", at)?;
    if let Some(l) = take::<i64>(&mut pids, "limit", "linux.resources.pids.")? {
        t.flag("--pids-limit", l.to_string());
    }
    leftovers(pids, "linux.resources.pids.", &mut t.ignored);

    let mut blkio = take_obj(&mut r, "blockIO", at)?;
    if let Some(w) = take::<u16>(&mut blkio, "weight", "linux.resources.blockIO.")? {
        t.flag("--blkio-weight", w.to_string());
    }
    leftovers(blkio, "linux.resources.blockIO.", &mut t.ignored);
    leftovers(r, at, &mut t.ignored);
    Ok(())
}

/// maskedPaths and readonlyPaths: minictr has one fixed list of each (chapter 7). Lists within
/// it are covered; none at all is `--no-masks`; a path outside it is named as ignored.
fn paths(t: &mut Translation, linux: &mut Map<String, Value>) -> Result<()> {
    use crate::security::paths::{MASKED, READONLY};
    let masked: Vec<String> = take(linux, "maskedPaths", "linux.")?.unwrap_or_default();
    let readonly: Vec<String> = take(linux, "readonlyPaths", "linux.")?.unwrap_or_default();
    if masked.is_empty() && readonly.is_empty() {
        t.flag("--no-masks", None);
    }
    if masked.iter().any(|p| !MASKED.contains(&p.as_str())) {
        t.ignored
            .push("linux.maskedPaths (paths outside minictr's list)".into());
    }
    // A masked path cannot be written either.
    let covered = |p: &String| READONLY.contains(&p.as_str()) || MASKED.contains(&p.as_str());
    if !readonly.iter().all(covered) {
        t.ignored
            .push("linux.readonlyPaths (paths outside minictr's list)".into());
    }
    Ok(())
}

fn mount(t: &mut Translation, dir: &Path, mut m: Map<String, Value>) -> Result<()> {
    let dest: String = take(&mut m, "destination", "mounts[].")?.unwrap_or_default();
    let at = format!("mounts[{dest}]");
    let kind: String = take(&mut m, "type", &at)?.unwrap_or_default();
    let source: String = take(&mut m, "source", &at)?.unwrap_or_default();
    let opts: Vec<String> = take(&mut m, "options", &at)?.unwrap_or_default();
    let bind = kind == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
    if OWN_MOUNTS.contains(&(dest.as_str(), kind.as_str())) || (bind && dest == "/sys") {
        return Ok(()); // minictr mounts it itself
    }
    if bind {
        let src = dir.join(&source);
        let ro = if opts.iter().any(|o| o == "ro") {
            ":ro"
        } else {
            ""
        };
        t.flag("-v", format!("{}:{dest}{ro}", src.display()));
        if opts.iter().any(|o| !BIND_OPTS.contains(&o.as_str())) {
            t.ignored.push(format!("{at}.options"));
        }
    } else if kind == "tmpfs" {
        let (keep, drop): (Vec<&String>, Vec<&String>) = opts.iter().partition(|o| {
            TMPFS_OPTS.contains(&o.as_str()) || o.starts_with("size=") || o.starts_with("mode=")
        });
        let keep: Vec<&str> = keep.iter().map(|s| s.as_str()).collect();
        t.flag("--tmpfs", format!("{dest}:{}", keep.join(",")));
        if !drop.is_empty() {
            t.ignored.push(format!("{at}.options"));
        }
    } else {
        t.ignored.push(format!("{at} (type {kind})"));
    }
    leftovers(m, &format!("{at}."), &mut t.ignored);
    Ok(())
}

// ANCHOR: expand
/// Read DIR/config.json and give the `minictr run` words it stands for: `prefix` (`minictr run`),
/// the config's options, the user's own options (`user`, winning over the config's), then
/// `-- ROOTFS ARGS…`. A seccomp profile becomes a file in memory (see [`profile_file`]).
pub fn expand(
    dir: &Path,
    prefix: &[OsString],
    user: &[OsString],
    given_by_user: impl Fn(&str) -> bool,
) -> Result<(Vec<OsString>, Vec<String>)> {
    let dir = std::fs::canonicalize(dir).map_err(|e| {
        crate::error::hint(
            format!("cannot open the bundle {}: {e}", dir.display()),
            "give a directory holding config.json and the rootfs (e.g. made by `runc spec`)",
        )
    })?;
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| {
        crate::error::hint(
            format!("cannot read {}: {e}", config.display()),
            "create one with `runc spec` in the bundle directory",
        )
    })?;
    let mut t = translate(&dir, &text).map_err(|e| {
        crate::error::hint(
            format!(
                "invalid {}: {}",
                config.display(),
                crate::error::one_line(&e)
            ),
            "see the OCI runtime spec (config.md), or compare with what `runc spec` writes",
        )
    })?;
    if let Some(profile) = t.seccomp.take() {
        let path = profile_file(&profile.to_string())?;
        t.flag("--security-opt", format!("seccomp={}", path.display()));
    }
    let mut words = prefix.to_vec();
    for (flag, value) in t.flags {
        // A single-valued option the user gave wins over the config's.
        if given_by_user(&flag) {
            continue;
        }
        words.push(flag.into());
        words.extend(value.map(OsString::from));
    }
    words.extend(user.iter().cloned());
    words.push("--".into());
    words.push(t.rootfs.into());
    words.extend(t.args.into_iter().map(OsString::from));
    Ok((words, t.ignored))
}
// ANCHOR_END: expand

// ANCHOR: profile_file
/// The profile as a file that exists nowhere on disk: a memfd (memfd_create(2)), named by
/// `/proc/self/fd/N` for the parser of `--security-opt seccomp=FILE`. Chapter 7 reads it once, in
/// step 1, and records its text in state.json for `minictr exec`: nothing is left behind when
/// minictr ends, however it ends.
fn profile_file(json: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let fd = nix::sys::memfd::memfd_create(
        c"minictr-bundle-seccomp",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .context("memfd_create for the bundle's seccomp profile failed")?;
    let mut f = std::fs::File::from(fd);
    f.write_all(json.as_bytes())
        .context("failed to write the bundle's seccomp profile")?;
    // Open for the rest of this process: the parser opens the path later (the container's first
    // process never sees it: close-on-exec, and chapter 7 closes every inherited descriptor).
    Ok(PathBuf::from(format!("/proc/self/fd/{}", f.into_raw_fd())))
}
// ANCHOR_END: profile_file

// ANCHOR: cli
/// `run --bundle DIR`: added to the `run` subcommand, and ROOTFS/CMD become optional with it (and
/// forbidden: they come from config.json).
pub fn with_bundle_arg(cli: clap::Command) -> clap::Command {
    // `run`'s options are added only when `run` is the command used (clap's `defer`, see main.rs):
    // the flag is added with them.
    cli.mut_subcommand("run", |run| run.defer(run_with_bundle))
}

/// `run`'s options, then `--bundle`.
fn run_with_bundle(run: clap::Command) -> clap::Command {
    let mut run = crate::deferred_args::<crate::RunArgs>(run);
    let positionals: Vec<clap::Id> = run.get_positionals().map(|a| a.get_id().clone()).collect();
    run = run.override_usage(
        "minictr run [OPTIONS] <ROOTFS|IMAGE> [CMD]...\n       minictr run [OPTIONS] --bundle <DIR>",
    );
    run = run.arg(
        clap::Arg::new("bundle")
            .long("bundle")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Run the OCI runtime bundle in DIR (config.json + rootfs, e.g. from `runc spec` or `umoci unpack`); ROOTFS and CMD come from config.json (ch09)"),
    );
    for id in positionals {
        run = run.mut_arg(id, |a| {
            let required = a.is_required_set();
            let a = a.required(false).conflicts_with("bundle");
            if required {
                a.required_unless_present("bundle")
            } else {
                a
            }
        });
    }
    run
}
// ANCHOR_END: cli

// ANCHOR: words_for
/// When `argv` is `minictr run --bundle DIR [OPTIONS]`: the words it stands for, and the warning
/// line naming what the config asks for and minictr ignores. `None` for every other command line.
/// `cli` is the command `matches` came from, parsed in place (`try_get_matches_from_mut`).
pub fn words_for(
    matches: &clap::ArgMatches,
    cli: &clap::Command,
    argv: &[OsString],
) -> Result<Option<Vec<OsString>>> {
    let (Some(("run", m)), Some(run_cmd)) = (matches.subcommand(), cli.find_subcommand("run"))
    else {
        return Ok(None);
    };
    let Some(dir) = m.get_one::<PathBuf>("bundle") else {
        return Ok(None);
    };
    let run_at = argv.iter().position(|w| w == "run").unwrap_or(1);
    let mut user = Vec::new();
    let mut it = argv[run_at + 1..].iter();
    while let Some(w) = it.next() {
        if w == "--bundle" {
            it.next();
        } else if !w.to_string_lossy().starts_with("--bundle=") {
            user.push(w.clone());
        }
    }
    // Options the user gave that take one value (or none) override the config's.
    let given = |flag: &str| {
        run_cmd
            .get_arguments()
            .find(|a| {
                flag.strip_prefix("--")
                    .is_some_and(|l| a.get_long() == Some(l))
                    || flag
                        .strip_prefix('-')
                        .and_then(|s| s.chars().next())
                        .is_some_and(|c| flag.len() == 2 && a.get_short() == Some(c))
            })
            .is_some_and(|a| {
                !matches!(a.get_action(), clap::ArgAction::Append)
                    && m.value_source(a.get_id().as_str())
                        == Some(clap::parser::ValueSource::CommandLine)
            })
    };
    let (words, ignored) = expand(dir, &argv[..=run_at], &user, given)?;
    // ANCHOR_END: words_for
    if user.iter().any(|w| w == "--explain") {
        // As a shell would need it: words with spaces or quotes in single quotes.
        let shown: Vec<String> = std::iter::once("minictr".to_string())
            .chain(words[1..].iter().map(|w| {
                let w = w.to_string_lossy();
                if w.contains([' ', ';', '$', '\'', '"', '|', '&']) {
                    format!("'{}'", w.replace('\'', "'\\''"))
                } else {
                    w.into_owned()
                }
            }))
            .collect();
        crate::explain::say(
            "ch09 images",
            format_args!("config.json → {}", shown.join(" ")),
        );
    }
    if !ignored.is_empty() {
        eprintln!(
            "minictr: warning: bundle fields not supported, ignored: {}",
            ignored.join(", ")
        );
    }
    Ok(Some(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `runc spec` (runc 1.1) writes.
    const RUNC_SPEC: &str = include_str!("../tests/data/runc-spec.json");
    /// What `runc spec --rootless` writes.
    const RUNC_SPEC_ROOTLESS: &str = include_str!("../tests/data/runc-spec-rootless.json");

    fn words(t: &Translation) -> Vec<String> {
        t.flags
            .iter()
            .flat_map(|(f, v)| std::iter::once(f.clone()).chain(v.clone()))
            .collect()
    }

    fn has(w: &[String], pair: &[&str]) -> bool {
        w.windows(pair.len()).any(|x| x == pair)
    }

    #[test]
    fn runc_spec() {
        let t = translate(Path::new("/b"), RUNC_SPEC).unwrap();
        let w = words(&t);
        assert_eq!(t.rootfs, Path::new("/b/rootfs"));
        assert_eq!(t.args, ["sh"]);
        for pair in [
            &["--read-only"][..],
            &["--hostname", "runc"],
            &["-t", "-i"],
            &["-e", "TERM=xterm"],
            &["-w", "/"],
            &["-u", "0:0"],
            &["--cap-drop", "ALL"],
            &["--cap-add", "CAP_KILL"],
            &["--ulimit", "nofile=1024:1024"],
            &["--network", "none"],
            &["--no-cgroupns"],
            &["--userns", "host"],
            &["--security-opt", "seccomp=unconfined"],
        ] {
            assert!(has(&w, pair), "{pair:?} missing in {w:?}");
        }
        // noNewPrivileges is true, the masks are within minictr's; the default mounts are minictr's own
        for absent in [
            "no-new-privileges=false",
            "--no-masks",
            "--no-pid",
            "-v",
            "--tmpfs",
        ] {
            assert!(!w.iter().any(|x| x == absent), "{absent} in {w:?}");
        }
        assert_eq!(t.ignored, ["linux.resources.devices"]);
    }

    #[test]
    fn runc_spec_rootless() {
        let t = translate(Path::new("/b"), RUNC_SPEC_ROOTLESS).unwrap();
        let w = words(&t);
        for pair in [
            &["--userns", "private"][..],
            &["--uidmap", "0:0:1"],
            &["--gidmap", "0:0:1"],
            &["--network", "host"],
        ] {
            assert!(has(&w, pair), "{pair:?} missing in {w:?}");
        }
        // the rbind of /sys is minictr's own /sys
        assert!(!w.iter().any(|x| x == "-v"), "{w:?}");
        assert!(t.ignored.is_empty(), "{:?}", t.ignored);
    }

    fn spec_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(RUNC_SPEC).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn resources_mounts_and_unknown_fields() {
        let text = spec_with(|v| {
            v["linux"]["resources"] = serde_json::json!({
                "memory": {"limit": 536870912, "swap": 536870912, "swappiness": 10},
                "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0"},
                "pids": {"limit": 100},
                "blockIO": {"weight": 300},
            });
            v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
            v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}], "poststop": []});
            v["annotations"] = serde_json::json!({"org.opencontainers.image.os": "linux"});
            v["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push("/proc/asound".into());
            v["process"]["noNewPrivileges"] = Value::Bool(false);
            v["process"]["user"]["additionalGids"] = serde_json::json!([10]);
            v["root"]["path"] = "/abs/rootfs".into();
            v["root"]["readonly"] = false.into();
            v["mounts"].as_array_mut().unwrap().extend([
                serde_json::json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}),
                serde_json::json!({"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "strictatime"]}),
                serde_json::json!({"destination": "/x", "type": "nfs", "source": "srv:/x"}),
            ]);
        });
        let t = translate(Path::new("/b"), &text).unwrap();
        let w = words(&t);
        assert_eq!(t.rootfs, Path::new("/abs/rootfs"));
        for pair in [
            &["--no-overlay"][..],
            &["-m", "536870912"],
            &["--memory-swap", "536870912"],
            &["--cpus", "0.5"],
            &["--cpu-shares", "512"],
            &["--cpuset-cpus", "0"],
            &["--pids-limit", "100"],
            &["--blkio-weight", "300"],
            &["--security-opt", "no-new-privileges=false"],
            &["-v", "/b/data:/data:ro"],
            &["--tmpfs", "/cache:size=1m"],
        ] {
            assert!(has(&w, pair), "{pair:?} missing in {w:?}");
        }
        let mut ignored = t.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                "hooks.prestart",
                "linux.resources.memory.swappiness",
                "linux.sysctl",
                "mounts[/cache].options",
                "mounts[/x] (type nfs)",
                "process.user.additionalGids",
            ]
        );
    }

    #[test]
    fn seccomp_in_oci_format_is_checked_and_kept() {
        let text = spec_with(|v| {
            v["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                              "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]}],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            });
        });
        let t = translate(Path::new("/b"), &text).unwrap();
        assert!(t.seccomp.is_some());
        assert!(!words(&t).iter().any(|w| w == "seccomp=unconfined"));
        assert!(t.ignored.contains(&"linux.seccomp.flags".to_string()));

        let bad = spec_with(|v| {
            v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"});
        });
        let e = format!("{:#}", translate(Path::new("/b"), &bad).unwrap_err());
        assert!(
            e.contains("linux.seccomp") && e.contains("SCMP_ACT_NOTIFY"),
            "{e}"
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let e = |text: &str| format!("{:#}", translate(Path::new("/b"), text).unwrap_err());
        assert!(e("{\"ociVersion\": ").contains("not valid JSON"));
        assert!(
            e(&spec_with(|v| v["process"]["args"] = serde_json::json!([])))
                .contains("process.args")
        );
        assert!(e(&spec_with(|v| {
            v["process"].as_object_mut().unwrap().remove("args");
        }))
        .contains("process.args"));
        assert!(e(&spec_with(|v| v["root"] = serde_json::json!({}))).contains("root.path"));
        assert!(e(&spec_with(|v| v["process"]["env"] = "PATH=/bin".into())).contains("process.env"));
        assert!(e(&spec_with(|v| v["ociVersion"] = "0.5".into())).contains("ociVersion"));
        let ns = e(&spec_with(|v| {
            v["linux"]["namespaces"][1]["path"] = "/var/run/netns/x".into();
        }));
        assert!(ns.contains("network namespace /var/run/netns/x"), "{ns}");
    }

    #[test]
    fn no_namespaces_no_masks() {
        let t = translate(
            Path::new("/b"),
            r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["true"],"user":{"uid":1000,"gid":1000},
               "capabilities":{"bounding":["CAP_CHOWN"],"ambient":["CAP_CHOWN"]}}}"#,
        )
        .unwrap();
        let w = words(&t);
        for pair in [
            &["--no-pid"][..],
            &["--no-uts"],
            &["--no-ipc"],
            &["--network", "host"],
            &["--no-masks"],
            &["-u", "1000:1000"],
            &["--cap-add", "CAP_CHOWN"],
            &["--security-opt", "no-new-privileges=false"],
        ] {
            assert!(has(&w, pair), "{pair:?} missing in {w:?}");
        }
        assert_eq!(
            t.ignored,
            [
                "process.capabilities.ambient",
                "linux.namespaces (no mount namespace)"
            ]
        );
    }

    #[test]
    fn the_words_parse_as_a_run_command_line() {
        use clap::Parser;
        let mut cli = with_bundle_arg(crate::cli_command());
        let dir = std::env::temp_dir().join(format!("minictr-bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), RUNC_SPEC).unwrap();
        let argv: Vec<OsString> = [
            "minictr",
            "run",
            "--bundle",
            dir.to_str().unwrap(),
            "--hostname",
            "mine",
            "-e",
            "A=1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // As main.rs does: parsing builds `run`'s options (deferred) in `cli`, words_for reads them.
        let matches = cli.try_get_matches_from_mut(&argv).unwrap();
        let words = words_for(&matches, &cli, &argv).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(crate::Cli::try_parse_from(&words).is_ok(), "{words:?}");
        let words: Vec<String> = words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        // the user's --hostname wins (the config's is left out), -e adds to the config's
        assert!(has(&words, &["--hostname", "mine"]) && !words.iter().any(|w| w == "runc"));
        assert!(has(&words, &["-e", "A=1"]) && has(&words, &["-e", "TERM=xterm"]));
        assert!(words.ends_with(&[
            "--".to_string(),
            dir.join("rootfs").display().to_string(),
            "sh".into()
        ]));
        assert!(!words.iter().any(|w| w == "--bundle"));

        // ROOTFS/CMD are required without --bundle, and refused with it
        for bad in [
            &["minictr", "run"][..],
            &["minictr", "run", "--bundle", "b", "rootfs", "sh"],
        ] {
            assert!(cli.clone().try_get_matches_from(bad).is_err(), "{bad:?}");
        }
    }
}
