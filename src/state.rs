//! The per-container runtime directory `/run/minictr/<id>/` (chapter 8 builds the lifecycle on it).
//!
//! Crash safety: the directory holds `state.json`, and the owning minictr keeps the directory itself
//! `flock`ed for as long as it lives. The kernel drops the lock when that process dies — however it
//! dies, SIGKILL included — so any later minictr command can tell a live container from a stale one
//! (immune to pid reuse) and undo what the stale one recorded. Every reservation is recorded in
//! `state.json` *before* it is made. The lock is on the directory itself: telling a live container
//! from a stale one costs open, flock and close of that directory, no file of its own.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CHAPTER: &str = "ch08 lifecycle";

/// Where runtime directories live: /run/minictr for root, $XDG_RUNTIME_DIR/minictr otherwise.
pub fn base_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MINICTR_RUN_DIR") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/minictr");
    }
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(d) if !d.is_empty() => Path::new(&d).join("minictr"),
        _ => std::env::temp_dir().join(format!("minictr-{}", nix::unistd::geteuid())),
    }
}

/// Create `base` (mode 0700 when we make it) and check it is ours: a directory, not a symlink,
/// owned by us and writable by nobody else. The rootless fallback lives in the shared /tmp, where
/// another user could have made `/tmp/minictr-<uid>` first to plant or read state.
/// The base is 0711: nobody else may list it or write to it, but a container's first process —
/// host uid 100000 with the user namespace — must be able to walk to its runtime directory, the
/// mount point of its root (chapter 2).
fn create_base(base: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(base)
        .with_context(|| format!("failed to create the runtime directory {}", base.display()))?;
    check_base(base)
}

fn check_base(base: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(base)
        .with_context(|| format!("failed to inspect {}", base.display()))?;
    check_base_is_ours(base, &m)
}

fn check_base_is_ours(base: &Path, m: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    if !m.is_dir() || m.uid() != euid || m.mode() & 0o022 != 0 {
        anyhow::bail!(crate::error::hint(
            format!(
                "refusing runtime directory {}: not a directory owned by uid {euid} and writable only by it",
                base.display()
            ),
            "remove it, or set XDG_RUNTIME_DIR (or MINICTR_RUN_DIR) to a private directory"
        ));
    }
    Ok(())
}

/// A new container id: 12 lower-case hex digits (Docker's short id length), from six bytes of
/// getrandom(2) — the kernel's generator directly: one system call, no user-space generator to seed.
pub fn new_id() -> String {
    let mut b = [0u8; 6];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: the kernel writes at most `b.len() - got` bytes into `b[got..]`, which we own.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        match usize::try_from(n) {
            Ok(n) => got += n,
            // EINTR: try again. (Nothing else can happen here: Linux 3.17+, a valid buffer.)
            Err(_) if nix::errno::Errno::last() == nix::errno::Errno::EINTR => {}
            Err(_) => break,
        }
    }
    if got < b.len() {
        // Unreachable on any kernel minictr runs on; still an id, unique enough for a fallback.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b.copy_from_slice(&(t ^ u64::from(std::process::id()) << 32).to_le_bytes()[..6]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `state.json` records about one container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub id: String,
    /// The minictr process that owns (and holds the lock of) this container.
    pub owner_pid: i32,
    pub container_pid: Option<i32>,
    /// Seconds since the epoch.
    pub created: u64,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub hostname: String,
    /// What each stage reserved on the host, in the stage's own record type. Written before the
    /// reservation is made.
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub finished: Option<u64>,
    /// Started with -d: the directory (log, state) and writable layer outlive the container.
    #[serde(default)]
    pub detached: bool,
    /// What `minictr exec` needs to start another process like the first one.
    #[serde(default)]
    pub exec: ExecInfo,
}

/// Where a container is in its life (lower-case strings in state.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being started: the command has not been exec'd yet.
    #[default]
    Created,
    Running,
    /// A detached container that ended (its directory stays until `minictr rm`).
    Exited,
}

/// What the stages reserved on the host, each recorded in the type the stage defines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// ch04: the container's cgroup directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<crate::cgroups::Paths>,
    /// ch05: the writable layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<crate::overlay::LayerRecord>,
    /// ch06: the address, veth and published ports of `--network bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::Lease>,
    /// ch09: the image it runs on: the store keeps these layers while this record exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::image::Use>,
}

/// The first process's settings, for `minictr exec`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ExecInfo {
    pub env: Vec<(String, String)>,
    /// `-u` as given (resolved inside the container again by exec).
    pub user: Option<String>,
    pub workdir: PathBuf,
    /// The namespaces the container has, by /proc/PID/ns name (user, mnt, pid, net, uts, ipc, cgroup).
    pub namespaces: Vec<String>,
    /// Chapter 7: the hardening options, so an exec'd process gets the same capabilities, seccomp
    /// filter, no_new_privs and rlimits.
    #[serde(default)]
    pub security: crate::security::SecurityArgs,
}

/// A live runtime directory, owned by this process. Dropping it removes the directory.
pub struct RuntimeDir {
    path: PathBuf,
    _lock: Flock<File>,
    pub state: State,
    /// Detached containers: keep the directory (state, log) after exit, marked "exited".
    pub persist: bool,
    /// The length of state.json as last written (an in-place write pads to it).
    written: usize,
}

/// Lock the runtime directory `dir` itself (flock works on a directory's descriptor); `None`:
/// someone else holds it. A `lock` file inside, held by a minictr from before the directory lock,
/// counts as held too.
fn lock_dir(dir: &Path, nonblocking: bool) -> Result<Option<Flock<File>>> {
    let Some(held) = flock_dir(dir, nonblocking)? else {
        return Ok(None);
    };
    let legacy = File::open(dir.join("lock")).ok().map(|f| {
        matches!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    });
    Ok(if legacy == Some(true) {
        None
    } else {
        Some(held)
    })
}

/// flock `dir` itself, nothing else: `None` when someone else holds it.
fn flock_dir(dir: &Path, nonblocking: bool) -> Result<Option<Flock<File>>> {
    let f = File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
    let arg = if nonblocking {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockExclusive
    };
    match Flock::lock(f, arg) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", dir.display())),
    }
}

impl RuntimeDir {
    /// Create `<base>/<id>/`: made, locked, then its state.json written. Between mkdir and flock
    /// another minictr may find it unlocked and without state: it leaves such a young directory
    /// alone ([`stale_entries`]), and nobody lists a directory without state.json.
    pub fn create(base: &Path, state: State) -> Result<RuntimeDir> {
        // Checked as it is (one stat); made first only where it is missing.
        match std::fs::symlink_metadata(base) {
            Ok(m) => check_base_is_ours(base, &m)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_base(base)?,
            Err(e) => {
                return Err(e).with_context(|| format!("failed to inspect {}", base.display()))
            }
        }
        let path = base.join(&state.id);
        crate::explain!(
            CHAPTER,
            "mkdir({:?}) + flock(lock) + state.json — the container's runtime directory",
            path
        );
        {
            use std::os::unix::fs::DirBuilderExt;
            // 0711, like the base: walkable by the container's root, listable only by us.
            std::fs::DirBuilder::new()
                .mode(0o711)
                .create(&path)
                .with_context(|| format!("failed to create {}", path.display()))?;
        }
        // (A directory made just now has no legacy `lock` file to look for.)
        let lock = match flock_dir(&path, false) {
            Ok(Some(l)) => l,
            Ok(None) => unreachable_lock(&path)?,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                return Err(e);
            }
        };
        let mut dir = RuntimeDir {
            path: path.clone(),
            _lock: lock,
            state,
            persist: false,
            written: 0,
        };
        // Written under the lock, which every reader of a new directory's state waits for or
        // leaves alone: nobody reads a half-written first record.
        let data = dir.json()?;
        std::fs::write(path.join("state.json"), &data)
            .with_context(|| format!("failed to write {}/state.json", path.display()))?;
        dir.written = data.len();
        Ok(dir)
    }

    /// The descriptor of the held lock (the container's first process closes its inherited copy).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.state).context("failed to serialise the state")
    }

    // ANCHOR: save
    /// Write state.json again. In place when the record fits in one page: one `pwrite` at offset 0,
    /// padded with trailing spaces (JSON allows them) to the length the file had, so nothing of
    /// the old record is left behind it. The kernel checks for a fatal signal between the pages of
    /// a write, not within one: even SIGKILL leaves the old record or the new one, which the stale
    /// clean-up needs. The write holds an exclusive `flock` on the file, which every reader takes
    /// shared ([`read_state`]): nobody reads half of each. No new inode and no rename, which cost
    /// real time where /run is a disk file system. A larger record: a temporary file, then rename.
    pub fn save(&mut self) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.path.join("state.json");
        let mut data = self.json()?;
        if data.len() < self.written {
            data.resize(self.written, b' ');
        }
        if data.len() > IN_PLACE_MAX {
            replace(&path, &data)?;
            self.written = data.len();
            return Ok(());
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let f = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("failed to lock {}", path.display()))?;
        f.write_all_at(&data, 0)
            .with_context(|| format!("failed to write {}", path.display()))?;
        self.written = data.len();
        Ok(())
    }
    // ANCHOR_END: save

    /// A new status, saved.
    pub fn set_status(&mut self, status: Status) -> Result<()> {
        self.state.status = status;
        self.save()
    }
}

/// The largest record [`RuntimeDir::save`] writes in place: one page.
const IN_PLACE_MAX: usize = 4096;

/// Replace `path` atomically: a temporary file beside it, then rename.
fn replace(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).with_context(|| format!("failed to write {}", tmp.display()))?;
    f.write_all(data)
        .with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write {}", path.display()))
}

/// Read a runtime directory's state.json under a shared `flock` (the owner writes it in place
/// under an exclusive one). `None`: missing or unreadable.
pub fn read_state(dir: &Path) -> Option<State> {
    let f = File::open(dir.join("state.json")).ok()?;
    let mut f = Flock::lock(f, FlockArg::LockShared).ok()?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut *f, &mut data).ok()?;
    serde_json::from_slice(&data).ok()
}

fn unreachable_lock(dir: &Path) -> Result<Flock<File>> {
    anyhow::bail!("{} is locked by another process", dir.display())
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if self.persist {
            self.state.status = Status::Exited;
            self.state.finished.get_or_insert_with(now);
            let _ = self.save();
        } else {
            remove_known(&self.path);
        }
    }
}

/// Remove a runtime directory whose entries are known — state.json, and nothing else unless a stage
/// left something (a log, a mount point): one unlink and one rmdir, instead of `remove_dir_all`'s
/// open, fstat, fcntl and listing of the directory. Anything else inside falls back to that.
fn remove_known(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("state.json"));
    if std::fs::remove_dir(dir).is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A runtime directory whose owner is gone. We hold its lock while cleaning it.
pub struct Stale {
    pub path: PathBuf,
    pub state: Option<State>,
    _lock: Flock<File>,
}

impl Stale {
    /// A detached container whose monitor died: keep its directory (log, state) as "exited".
    pub fn mark_exited(self) -> Result<()> {
        let mut st = self.state.clone().unwrap_or_default();
        st.status = Status::Exited;
        st.finished = Some(now());
        st.resources = Resources {
            overlay: st.resources.overlay.take(),
            ..Default::default()
        };
        let data = serde_json::to_vec_pretty(&st).context("failed to serialise the state")?;
        replace(&self.path.join("state.json"), &data)
    }

    /// Remove the directory (after the stages undid their reservations).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path).with_context(|| {
            format!(
                "failed to remove stale runtime directory {}",
                self.path.display()
            )
        })
    }
}

/// Every runtime directory under `base` whose lock is free: its minictr died without cleaning up.
pub fn stale_entries(base: &Path) -> Vec<Stale> {
    scan(base).0
}

/// The names in `base` (one listing), and the stale runtime directories among them.
fn scan(base: &Path) -> (Vec<Stale>, HashSet<OsString>) {
    let mut names = HashSet::new();
    if check_base(base).is_err() {
        return (Vec::new(), names); // not ours (or missing): never act on what someone else wrote there
    }
    let Ok(rd) = std::fs::read_dir(base) else {
        return (Vec::new(), names);
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        names.insert(entry.file_name());
        // The listing's type (no stat); a live container then costs open, flock and close.
        // (Not /proc/locks: reading it takes a lock whose writer waits for an RCU grace period,
        // 10-17 ms on the development VM.)
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only container directories: `<id>` (or `.new-<id>`, made by minictr before 2026-12).
        // Stages keep shared state next to them (ch06: network/ with its own lock), which is not
        // a container.
        let id = name.strip_prefix(".new-").unwrap_or(&name);
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let young = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < 30)
        };
        if name.starts_with(".new-") && young() {
            continue;
        }
        let lock = match lock_dir(&path, true) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => lock_after_owner_died(&path),
            Err(_) => None,
        };
        if let Some(lock) = lock {
            let state = read_state(&path);
            // No state yet: being created right now (between its mkdir and flock), or left by a
            // crash there — only old ones go.
            if state.is_none() && young() {
                continue;
            }
            // A detached container that ended normally is not stale: it waits for `minictr rm`.
            if state.as_ref().is_some_and(|s| s.status == Status::Exited) {
                continue;
            }
            out.push(Stale {
                path,
                state,
                _lock: lock,
            });
        }
    }
    (out, names)
}

/// The directory is locked — by its minictr, or by a copy of the lock: a child cloned just before
/// its minictr was killed holds the lock's descriptor until it runs its first lines (it closes it,
/// then exits on the channel's EOF). If the recorded owner is gone, wait briefly for that child
/// instead of taking the container for a live one. (A live detached container's owner is its
/// monitor, which is alive; an owner's pid reused since is taken for alive: the next command retries.)
fn lock_after_owner_died(dir: &Path) -> Option<Flock<File>> {
    let state = read_state(dir)?;
    let owner = nix::unistd::Pid::from_raw(state.owner_pid);
    if state.owner_pid <= 0 || nix::sys::signal::kill(owner, None) != Err(nix::errno::Errno::ESRCH)
    {
        return None;
    }
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        if let Ok(Some(lock)) = lock_dir(dir, true) {
            return Some(lock);
        }
    }
    None
}

/// What the stages undo for a runtime directory whose minictr died. The orchestrator implements it
/// (this module knows the record types, not how to undo them).
pub trait UndoStale {
    /// Undo what `state` recorded, before its directory goes. False when something could not be
    /// undone yet: the directory (and its record) then stays for the next command to try again.
    fn undo(&self, state: &State) -> bool;
    /// After every stale directory: what no directory names any more (orphaned layers). `names`:
    /// what the runtime directory holds now (from the scan's listing, less what it removed).
    fn finish(&self, _names: &HashSet<OsString>) {}
}

// ANCHOR: cleanup_stale
/// Undo what crashed runs left behind. main.rs calls this before every command that reads or
/// creates containers.
pub fn cleanup_stale(stages: &dyn UndoStale) {
    let (stale_dirs, mut names) = scan(&base_dir());
    for stale in stale_dirs {
        crate::explain!(
            CHAPTER,
            "removing stale runtime directory {:?} (its minictr died)",
            stale.path
        );
        if let Some(st) = &stale.state {
            if !stages.undo(st) {
                continue; // (warned) the record stays; the next minictr command tries again
            }
        }
        // A detached container that was running when its monitor died stays listed as exited
        // (its log and kept layer wait for `minictr rm`); anything else goes entirely.
        let keep_entry = stale
            .state
            .as_ref()
            .is_some_and(|s| s.detached && s.status == Status::Running);
        let result = if keep_entry {
            stale.mark_exited()
        } else {
            let name = stale.path.file_name().map(OsString::from);
            stale.remove().map(|()| {
                name.map(|n| names.remove(&n));
            })
        };
        if let Err(e) = result {
            eprintln!("minictr: warning: {}", crate::error::one_line(&e));
        }
    }
    stages.finish(&names);
}
// ANCHOR_END: cleanup_stale

/// Whether a runtime directory is owned by a running minictr: it exists and its lock is held.
pub fn is_live(dir: &Path) -> bool {
    matches!(lock_dir(dir, true), Ok(None))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One container known to minictr: its runtime directory, state, and whether its minictr (the
/// owner of the lock) is alive.
pub struct Entry {
    pub path: PathBuf,
    pub state: State,
    pub live: bool,
}

/// Every container with a runtime directory under `base`.
pub fn list(base: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') || !path.is_dir() {
            continue;
        }
        let Some(state) = read_state(&path) else {
            continue;
        };
        let live = is_live(&path);
        out.push(Entry { path, state, live });
    }
    out.sort_by_key(|e| e.state.created);
    out
}

/// Find a container by id, unique id prefix, or name.
pub fn find(base: &Path, what: &str) -> Result<Entry> {
    let mut all = list(base);
    if let Some(i) = all
        .iter()
        .position(|e| e.state.id == what || e.state.name.as_deref() == Some(what))
    {
        return Ok(all.swap_remove(i));
    }
    let mut m: Vec<Entry> = all
        .into_iter()
        .filter(|e| !what.is_empty() && e.state.id.starts_with(what))
        .collect();
    match m.len() {
        1 => Ok(m.remove(0)),
        0 => Err(crate::error::hint(
            format!("no such container: {what}"),
            "list containers with `minictr ps -a`",
        )),
        _ => Err(crate::error::hint(
            format!("{what:?} matches several containers"),
            "give more of the id",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_dir_is_not_stale_and_a_dropped_one_is_gone() {
        let base = std::env::temp_dir().join(format!("minictr-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let st = State {
            id: new_id(),
            ..Default::default()
        };
        let mut dir = RuntimeDir::create(&base, st.clone()).unwrap();
        assert!(base.join(&st.id).join("state.json").exists());
        dir.state.resources.cgroup = Some(crate::cgroups::Paths(vec!["/sys/fs/cgroup/x".into()]));
        dir.save().unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts.
        assert!(stale_entries(&base).is_empty());
        drop(dir);
        assert!(!base.join(&st.id).exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_directory_without_state_is_left_alone_while_young() {
        let base = std::env::temp_dir().join(format!("minictr-young-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        create_base(&base).unwrap();
        // What a `create` between its mkdir and its flock looks like to everyone else.
        let dir = base.join(new_id());
        std::fs::create_dir(&dir).unwrap();
        assert!(stale_entries(&base).is_empty());
        assert!(list(&base).is_empty());
        // Left by a crash there a minute ago: stale.
        let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::open(&dir).unwrap().set_modified(minute_ago).unwrap();
        let stale = stale_entries(&base);
        assert_eq!(stale.len(), 1);
        assert!(stale[0].state.is_none());
        stale.into_iter().for_each(|s| s.remove().unwrap());
        assert!(!dir.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn saves_overwrite_in_place_padded_and_large_records_are_replaced() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("minictr-save-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let st = State {
            id: new_id(),
            hostname: "a-rather-long-hostname-to-shrink".into(),
            ..Default::default()
        };
        let mut dir = RuntimeDir::create(&base, st).unwrap();
        let file = dir.path().join("state.json");
        let inode = std::fs::metadata(&file).unwrap().ino();
        let first = std::fs::metadata(&file).unwrap().len();
        // Shorter: the same inode, padded to the old length, and it reads back as the new record.
        dir.state.hostname = "h".into();
        dir.set_status(Status::Running).unwrap();
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!((m.ino(), m.len()), (inode, first));
        let back = read_state(dir.path()).unwrap();
        assert_eq!(
            (back.hostname.as_str(), back.status),
            ("h", Status::Running)
        );
        // Longer: still in place, grown.
        dir.state.container_pid = Some(123_456);
        dir.state.command = vec!["x".repeat(100)];
        dir.save().unwrap();
        let m = std::fs::metadata(&file).unwrap();
        assert!(m.ino() == inode && m.len() > first);
        assert_eq!(read_state(dir.path()).unwrap().container_pid, Some(123_456));
        // More than a page: a new file renamed over the old one (no half-written record).
        dir.state.command = vec!["y".repeat(IN_PLACE_MAX)];
        dir.save().unwrap();
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), inode);
        assert_eq!(
            read_state(dir.path()).unwrap().command[0].len(),
            IN_PLACE_MAX
        );
        assert!(!dir.path().join("state.json.tmp").exists());
        // Small again: written in place over all of the large one.
        dir.state.command = vec!["z".into()];
        dir.save().unwrap();
        assert_eq!(read_state(dir.path()).unwrap().command, ["z"]);
        drop(dir);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn status_and_resources_are_written_as_before() {
        let st = State {
            status: Status::Running,
            resources: Resources {
                cgroup: Some(crate::cgroups::Paths(vec![
                    "/sys/fs/cgroup/pids/minictr/x".into()
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&st).unwrap();
        // Readers of state.json (tests, scripts) see the strings and arrays they always saw.
        assert_eq!(v["status"], "running");
        assert_eq!(v["resources"]["cgroup"][0], "/sys/fs/cgroup/pids/minictr/x");
        assert!(v["resources"].get("network").is_none());
        let back: State = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, Status::Running);
        // A state.json without a status (or resources) reads as a container being created.
        let old: State = serde_json::from_str(r#"{"id":"x","owner_pid":1,"container_pid":null,"created":0,"rootfs":"/","command":[],"hostname":"h"}"#).unwrap();
        assert_eq!(old.status, Status::Created);
    }

    #[test]
    fn ids_are_12_hex_digits() {
        let id = new_id();
        assert_eq!(id.len(), 12);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Random: 100 ids, no two alike (a 48-bit id repeats once in ~16 million pairs).
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}
