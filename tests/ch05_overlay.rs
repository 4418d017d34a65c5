//! Chapter 5 — overlay: the image never changes, each container writes to its own upper layer, and
//! nothing of a discarded layer survives exit, a killed container or a killed minictr.

mod common;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn layers() -> PathBuf {
    common::data_dir().join("containers")
}

/// owner, mode, size, mtime and content hash of every file under `root`.
fn manifest(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, u64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if m.is_file() {
                std::fs::read(&p).unwrap().hash(&mut h);
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().hash(&mut h);
            } else if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                (m.uid(), m.gid(), m.mode(), m.size(), m.mtime(), h.finish()),
            );
        }
    }
    out
}

fn layer_dir(id: &str) -> PathBuf {
    layers().join(id)
}

/// Start `minictr run` in the background and wait until its state.json names the container's pid.
#[allow(clippy::zombie_processes)] // the child is returned to the caller, which waits for it
fn spawn(opts: &[&str], cmd: &[&str]) -> (Child, String, i32) {
    let host = common::unique("ov");
    let mut child = common::minictr()
        .arg("run")
        .args(["--hostname", &host])
        .args(opts)
        .arg(common::rootfs())
        .args(cmd)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for e in std::fs::read_dir(common::run_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(s) = std::fs::read_to_string(e.path().join("state.json")) {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                // "running": the command was exec'd (killing it earlier tests setup, not this).
                if v["hostname"] == host.as_str() && v["status"] == "running" {
                    if let Some(pid) = v["container_pid"].as_i64() {
                        return (child, v["id"].as_str().unwrap().to_string(), pid as i32);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("container {host} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image_unchanged_with(userns: &[&str], name: &str) {
    let image = common::rootfs_copy(name);
    let before = manifest(&image);
    let mut opts = userns.to_vec();
    opts.push("--keep");
    let out = common::run_on(&image, &opts, &["sh", "-c", "rm /bin/ls && echo changed > /etc/motd && echo new > /root/new && chown 1000 /root/new && ls /bin/ls; cat /etc/motd"]);
    common::assert_ok(&out);
    assert_eq!(
        common::stdout(&out).trim(),
        "changed",
        "inside: ls is gone and motd is new"
    );
    assert_eq!(manifest(&image), before, "the image on the host changed");

    // The change and the whiteout are in the kept upper layer.
    let kept: Vec<PathBuf> = std::fs::read_dir(layers())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p.join("container.json"))
                .is_ok_and(|s| s.contains(image.to_str().unwrap()))
        })
        .collect();
    assert_eq!(kept.len(), 1, "one kept layer for {image:?}: {kept:?}");
    let upper = kept[0].join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    let wh = std::fs::symlink_metadata(upper.join("bin/ls")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "bin/ls is a 0:0 whiteout"
    );
    // Ownership on disk: root inside is host 100000 with the user namespace, 0 without.
    let root_uid = if userns.is_empty() { 100000 } else { 0 };
    let new = std::fs::metadata(upper.join("root/new")).unwrap();
    assert_eq!(
        new.uid(),
        root_uid + 1000,
        "chown 1000 inside is stored shifted on disk"
    );
    assert_eq!(
        std::fs::metadata(upper.join("etc/motd")).unwrap().uid(),
        root_uid
    );

    // diff and rm
    let id = kept[0].file_name().unwrap().to_str().unwrap().to_string();
    let d = common::minictr().args(["diff", &id]).output().unwrap();
    common::assert_ok(&d);
    let diff = common::stdout(&d);
    for line in [
        "C /bin",
        "D /bin/ls",
        "C /etc",
        "C /etc/motd",
        "A /root/new",
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "diff lacks {line:?}:\n{diff}"
        );
    }
    let r = common::minictr().args(["rm", &id]).output().unwrap();
    common::assert_ok(&r);
    assert!(!kept[0].exists(), "rm removed the layer");
    let again = common::minictr().args(["diff", &id]).output().unwrap();
    assert_eq!(again.status.code(), Some(125));
    std::fs::remove_dir_all(&image).unwrap();
}

#[test]
fn the_image_never_changes_with_the_user_namespace() {
    if !common::need_root("the_image_never_changes_with_the_user_namespace") {
        return;
    }
    image_unchanged_with(&[], "ch05-userns");
}

#[test]
fn the_image_never_changes_without_the_user_namespace() {
    if !common::need_root("the_image_never_changes_without_the_user_namespace") {
        return;
    }
    image_unchanged_with(&["--userns=host"], "ch05-host");
}

#[test]
fn a_discarded_layer_leaves_nothing() {
    if !common::need_root("a_discarded_layer_leaves_nothing") {
        return;
    }
    for userns in [&[][..], &["--userns=host"][..]] {
        let host = common::unique("ovgone");
        let mut opts = vec!["--hostname", &host];
        opts.extend_from_slice(userns);
        let out = common::run(
            &opts,
            &[
                "sh",
                "-c",
                "echo x > /x; awk '$5==\"/\"' /proc/self/mountinfo",
            ],
        );
        common::assert_ok(&out);
        assert!(
            common::stdout(&out).contains(" / / "),
            "the overlay is the root"
        );
        common::assert_no_leftovers(&host);
    }
}

#[test]
fn two_containers_on_one_image_do_not_see_each_other() {
    if !common::need_root("two_containers_on_one_image_do_not_see_each_other") {
        return;
    }
    let (mut a, id_a, _) = spawn(
        &[],
        &["sh", "-c", "echo A > /etc/who; sleep 2; cat /etc/who"],
    );
    let (mut b, id_b, _) = spawn(
        &[],
        &["sh", "-c", "echo B > /etc/who; sleep 2; cat /etc/who"],
    );
    assert_ne!(id_a, id_b);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let out = common::sh(&[], "cat /etc/who 2>&1 || echo none");
    assert!(
        out.contains("No such file"),
        "a third container sees neither write: {out}"
    );
    assert!(!layer_dir(&id_a).exists() && !layer_dir(&id_b).exists());
}

#[test]
fn concurrent_writes_stay_apart() {
    if !common::need_root("concurrent_writes_stay_apart") {
        return;
    }
    let kids: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|w| {
            let child = common::minictr()
                .args(["run"])
                .arg(common::rootfs())
                .args([
                    "sh",
                    "-c",
                    &format!("echo {w} > /etc/motd; sleep 1; cat /etc/motd"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (w, child)
        })
        .collect();
    for (w, child) in kids {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), *w);
    }
}

#[test]
fn layers_stack_later_above_earlier() {
    if !common::need_root("layers_stack_later_above_earlier") {
        return;
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("layers"));
    let (l1, l2) = (base.join("l1"), base.join("l2"));
    std::fs::create_dir_all(l1.join("etc")).unwrap();
    std::fs::create_dir_all(l2.join("etc")).unwrap();
    std::fs::write(l1.join("etc/motd"), "from l1\n").unwrap();
    std::fs::write(l1.join("etc/only-l1"), "l1\n").unwrap();
    std::fs::write(l2.join("etc/motd"), "from l2\n").unwrap();
    let out = common::sh(
        &[
            "--layer",
            l1.to_str().unwrap(),
            "--layer",
            l2.to_str().unwrap(),
        ],
        "cat /etc/motd /etc/only-l1; ls /bin/busybox",
    );
    assert_eq!(
        out, "from l2\nl1\n/bin/busybox\n",
        "l2 hides l1, l1 adds to the rootfs"
    );
    let missing = common::run(&["--layer", "/nonexistent-minictr-layer"], &["true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(common::stderr(&missing).contains("/nonexistent-minictr-layer"));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn read_only_root_and_tmpfs() {
    if !common::need_root("read_only_root_and_tmpfs") {
        return;
    }
    for userns in [&[][..], &["--userns=host"][..]] {
        let mut opts = vec!["--read-only", "--tmpfs", "/tmp:size=1m"];
        opts.extend_from_slice(userns);
        let out = common::sh(&opts, "touch /etc/x 2>&1; echo rc=$?; echo ok > /tmp/y && cat /tmp/y; grep ' /tmp ' /proc/mounts");
        assert!(out.contains("Read-only file system"), "{out}");
        assert!(out.contains("rc=1"), "{out}");
        assert!(out.contains("ok\n"), "{out}");
        assert!(
            out.contains("tmpfs /tmp tmpfs rw,nosuid,nodev,noexec"),
            "{out}"
        );
    }
    // The mount points of volumes and --tmpfs that the image lacks are made in a layer that is
    // thrown away, never in the image (with every network mode; --network none has no /etc files
    // to mount and used to write /data and /cache into the image itself).
    let image = common::rootfs_copy("read-only-mount-points");
    let vol = common::scratch("read-only-vol");
    let before = std::fs::read_dir(&image).unwrap().count();
    for net in [
        &["--network", "none"][..],
        &["--network", "none", "--userns=host"],
        &["--network", "host"],
        &["--network", "bridge"],
    ] {
        let v = format!("{}:/data:ro", vol.display());
        let mut opts = vec!["--read-only", "-v", &v, "--tmpfs", "/cache"];
        opts.extend_from_slice(net);
        let out = common::run_on(
            &image,
            &opts,
            &["sh", "-c", "ls -d /data /cache && touch /x"],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{net:?}: {}",
            common::stderr(&out)
        );
        assert_eq!(common::stdout(&out), "/cache\n/data\n", "{net:?}");
        assert!(
            common::stderr(&out).contains("Read-only file system"),
            "{net:?}"
        );
        for p in ["data", "cache", "x"] {
            assert!(
                !image.join(p).exists(),
                "{net:?}: /{p} was made in the image"
            );
        }
    }
    assert_eq!(std::fs::read_dir(&image).unwrap().count(), before);
    std::fs::remove_dir_all(&image).unwrap();
    for bad in [
        &["--tmpfs", "relative"][..],
        &["--tmpfs", "/x:size=12Q"],
        &["--read-only", "--keep"],
        &["--name", "-bad"],
    ] {
        let out = common::run(bad, &["true"]);
        assert_eq!(out.status.code(), Some(125), "{bad:?}");
    }
}

#[test]
fn names_are_unique_and_removable() {
    if !common::need_root("names_are_unique_and_removable") {
        return;
    }
    let name = common::unique("nm");
    let first = common::run(&["--name", &name], &["sh", "-c", "echo hi > /hello"]);
    common::assert_ok(&first);
    let second = common::run(&["--name", &name], &["true"]);
    assert_eq!(second.status.code(), Some(125));
    assert!(
        common::stderr(&second).contains("already in use"),
        "{}",
        common::stderr(&second)
    );
    let d = common::minictr().args(["diff", &name]).output().unwrap();
    assert!(common::stdout(&d).contains("A /hello"));
    common::assert_ok(&common::minictr().args(["rm", &name]).output().unwrap());
    common::assert_ok(&common::run(&["--name", &name], &["true"]));
    common::assert_ok(&common::minictr().args(["rm", &name]).output().unwrap());
}

#[test]
fn killed_container_and_killed_minictr_leave_no_layer() {
    if !common::need_root("killed_container_and_killed_minictr_leave_no_layer") {
        return;
    }
    // kill -9 of the container's first process: minictr reports 137 and cleans up. (A layer on
    // disk: a throwaway one in memory has nothing to clean up, see the test after this one.)
    let (mut child, id, pid) = spawn(&["--disk-layer"], &["sleep", "100"]);
    assert!(layer_dir(&id).exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(
        !layer_dir(&id).exists(),
        "layer of a killed container removed"
    );

    // kill -9 of minictr itself: the container dies with it; the next minictr command cleans up.
    let (mut child, id, _) = spawn(&["--disk-layer"], &["sleep", "100"]);
    child.kill().unwrap();
    child.wait().unwrap();
    // (Another test's minictr may already have cleaned up: only the state after our next command counts.)
    common::assert_ok(&common::run(&[], &["true"]));
    // A concurrent test's minictr may hold the stale entry's lock and be removing it right now:
    // allow it a moment to finish.
    common::wait_until(10, "the crashed run's layer is removed", || {
        !layer_dir(&id).exists()
    });
    assert!(
        !common::run_dir().join(&id).exists(),
        "and its runtime directory"
    );
}

/// The root line of the container's /proc/PID/mountinfo (the overlay and its options).
fn root_mount(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_default()
        .to_string()
}

/// Whether the probes of this boot found overlayfs taking an upper layer on a detached tmpfs
/// (Linux 6.15; cached in probes.json by the first run): where they did not, every layer is on
/// disk and the memory tests do not apply.
fn memory_layers() -> bool {
    common::assert_ok(&common::run(&[], &["true"]));
    let probes = std::fs::read_to_string(common::run_dir().join("probes.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&probes).unwrap();
    let yes = v["overlay_upper_in_memory"]["result"] == "yes";
    if !yes {
        eprintln!("SKIP: throwaway layers are on disk on this kernel: {probes}");
    }
    yes
}

/// A container removed at exit writes into a tmpfs that only its overlay holds: no directory in
/// the data directory while it runs, the writes still happen, and nothing is left after a kill
/// of the container or of minictr. `minictr diff` says why it has nothing to show.
#[test]
fn a_throwaway_layer_is_in_memory_and_never_on_disk() {
    if !common::need_root("a_throwaway_layer_is_in_memory_and_never_on_disk") || !memory_layers() {
        return;
    }
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(layers())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let (mut child, id, pid) = spawn(&[], &["sh", "-c", "echo written > /etc/motd; sleep 100"]);
    common::wait_until(10, "the container wrote /etc/motd", || {
        std::fs::read_to_string(format!("/proc/{pid}/root/etc/motd"))
            .is_ok_and(|s| s == "written\n")
    });
    assert!(!layer_dir(&id).exists(), "a layer directory {id} exists");
    assert!(
        !entries().iter().any(|p| p.to_string_lossy().contains(&id)),
        "{:?}",
        entries()
    );
    let root = root_mount(pid);
    assert!(root.contains("upperdir=/proc/self/fd/"), "{root}");
    let d = common::minictr().args(["diff", &id]).output().unwrap();
    common::assert_refused(
        &d,
        "no writable layer on disk",
        &"diff of a throwaway container",
    );
    // The image is untouched.
    assert!(!std::fs::read_to_string(common::rootfs().join("etc/motd"))
        .unwrap_or_default()
        .contains("written"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(!layer_dir(&id).exists());
    assert!(!common::run_dir().join(&id).exists());

    // kill -9 of minictr: nothing to clean up, however it ends.
    let (mut child, id, pid) = spawn(&[], &["sleep", "100"]);
    child.kill().unwrap();
    child.wait().unwrap();
    common::wait_until(10, "the container died with minictr", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(!layer_dir(&id).exists());
}

/// `--disk-layer`: a throwaway container's layer in the data directory, as kept ones are.
#[test]
fn disk_layer_puts_a_throwaway_layer_on_disk() {
    if !common::need_root("disk_layer_puts_a_throwaway_layer_on_disk") {
        return;
    }
    let (mut child, id, pid) = spawn(&["--disk-layer"], &["sh", "-c", "echo x > /x; sleep 100"]);
    common::wait_until(10, "the container wrote /x", || {
        layer_dir(&id).join("upper/x").exists()
    });
    let root = root_mount(pid);
    assert!(
        root.contains(&format!(
            "upperdir={}",
            layer_dir(&id).join("upper").display()
        )),
        "{root}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(!layer_dir(&id).exists(), "the layer is removed at exit");
}

/// The layer's pages are the container's memory: past `--memory` a write is killed inside (no
/// swap here: tmpfs pages cannot be reclaimed), the container's shell goes on, the host is fine.
#[test]
fn writes_to_a_memory_layer_count_against_the_memory_limit() {
    if !common::need_root("writes_to_a_memory_layer_count_against_the_memory_limit")
        || !memory_layers()
    {
        return;
    }
    let out = common::run(
        &["--memory", "32m"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null; echo dd=$?",
        ],
    );
    // The OOM killer picks dd (usually) or the shell: either way the write did not complete.
    let text = common::stdout(&out);
    assert!(
        !text.contains("dd=0") && (text.contains("dd=") || out.status.code() == Some(137)),
        "64 MB written under a 32 MB limit: {text:?} {:?}",
        out.status
    );
    assert!(
        common::stderr(&out).contains("out of memory"),
        "{}",
        common::stderr(&out)
    );
    common::assert_ok(&common::run(&[], &["sh", "-c", "echo ok > /x"]));
}

/// The fallback for kernels whose overlayfs refuses layers by descriptor (before 6.15: EINVAL,
/// EOPNOTSUPP, or EBADF for O_PATH on 6.13–6.14): the idmapped layers are staged in minictr's own
/// mount namespace. Forced here with MINICTR_OVERLAY_LEGACY; image files are still root's inside,
/// writes still land in the upper layer, and no staged mount is seen on the host or survives.
#[test]
fn the_staged_fallback_builds_the_same_root() {
    if !common::need_root("the_staged_fallback_builds_the_same_root") {
        return;
    }
    let host = common::unique("ovlegacy");
    let out = common::minictr()
        .env("MINICTR_OVERLAY_LEGACY", "1")
        .args(["run", "--explain", "--hostname", &host])
        .arg(common::rootfs())
        .args(["sh", "-c", "stat -c %u /bin/busybox; echo x > /x && cat /x"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "0\nx\n");
    let err = common::stderr(&out);
    assert!(err.contains("staged for a kernel without"), "{err}");
    assert!(!err.contains("FSCONFIG_SET_FD"), "{err}");
    common::assert_no_leftovers(&host);
    // The staging directory (<runtime dir>/lower0) was never a mount on the host.
    let staged = err
        .lines()
        .find(|l| l.contains("staged for a kernel without"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no staging path in: {err}"))
        .to_string();
    assert!(staged.ends_with("/lower0"), "{staged}");
    assert!(
        !common::host_mounts().iter().any(|m| m.contains(&staged)),
        "{staged} is mounted on the host"
    );
    assert!(!std::path::Path::new(&staged).exists(), "{staged} is left");
}
