//! Shared harness for the integration tests: the real `minictr` binary, a real busybox rootfs built
//! by `rootfs-scripts/busybox.sh`, and checks that nothing is left on the host.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minictr"))
}

/// `minictr` as a Command with stdin closed.
pub fn minictr() -> Command {
    let mut c = Command::new(bin());
    c.stdin(Stdio::null());
    // ch06: no bridge in the machine's own network namespace; tests/ch06_network.rs runs its
    // containers inside network namespaces of its own instead.
    if std::env::var_os("MINICTR_NETWORK").is_none() {
        c.env("MINICTR_NETWORK", "none");
    }
    c
}

/// Integration tests run real containers and need root. When not root they say so loudly and pass
/// as skipped: CI runs them as root (see .ci/run).
pub fn need_root(test: &str) -> bool {
    if nix_is_root() {
        // ch06: every minictr a test starts — also through a shell or tmux — gets no bridge in the
        // machine's own network namespace unless the test asks for one (tests/ch06_network.rs does,
        // inside namespaces of its own). std's environment lock keeps this safe next to spawns.
        if std::env::var_os("MINICTR_NETWORK").is_none() {
            std::env::set_var("MINICTR_NETWORK", "none");
        }
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (run the suite with sudo, as CI does)");
    false
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
    let base = Path::new("/run/minictr");
    if let Ok(rd) = std::fs::read_dir(base) {
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
        if let Ok(rd) = std::fs::read_dir("/run/minictr") {
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("minictr did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
