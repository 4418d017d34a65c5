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
    c
}

/// Integration tests run real containers and need root. When not root they say so loudly and pass
/// as skipped: CI runs them as root (see .ci/run).
pub fn need_root(test: &str) -> bool {
    if nix_is_root() {
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
