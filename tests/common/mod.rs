//! Shared harness for the integration tests: the real `minictr` binary, a real busybox rootfs built
//! by `rootfs-scripts/busybox.sh`, and checks that nothing is left on the host.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test (`MINICTR_TEST_BIN` names another build of it: workshop/prove.sh runs one
/// test binary against each level's minictr).
pub fn bin() -> PathBuf {
    std::env::var_os("MINICTR_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_minictr")))
}

/// `minictr` as a Command with stdin closed, started in the test's own network namespace. In
/// workshop mode (`MINICTR_TEST_UNTIL=N`, set by workshop/check.sh) every minictr runs with
/// `MINICTR_UNTIL=N`: the stages of later chapters are off.
pub fn minictr() -> Command {
    enter_test_netns();
    let mut c = Command::new(bin());
    c.stdin(Stdio::null());
    if let Some(n) = test_until() {
        c.env("MINICTR_UNTIL", n.to_string());
    }
    c
}

/// The workshop level the tests run at (`MINICTR_TEST_UNTIL`), `None` for every stage.
pub fn test_until() -> Option<u8> {
    std::env::var("MINICTR_TEST_UNTIL")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// A test that needs chapter `chapter`'s stage is skipped (with the reason printed) when the
/// workshop level is below it.
pub fn needs_chapter(chapter: u8, test: &str) -> bool {
    match test_until() {
        Some(n) if n < chapter => {
            eprintln!(
                "SKIPPED {test}: needs chapter {chapter}'s stage, and MINICTR_TEST_UNTIL={n}"
            );
            false
        }
        _ => true,
    }
}

/// Integration tests run real containers and need root. When not root they say so loudly and pass
/// as skipped: CI runs them as root (see .ci/run).
pub fn need_root(test: &str) -> bool {
    if nix_is_root() {
        enter_test_netns();
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (run the suite with sudo, as CI does)");
    false
}

/// The network namespace the test binary was started in (its main thread never leaves it).
fn host_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    static HOST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| {
        std::fs::metadata("/proc/self/ns/net")
            .expect("stat /proc/self/ns/net")
            .ino()
    })
}

/// Tests run minictr with its defaults — the bridge network — but never in the machine's own network
/// namespace: the calling test thread moves into a fresh one (`unshare(CLONE_NEWNET)`, which is per
/// thread; libtest runs each test on a thread of its own, and threads the test starts inherit it).
/// Every process the test spawns — minictr, a shell, tmux — starts in it, so the bridge, NAT table
/// and veths minictr makes live there and vanish with it once the thread and its processes are gone.
/// Unlike `ip netns exec`, nothing is remounted: /sys and the cgroup hierarchies stay the host's.
/// Loopback is brought up for published ports on 127.0.0.1.
pub fn enter_test_netns() {
    use std::os::unix::fs::MetadataExt;
    if !nix_is_root() {
        return;
    }
    let host = host_netns();
    let mine = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat /proc/thread-self/ns/net")
        .ino();
    if mine != host {
        return; // already in a namespace of its own (or of the test that started this thread)
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    lo_up();
}

/// `ip link set lo up` in the current thread's network namespace (SIOCGIFFLAGS, SIOCSIFFLAGS).
fn lo_up() {
    // SAFETY: a datagram socket and two ioctls on a zeroed `ifreq` that names "lo"; the
    // descriptor is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let get = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let set = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert!(get == 0 && set == 0, "bringing lo up: {err}");
    }
}

/// The data directory the tests' minictr uses (MINICTR_DATA_DIR, else /var/lib/minictr).
pub fn data_dir() -> PathBuf {
    std::env::var_os("MINICTR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/minictr"))
}

/// The runtime directory the tests' minictr uses (MINICTR_RUN_DIR, else /run/minictr).
pub fn run_dir() -> PathBuf {
    std::env::var_os("MINICTR_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/minictr"))
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A busybox rootfs built once per `cargo test` target dir by the project's own script, shared by
/// every test (containers never change it: tests that write use volumes or the overlay).
/// `MINICTR_TEST_ROOTFS` points at an existing one instead.
pub fn rootfs() -> PathBuf {
    if let Ok(p) = std::env::var("MINICTR_TEST_ROOTFS") {
        return PathBuf::from(p);
    }
    let dir = target_tmp().join("busybox-rootfs");
    let lock = File::create(target_tmp().join("busybox-rootfs.lock")).expect("lock file");
    flock(&lock); // held until `lock` drops at the end of this function
    if !dir.join("bin/busybox").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-scripts/busybox.sh");
        let out = Command::new("sh")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run busybox.sh");
        assert!(
            out.status.success(),
            "busybox.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// A private copy of the busybox rootfs for a test that must modify the image itself.
pub fn rootfs_copy(name: &str) -> PathBuf {
    let src = rootfs();
    let dst = target_tmp().join(format!("rootfs-{name}"));
    let _ = std::fs::remove_dir_all(&dst);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .status()
        .expect("cp")
        .success();
    assert!(ok, "cp -a {src:?} {dst:?}");
    dst
}

fn flock(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
}

/// Run `minictr run [opts] ROOTFS cmd…` and return its output.
pub fn run(opts: &[&str], cmd: &[&str]) -> Output {
    run_on(&rootfs(), opts, cmd)
}

pub fn run_on(rootfs: &Path, opts: &[&str], cmd: &[&str]) -> Output {
    minictr()
        .arg("run")
        .args(opts)
        .arg(rootfs)
        .args(cmd)
        .output()
        .expect("failed to start minictr")
}

/// `sh -c SCRIPT` in a container; asserts success and returns stdout.
pub fn sh(opts: &[&str], script: &str) -> String {
    let out = run(opts, &["sh", "-c", script]);
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "minictr failed with {:?} (signal {:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// minictr refused the input: exit 125 and one error line that says `want` and carries a hint.
pub fn assert_refused(out: &Output, want: &str, what: &dyn std::fmt::Debug) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(125), "{what:?}: {err}");
    assert!(
        err.contains(want) && err.contains("hint:"),
        "{what:?}: wanted {want:?} with a hint: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{what:?}: one line: {err}");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hostname unique to one test, so leftovers can be traced to it even when tests run in parallel.
pub fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut s = format!("t-{name}-{:x}-{n:x}", std::process::id());
    s.truncate(63);
    s.trim_end_matches('-').to_string()
}

/// Nothing of a container started with `--hostname host` is left on the host: no runtime directory
/// (state.json names the hostname) and no mount under a path that mentions it.
pub fn assert_no_leftovers(hostname: &str) {
    if let Ok(rd) = std::fs::read_dir(run_dir()) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("state.json")) {
                assert!(
                    !s.contains(&format!("\"hostname\": \"{hostname}\"")),
                    "runtime directory {:?} of {hostname} was left behind",
                    e.path()
                );
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(hostname),
        "a mount of {hostname} was left behind:\n{mounts}"
    );
}

/// Lines of the host's mount table, for before/after comparisons.
pub fn host_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(4).take(1).collect::<String>())
        .collect()
}

/// A fresh, empty scratch directory for one test (under cargo's per-target tmp dir).
pub fn scratch(name: &str) -> PathBuf {
    let dir = target_tmp().join(format!("scratch-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The `state.json` of the running container started with `--hostname hostname`, once it names the
/// container's pid (waits up to 10 s; minictr writes it right after clone).
pub fn container_pid(hostname: &str) -> i32 {
    let needle = format!("\"hostname\": \"{hostname}\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(rd) = std::fs::read_dir(run_dir()) {
            for e in rd.flatten() {
                let Ok(s) = std::fs::read_to_string(e.path().join("state.json")) else {
                    continue;
                };
                if !s.contains(&needle) {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&s).expect("state.json is JSON");
                // Only once the command runs: a signal before exec would test setup, not the command.
                if v["status"] != "running" {
                    continue;
                }
                if let Some(pid) = v["container_pid"].as_i64() {
                    return pid as i32;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no runtime directory with a container_pid for {hostname} within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait (up to `secs`) until `f` holds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A minictr running in the background. Dropping it (also when a test fails half-way) SIGKILLs
/// minictr; its container follows (PR_SET_PDEATHSIG) and the next run removes the runtime dir.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run `minictr run --hostname HOST [opts] ROOTFS sh -c SCRIPT` in the background with piped stdio.
pub fn spawn_sh(hostname: &str, opts: &[&str], rootfs: &Path, script: &str) -> Running {
    Running(
        minictr()
            .arg("run")
            .arg("--hostname")
            .arg(hostname)
            .args(opts)
            .arg(rootfs)
            .args(["sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start minictr"),
    )
}

/// Read one line of a child's stdout (blocking).
pub fn read_line(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Wait for a child with a generous bound; kills it and fails the test if it does not exit.
pub fn wait_bounded(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    wait_within(child, secs).unwrap_or_else(|| panic!("minictr did not exit within {secs} s"))
}

/// Wait for a child at most `secs` seconds; `None` (and the child killed) if it did not exit.
pub fn wait_within(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A runtime and a data directory of one test's own (MINICTR_RUN_DIR, MINICTR_DATA_DIR beside the
/// suite's): its minictr sees no other test's containers, so `ps -a` can be asserted empty and
/// `rm $(ps -aq)` touches nothing else. Dropping it removes what is left, then the directories.
pub struct PrivateDirs {
    pub run: PathBuf,
    pub data: PathBuf,
}

impl PrivateDirs {
    pub fn new(name: &str) -> PrivateDirs {
        let tag = format!("{name}-{}", std::process::id());
        let dirs = PrivateDirs {
            run: PathBuf::from(format!("{}-{tag}", run_dir().display())),
            data: PathBuf::from(format!("{}-{tag}", data_dir().display())),
        };
        let _ = std::fs::remove_dir_all(&dirs.run);
        let _ = std::fs::remove_dir_all(&dirs.data);
        dirs
    }

    /// `minictr` with these directories.
    pub fn minictr(&self) -> Command {
        let mut c = minictr();
        c.env("MINICTR_RUN_DIR", &self.run)
            .env("MINICTR_DATA_DIR", &self.data);
        c
    }

    /// `minictr ARGS…` with these directories, its output.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.minictr().args(args).output().expect("run minictr")
    }

    /// The ids `minictr ps -aq` prints.
    pub fn ids(&self) -> Vec<String> {
        let out = self.cmd(&["ps", "-aq"]);
        assert_ok(&out);
        stdout(&out).lines().map(str::to_string).collect()
    }

    /// Nothing of any container is left: `ps -a` lists none, no runtime directory, writable
    /// layer or name exists.
    pub fn assert_empty(&self, what: &str) {
        let ps = self.cmd(&["ps", "-a"]);
        assert_ok(&ps);
        assert_eq!(
            stdout(&ps).lines().count(),
            1,
            "{what}: `ps -a` lists containers:\n{}",
            stdout(&ps)
        );
        let entries = |d: PathBuf| -> Vec<String> {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let runtime: Vec<String> = entries(self.run.clone())
            .into_iter()
            .filter(|n| !["network", "probes.json", "bundle-seccomp"].contains(&n.as_str()))
            .collect();
        assert!(
            runtime.is_empty(),
            "{what}: left in {:?}: {runtime:?}",
            self.run
        );
        for sub in ["containers", "names"] {
            let left = entries(self.data.join(sub));
            assert!(left.is_empty(), "{what}: left in {sub}/: {left:?}");
        }
    }
}

impl Drop for PrivateDirs {
    fn drop(&mut self) {
        if let Ok(out) = self.minictr().args(["ps", "-aq"]).output() {
            let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
            if !ids.is_empty() {
                let _ = self.minictr().args(["rm", "-f"]).args(&ids).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.run);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The network interfaces of the calling thread's network namespace (the test's own).
pub fn links() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .expect("read /proc/thread-self/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Every cgroup directory named `id` (the container's cgroups are named by its id).
pub fn cgroups_of(id: &str) -> Vec<String> {
    let out = Command::new("find")
        .args(["/sys/fs/cgroup", "-type", "d", "-name", id])
        .output()
        .expect("find");
    stdout(&out).lines().map(str::to_string).collect()
}

/// The checkpoints of the start sequence (chapter 8) in the order `--explain` lists them when `var`
/// (MINICTR_CRASH_AT or MINICTR_FAIL_AT) names no step: `minictr` is the command to run (with its
/// environment), `opts` are run's options.
pub fn checkpoints(mut minictr: Command, var: &str, opts: &[&str]) -> Vec<String> {
    let out = minictr
        .env(var, "none")
        .args(["run", "--explain"])
        .args(opts)
        .arg(rootfs())
        .arg("true")
        .output()
        .expect("run minictr");
    assert_ok(&out);
    stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("[ch08 lifecycle] step \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}
