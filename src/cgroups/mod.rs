//! Chapter 4 — cgroups: the kernel's accounting and limits for a group of processes (memory, CPU,
//! number of processes, I/O), and the file system interface that controls them.
//!
//! One interface for the orchestrator ([`plan`] before anything exists, [`Cgroup`] for the live
//! group) with two implementations behind it: [`v1`] (one hierarchy per controller, as on hybrid
//! hosts) and [`v2`] (the unified hierarchy). Everything is done by the parent — host root — because
//! the container's root is only root inside its user namespace.

pub mod args;
pub mod fs;
pub use args::CgroupsArgs;
pub mod limits;
pub mod stats;
pub mod v1;
pub mod v2;

pub use limits::Limits;
pub use stats::Stats;

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub const CHAPTER: &str = "ch04 cgroups";

// ANCHOR: layout
/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Only the unified hierarchy (`cgroup2` at /sys/fs/cgroup): every controller in one tree.
    V2,
    /// One `cgroup` (v1) mount per controller (or group of controllers), no cgroup2.
    V1,
    /// v1 controllers plus an (empty or nearly empty) cgroup2 mount: controllers are used the v1 way.
    Hybrid,
}

/// One cgroup file system mount, from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted on the host, e.g. /sys/fs/cgroup/memory.
    pub point: PathBuf,
    /// The cgroup that is the root of this mount (not `/` inside a container).
    pub root: String,
    /// v2: `cgroup2`; v1: `cgroup`.
    pub fstype: String,
    /// v1: the controllers of this hierarchy (`memory`, `cpu`, `name=systemd`, …).
    pub controllers: Vec<String>,
}

/// The host's cgroup layout together with this process's own place in it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub version: Version,
    /// v1 hierarchies with real controllers (named-only ones like name=systemd are left out).
    pub v1: Vec<v1::Hierarchy>,
    /// The unified hierarchy, if mounted.
    pub v2: Option<v2::Unified>,
}
// ANCHOR_END: layout

/// The cgroup mounts of a mountinfo text. Fields: id parent major:minor root point options
/// [optional…] - fstype source super-options.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let _source = r.next();
        let sopts = r.next().unwrap_or("");
        let l: Vec<&str> = left.split(' ').collect();
        if l.len() < 5 {
            continue;
        }
        let controllers = if fstype == "cgroup" {
            sopts
                .split(',')
                .filter(|o| {
                    !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children" | "xattr")
                        && !o.starts_with("release_agent=")
                })
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        out.push(Mount {
            point: PathBuf::from(unescape(l[4])),
            root: unescape(l[3]),
            fstype: fstype.to_string(),
            controllers,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && i + 3 <= b.len() {
            if let Ok(n) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// /proc/self/cgroup: `hierarchy-id:controllers:path` per line. Returns (controllers, path); the v2
/// line is `0::/path` with empty controllers.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            let c = if ctrls.is_empty() {
                Vec::new()
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            Some((c, path.to_string()))
        })
        .collect()
}

/// The host path of a cgroup: the mount point plus the cgroup path relative to the mount's root.
fn host_path(m: &Mount, cgroup: &str) -> PathBuf {
    let root = m.root.trim_end_matches('/');
    let rel = cgroup.strip_prefix(root).unwrap_or(cgroup);
    m.point.join(rel.trim_start_matches('/'))
}

// ANCHOR: detect
impl Layout {
    /// Read /proc/self/mountinfo and /proc/self/cgroup once each.
    pub fn detect() -> Result<Layout> {
        let mi = read_proc("/proc/self/mountinfo")?;
        let pc = read_proc("/proc/self/cgroup")?;
        Ok(Layout::from_texts(&mi, &pc))
    }

    /// The layout from the two files' contents (pure: unit-tested on fixtures).
    pub fn from_texts(mountinfo: &str, proc_cgroup: &str) -> Layout {
        let own = parse_proc_cgroup(proc_cgroup);
        let mut v1 = Vec::new();
        let mut v2 = None;
        for m in parse_mountinfo(mountinfo) {
            if m.fstype == "cgroup2" {
                if v2.is_none() {
                    if let Some((_, p)) = own.iter().find(|(c, _)| c.is_empty()) {
                        v2 = Some(v2::Unified {
                            mount: m.point.clone(),
                            own: host_path(&m, p),
                        });
                    }
                }
                continue;
            }
            let real: Vec<String> = m
                .controllers
                .iter()
                .filter(|c| !c.starts_with("name="))
                .cloned()
                .collect();
            // Skip named-only hierarchies and second mounts of a hierarchy already seen.
            if real.is_empty() || v1.iter().any(|h: &v1::Hierarchy| h.controllers == real) {
                continue;
            }
            let Some((_, p)) = own.iter().find(|(c, _)| {
                let mut a = c.clone();
                a.sort();
                let mut b = m.controllers.clone();
                b.sort();
                a == b
            }) else {
                continue;
            };
            v1.push(v1::Hierarchy {
                own: host_path(&m, p),
                mount: m.point.clone(),
                controllers: real,
            });
        }
        let version = match (v1.is_empty(), v2.is_some()) {
            (false, true) => Version::Hybrid,
            (false, false) => Version::V1,
            _ => Version::V2,
        };
        Layout { version, v1, v2 }
    }
}
// ANCHOR_END: detect

/// A /proc file read whole into one large buffer: procfs reports a size of 0, so a plain
/// `read_to_string` asks for its size (statx, lseek), then starts at 32 bytes and doubles — 8
/// reads for a 1.6 KB mountinfo, which the kernel formats piece by piece. 16 KiB holds a host's
/// mountinfo in one read (a longer one grows the buffer and goes on reading).
fn read_proc(path: &str) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("failed to open {path}"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("failed to read {path}")),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).with_context(|| format!("{path} is not UTF-8"))
}

/// Where to put the container's cgroup: `--cgroup-parent` (absolute = from the hierarchy's root,
/// relative = beneath minictr's own cgroup), default `<own>/minictr`.
pub fn container_dir(mount: &Path, own: &Path, parent: Option<&str>, id: &str) -> PathBuf {
    let base = match parent {
        Some(p) if p.starts_with('/') => mount.join(p.trim_start_matches('/')),
        Some(p) => own.join(p),
        None => own.join("minictr"),
    };
    base.join(id)
}

/// What state.json records of a container's cgroups: its directories, in creation order (one per
/// v1 hierarchy, or the single v2 one). A JSON array of paths.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Paths(pub Vec<String>);

/// What step 2 will do, decided in step 1.
#[derive(Debug, Clone)]
pub enum Decision {
    /// `--no-cgroup`.
    Off,
    /// Not possible here and no limit asked for: say why once, run without.
    Skip(String),
    Use(Box<Plan>),
}

/// The container's cgroup, planned: which directories, which limits.
#[derive(Debug, Clone)]
pub struct Plan {
    pub version: Version,
    pub limits: Limits,
    /// v1: one directory per hierarchy used.
    pub v1: Vec<v1::Dir>,
    /// v2: the single directory.
    pub v2: Option<v2::Dir>,
}

impl Plan {
    /// Every directory this plan creates (recorded in the runtime dir before creation).
    pub fn paths(&self) -> Paths {
        let mut p: Vec<String> = self
            .v1
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        if let Some(d) = &self.v2 {
            p.push(d.path.display().to_string());
        }
        Paths(p)
    }

    /// On v1 the child is moved into its cgroups after clone, so its cgroup namespace must be made
    /// afterwards (by the child, with unshare) or it would be rooted at minictr's own cgroups.
    pub fn late_cgroupns(&self) -> bool {
        self.v2.is_none()
    }

    /// What to mount at /sys/fs/cgroup inside the container.
    pub fn inside(&self) -> Inside {
        match &self.v2 {
            Some(d) => Inside::V2 {
                host: d.path.clone(),
            },
            None => Inside::V1 {
                hierarchies: self
                    .v1
                    .iter()
                    .map(|d| {
                        let name = d
                            .mount
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| d.controllers.join(","));
                        (name, d.path.clone())
                    })
                    .collect(),
            },
        }
    }
}

/// The container's view of /sys/fs/cgroup.
#[derive(Debug, Clone)]
pub enum Inside {
    /// A cgroup2 mount (in the cgroup namespace it shows the container's cgroup as its root).
    V2 { host: PathBuf },
    /// A tmpfs holding one directory per hierarchy, each the container's own cgroup bound there.
    V1 { hierarchies: Vec<(String, PathBuf)> },
}

// ANCHOR: plan
/// Step 1: parse the limits, detect the layout (`layout`: the host's, asked only when needed),
/// decide the directories — create nothing.
pub fn plan(
    opts: &CgroupsArgs,
    id: &str,
    rootless: bool,
    layout: impl FnOnce() -> Result<Layout>,
) -> Result<Decision> {
    let limits = Limits::parse(opts)?;
    if let Some(p) = &opts.cgroup_parent {
        limits::check_parent(p)?;
    }
    if opts.no_cgroup {
        if !limits.is_empty() {
            bail!(crate::error::hint(
                "--no-cgroup switches off the stage that applies the limits given",
                "drop --no-cgroup or the limit flags"
            ));
        }
        return Ok(Decision::Off);
    }
    let layout = layout()?;
    let parent = opts.cgroup_parent.as_deref();
    let skip_or_fail = |why: String, what_to_do: &str| -> Result<Decision> {
        if limits.is_empty() {
            Ok(Decision::Skip(format!("cgroups skipped: {why}")))
        } else {
            Err(crate::error::hint(
                format!("cannot apply {}: {why}", limits.flags().join(", ")),
                what_to_do,
            ))
        }
    };
    match layout.version {
        Version::V1 | Version::Hybrid => {
            if rootless {
                return skip_or_fail(
                    "cgroup v1 cannot be delegated to an unprivileged user".into(),
                    "run as root (sudo), or use a host with cgroup v2 and systemd delegation",
                );
            }
            let dirs = v1::plan_dirs(&layout.v1, &limits, parent, id)?;
            Ok(Decision::Use(Box::new(Plan {
                version: layout.version,
                limits,
                v1: dirs,
                v2: None,
            })))
        }
        Version::V2 => {
            let Some(u) = &layout.v2 else {
                return skip_or_fail(
                    "no cgroup file system is mounted".into(),
                    "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)",
                );
            };
            if rootless {
                let anchor = v2::anchor(u, parent);
                if nix::unistd::access(&anchor.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK)
                    .is_err()
                {
                    return skip_or_fail(
                        format!(
                            "{} is not delegated to you (its cgroup.procs is not writable)",
                            anchor.display()
                        ),
                        "run as root, or inside a delegated systemd unit: systemd-run --user --scope -p Delegate=yes minictr run …",
                    );
                }
            }
            let dir = v2::plan_dir(u, &limits, parent, id)?;
            Ok(Decision::Use(Box::new(Plan {
                version: Version::V2,
                limits,
                v1: Vec::new(),
                v2: Some(dir),
            })))
        }
    }
}
// ANCHOR_END: plan

/// A file written, narrated under `--explain`.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    crate::explain!(CHAPTER, "write {} = {value}", path.display());
    std::fs::write(path, value)
        .with_context(|| format!("failed to write {value:?} to {}", path.display()))
}

pub(crate) fn read_trim(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// mkdir, narrated. Returns whether it was created (false: it existed).
pub(crate) fn mkdir(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => {
            crate::explain!(CHAPTER, "mkdir {}", path.display());
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to create the cgroup {}", path.display())),
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V2 => "v2 (unified)",
            Version::V1 => "v1",
            Version::Hybrid => "v1 hybrid (controllers on v1, cgroup2 mounted beside them)",
        })
    }
}

// ANCHOR: cgroup
/// The container's live cgroup. Dropping it kills whatever is still inside and removes it.
pub struct Cgroup {
    plan: Plan,
    /// Directories created, in creation order (removed in reverse).
    created: Vec<PathBuf>,
    /// v2: the directory held open for clone3's CLONE_INTO_CGROUP.
    fd: Option<OwnedFd>,
}

impl Cgroup {
    /// Step 2: create the directories and write every limit — before the child exists.
    pub fn create(plan: &Plan) -> Result<Cgroup> {
        let mut cg = Cgroup {
            plan: plan.clone(),
            created: Vec::new(),
            fd: None,
        };
        crate::explain!(
            CHAPTER,
            "host layout: cgroup {} — the container's cgroup goes in {} place(s)",
            plan.version,
            plan.paths().0.len()
        );
        // On error `cg` drops and removes what was created so far.
        if let Some(d) = &plan.v2 {
            v2::create(d, &plan.limits, &mut cg.created)?;
            let fd = nix::fcntl::open(
                &d.path,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .with_context(|| format!("failed to open the cgroup {}", d.path.display()))?;
            cg.fd = Some(fd);
        } else {
            v1::create(&plan.v1, &plan.limits, &mut cg.created)?;
        }
        Ok(cg)
    }

    // ANCHOR_END: cgroup

    // ANCHOR: cgroup_use
    /// Only then can the OOM killer act on this cgroup's own limit (the host's can still strike).
    pub fn has_memory_limit(&self) -> bool {
        self.plan.limits.memory.is_some()
    }

    /// v2: the fd for clone3(CLONE_INTO_CGROUP) — the child starts inside, atomically.
    pub fn clone_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Step 3, just before clone, v1: open the `tasks` file of every hierarchy (as host root) for
    /// the child, which inherits the descriptors and moves itself with them. v2: nothing to open —
    /// CLONE_INTO_CGROUP puts the child inside.
    pub fn self_attach(&self) -> Result<SelfAttach> {
        let mut files = Vec::new();
        if self.fd.is_none() {
            for d in &self.plan.v1 {
                let path = d.path.join("tasks");
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path) // O_WRONLY | O_CLOEXEC
                    .with_context(|| format!("failed to open {}", path.display()))?;
                files.push((path, file));
            }
        }
        Ok(SelfAttach(files))
    }

    /// Step 13: the counters, read before the cgroup goes.
    pub fn stats(&self) -> Stats {
        match &self.plan.v2 {
            Some(d) => v2::stats(&d.path),
            None => v1::stats(&self.plan.v1),
        }
    }

    /// `container killed: out of memory (limit 64.0 MiB, peak 64.0 MiB)` if the kernel's OOM killer
    /// killed a process of this cgroup (`code` is the container's exit status: 137 = SIGKILL).
    pub fn oom_message(&self, stats: &Stats, code: i32) -> Option<String> {
        let kills = *stats.oom_kills.as_ref().ok()?;
        if kills == 0 {
            return None;
        }
        let limit = self
            .plan
            .limits
            .memory
            .map(stats::human_bytes)
            .unwrap_or_else(|| "none".into());
        let peak = match &stats.memory_peak {
            Ok(p) => stats::human_bytes(*p),
            Err(_) => "unknown".into(),
        };
        let extra = if kills > 1 {
            format!(", {kills} processes killed")
        } else {
            String::new()
        };
        let who = if code == 128 + libc::SIGKILL {
            "container killed"
        } else {
            "a process of the container was killed by the kernel"
        };
        Some(format!(
            "{who}: out of memory (limit {limit}, peak {peak}{extra})"
        ))
    }
}

// ANCHOR_END: cgroup_use

// ANCHOR: self_attach
/// v1: the container's `tasks` files, opened by the parent before clone. The child has its own
/// copies of the descriptors (clone copies the descriptor table) and moves itself with them; the
/// parent's copies close when its `SelfAttach` is dropped after clone. v2: empty.
pub struct SelfAttach(Vec<(PathBuf, std::fs::File)>);

impl SelfAttach {
    /// Step 7, in the child, the first thing after "go" (still one thread, nothing forked, no
    /// cgroup namespace yet): move this process into every hierarchy, then close the descriptors.
    pub fn attach(self) -> Result<()> {
        // EXERCISE(ch04, "put the container into its cgroup", hint = "v1: write 0 (the writing thread, our only one) to every tasks file the parent opened; v2: the list is empty, CLONE_INTO_CGROUP did it")
        for (path, tasks) in self.0 {
            move_self(&tasks, &path)?;
        } // each descriptor closes here: no process of the container keeps one
        Ok(())
        // EXERCISE_END
    }
}

/// Move the calling thread into the cgroup of this v1 `tasks` file — the whole process when it
/// has no other thread. "0" names the writer itself; moving the writer alone is the one case in
/// which the kernel skips the global cgroup_threadgroup_rwsem and its RCU grace period. The
/// permission check uses the credentials of whoever opened the file, not the writer's.
fn move_self(mut tasks: &std::fs::File, path: &Path) -> Result<()> {
    use std::io::Write;
    crate::explain!(
        CHAPTER,
        "write {} = 0 (this process moves itself)",
        path.display()
    );
    tasks.write_all(b"0").map_err(|e| {
        let what = format!("failed to write \"0\" to {}: {e}", path.display());
        if e.raw_os_error() == Some(libc::EINVAL) {
            // cpu_cgroup_can_attach (kernel/sched/core.c) with CONFIG_RT_GROUP_SCHED.
            crate::error::hint(what, "a real-time process (SCHED_FIFO or SCHED_RR, e.g. started with chrt) cannot join a v1 cpu cgroup whose cpu.rt_runtime_us is 0: run minictr with the normal scheduling policy")
        } else {
            anyhow::anyhow!(what)
        }
    })
}
// ANCHOR_END: self_attach

// ANCHOR: cgroup_drop
impl Drop for Cgroup {
    fn drop(&mut self) {
        self.fd = None;
        let paths: Vec<String> = self
            .created
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        if let Err(e) = remove(&paths) {
            eprintln!("minictr: warning: {}", crate::error::one_line(&e));
        }
    }
}
// ANCHOR_END: cgroup_drop

// ANCHOR: remove
/// Kill every process left in these cgroup directories (a daemon that escaped the first process),
/// then remove them. Used at exit and for the leftovers of a crashed minictr.
pub fn remove(paths: &[String]) -> Result<()> {
    let dirs: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    // A killed process stays in its cgroup until it has finished exiting, and exiting can take
    // seconds: the last process of a container unmounts its overlay, and unmounting an overlay
    // syncs the whole filesystem of its writable layer (ovl_sync_fs) — on a busy disk that is
    // seconds of writeback before the process leaves. So wait for the kernel, killing again now
    // and then (a process may have forked meanwhile), and give up only after a generous bound.
    let deadline = std::time::Instant::now() + REMOVE_TIMEOUT;
    let mut last = None;
    let mut killed = false;
    for (i, d) in dirs.iter().enumerate() {
        let mut tries = 0u32;
        loop {
            crate::explain!(CHAPTER, "rmdir {}", d.display());
            // Usually the container's processes are gone and this succeeds at once: an empty
            // group needs no look inside first. EBUSY says something is still in it.
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    // Every directory still to remove holds the same processes (they were
                    // attached together): kill them all once, then again now and then.
                    if !killed {
                        kill_all(&dirs[i..]);
                        killed = true;
                    }
                    tries += 1;
                    if tries.is_multiple_of(20) {
                        kill_all(std::slice::from_ref(d));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(if tries < 50 {
                        10
                    } else {
                        100
                    }));
                }
                Err(e) => {
                    let why = if e.raw_os_error() == Some(libc::EBUSY) {
                        format!(
                            " (processes still in it after {} s)",
                            REMOVE_TIMEOUT.as_secs()
                        )
                    } else {
                        String::new()
                    };
                    last = Some(
                        anyhow::Error::new(e)
                            .context(format!("failed to remove the cgroup {}{why}", d.display())),
                    );
                    break;
                }
            }
        }
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
// ANCHOR_END: remove

/// How long [`remove`] waits for killed processes to leave their cgroup.
const REMOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

// ANCHOR: kill_all
/// v2: `cgroup.kill` (Linux 5.14) kills everything at once. Otherwise freeze (so nothing forks
/// while we read the list), SIGKILL each pid, thaw (a frozen process cannot die).
fn kill_all(dirs: &[PathBuf]) {
    // Every directory holds the same processes (they were attached together): one read tells.
    let populated = dirs
        .first()
        .is_some_and(|d| read_trim(&d.join("cgroup.procs")).is_ok_and(|s| !s.is_empty()));
    if !populated {
        return;
    }
    for d in dirs {
        let k = d.join("cgroup.kill");
        if k.exists() {
            let _ = write_file(&k, "1");
            return;
        }
    }
    let freezer = dirs.iter().find(|d| d.join("freezer.state").exists());
    let v2_freeze = dirs.iter().find(|d| d.join("cgroup.freeze").exists());
    if let Some(f) = freezer {
        let _ = write_file(&f.join("freezer.state"), "FROZEN");
    } else if let Some(f) = v2_freeze {
        let _ = write_file(&f.join("cgroup.freeze"), "1");
    }
    for d in dirs {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for pid in s.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                crate::explain!(CHAPTER, "kill({pid}, SIGKILL) — left in {}", d.display());
                let _ =
                    nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    if let Some(f) = freezer {
        let _ = write_file(&f.join("freezer.state"), "THAWED");
    } else if let Some(f) = v2_freeze {
        let _ = write_file(&f.join("cgroup.freeze"), "0");
    }
}
// ANCHOR_END: kill_all

/// Say why cgroups are skipped: under `--explain`, or on a terminal (a person is watching) — never as
/// noise in the stderr of scripts and tests, and without leaving a marker file on the host.
pub fn note_skipped(why: &str) {
    if crate::explain::enabled() {
        crate::explain!(CHAPTER, "{why}");
    } else if nix::unistd::isatty(std::io::stderr()).unwrap_or(false) {
        eprintln!("minictr: note: {why} (--explain says more)");
    }
}

/// `minictr exec`: move this process into the container's cgroup(s) — every hierarchy on v1 — so
/// the process it starts counts against the container's limits. The caller has one thread: v1
/// moves it by `tasks` like the container's first process (no grace period); v2 writes the pid.
pub fn join(paths: &Paths) -> Result<()> {
    for p in &paths.0 {
        let tasks = Path::new(p).join("tasks");
        match std::fs::OpenOptions::new().write(true).open(&tasks) {
            Ok(f) => move_self(&f, &tasks)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_file(
                &Path::new(p).join("cgroup.procs"),
                &std::process::id().to_string(),
            )?,
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", tasks.display())),
        }
    }
    Ok(())
}

// ANCHOR: stats_of
/// `minictr stats`: the counters of a running container, from the cgroup directories its state
/// recorded — the same reading code as `--stats` at exit.
pub fn stats_of(paths: &Paths) -> Result<Stats> {
    let paths = &paths.0[..];
    if let [one] = paths {
        let p = Path::new(one);
        if p.join("cgroup.controllers").exists() {
            return Ok(v2::stats(p));
        }
    }
    let layout = Layout::detect()?;
    let dirs: Vec<v1::Dir> = paths
        .iter()
        .filter_map(|p| {
            let path = PathBuf::from(p);
            let h = layout
                .v1
                .iter()
                .filter(|h| path.starts_with(&h.mount))
                .max_by_key(|h| h.mount.as_os_str().len())?;
            Some(v1::Dir {
                controllers: h.controllers.clone(),
                mount: h.mount.clone(),
                anchor: h.mount.clone(),
                path,
            })
        })
        .collect();
    Ok(v1::stats(&dirs))
}
// ANCHOR_END: stats_of

/// The cgroups recorded by a minictr that died: kill what is left and remove them. False when one
/// still holds processes after [`REMOVE_TIMEOUT`] (its record should stay, so that a later command
/// tries again); any other error is only warned about.
pub fn remove_stale(paths: &Paths) -> bool {
    let paths = &paths.0[..];
    if paths.is_empty() {
        return true;
    }
    crate::explain!(
        CHAPTER,
        "removing stale cgroups {paths:?} (their minictr died)"
    );
    // Leaves first: the recorded list is in creation order, parents are never recorded.
    match remove(paths) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("minictr: warning: {}", crate::error::one_line(&e));
            let busy = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.raw_os_error())
                == Some(libc::EBUSY);
            !busy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MI: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_PC: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/b63f
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_with_a_nested_memory_path() {
        let l = Layout::from_texts(HYBRID_MI, HYBRID_PC);
        assert_eq!(l.version, Version::Hybrid);
        let names: Vec<String> = l.v1.iter().map(|h| h.controllers.join(",")).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "pids"]);
        let mem = l.v1.iter().find(|h| h.controllers == ["memory"]).unwrap();
        assert_eq!(mem.own, Path::new("/sys/fs/cgroup/memory/process_api/b63f"));
        let cpu = l.v1.iter().find(|h| h.controllers == ["cpu"]).unwrap();
        assert_eq!(cpu.own, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(l.v2.unwrap().own, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unified_layout() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let pc = "0::/user.slice/user-1000.slice/session-2.scope\n";
        let l = Layout::from_texts(mi, pc);
        assert_eq!(l.version, Version::V2);
        assert!(l.v1.is_empty());
        assert_eq!(
            l.v2.unwrap().own,
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope")
        );
    }

    #[test]
    fn co_mounted_controllers_and_a_mount_rooted_below_slash() {
        // Inside a container: the hierarchy's root is the container's cgroup.
        let mi =
            "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpuacct,cpu\n";
        let pc = "3:cpu,cpuacct:/docker/abc/inner\n";
        let l = Layout::from_texts(mi, pc);
        assert_eq!(l.version, Version::V1);
        assert_eq!(l.v1[0].controllers, ["cpuacct", "cpu"]);
        assert_eq!(l.v1[0].own, Path::new("/sys/fs/cgroup/cpu,cpuacct/inner"));
    }

    #[test]
    fn a_refused_move_names_the_file_and_the_reason() {
        // /dev/full refuses every write (ENOSPC), as a cgroup refuses a task it cannot take.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let e = SelfAttach(vec![(PathBuf::from("/dev/full"), full)])
            .attach()
            .unwrap_err();
        let line = crate::error::one_line(&e);
        assert!(
            line.starts_with("failed to write \"0\" to /dev/full: No space left on device"),
            "{line}"
        );
        assert!(SelfAttach(Vec::new()).attach().is_ok()); // v2: nothing to write
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn container_paths() {
        let m = Path::new("/sys/fs/cgroup/memory");
        let own = Path::new("/sys/fs/cgroup/memory/process_api/b63f");
        assert_eq!(
            container_dir(m, own, None, "abc"),
            Path::new("/sys/fs/cgroup/memory/process_api/b63f/minictr/abc")
        );
        assert_eq!(
            container_dir(m, own, Some("/ci/jobs"), "abc"),
            Path::new("/sys/fs/cgroup/memory/ci/jobs/abc")
        );
        assert_eq!(
            container_dir(m, own, Some("mine"), "abc"),
            Path::new("/sys/fs/cgroup/memory/process_api/b63f/mine/abc")
        );
    }
}
