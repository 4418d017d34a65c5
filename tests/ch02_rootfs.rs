//! Chapter 2 — the root filesystem: a real "/" (pivot_root), only the kernel filesystems and devices
//! the container needs, mounts that never leak to the host, volumes and a working directory that
//! stay inside the rootfs, and a rootfs that tries to escape through symlinks.

mod common;

use common::{
    assert_no_leftovers, assert_ok, rootfs, rootfs_copy, run, run_on, sh, stderr, unique,
};
use std::io::Write;
use std::path::Path;

/// (mount point, per-mount options, fs type, root) of each line of a mountinfo text.
fn mounts(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap();
            (
                f[4].to_string(),
                f[5].to_string(),
                f[sep + 1].to_string(),
                f[3].to_string(),
            )
        })
        .collect()
}

fn opts_of<'a>(m: &'a [(String, String, String, String)], point: &str) -> &'a str {
    &m.iter()
        .rev()
        .find(|x| x.0 == point)
        .unwrap_or_else(|| panic!("no mount on {point}: {m:?}"))
        .1
}

#[test]
fn mountinfo_has_a_real_root_and_none_of_the_hosts_mounts() {
    if !common::need_root("mountinfo_has_a_real_root_and_none_of_the_hosts_mounts") {
        return;
    }
    let inside = mounts(&sh(&[], "cat /proc/self/mountinfo"));
    // "/" is a mount whose source is the rootfs directory: pivot_root, not chroot (a chroot would
    // still show the host's "/" and every host mount).
    let root = inside.iter().find(|m| m.0 == "/").expect("a / mount");
    let canon = rootfs().canonicalize().unwrap();
    assert!(
        root.3.ends_with(canon.to_str().unwrap()) || root.3 == "/",
        "the container's / is {root:?}, not the rootfs {canon:?}"
    );
    for (point, _, fstype, _) in &inside {
        // (The network stage's /etc/hosts, /etc/hostname and /etc/resolv.conf are the
        // container's own, chapter 6.)
        let ok = point == "/"
            || ["/proc", "/sys", "/dev"]
                .iter()
                .any(|p| point == p || point.starts_with(&format!("{p}/")))
            || ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&point.as_str());
        assert!(
            ok,
            "a mount that is not the container's: {point} ({fstype})"
        );
    }
    // The host's other mounts (e.g. /run, /sys/fs/cgroup/...) are nowhere to be seen.
    let host = common::host_mounts();
    for h in host
        .iter()
        .filter(|h| h.starts_with("/run") || h.starts_with("/boot"))
    {
        assert!(
            !inside.iter().any(|m| &m.0 == h),
            "host mount {h} visible inside"
        );
    }
    // 13 of chapter 2, up to 17 masked and read-only paths of chapter 7 (12 + 5 on a kernel that
    // has them all), and /sys/fs/cgroup of chapter 4 (one mount on v2; a tmpfs and one per
    // hierarchy on v1).
    assert!(inside.len() <= 45, "too many mounts inside: {inside:?}");
}

/// A mount made inside, while the container is still running, is not in the host's mount table.
#[test]
fn a_mount_made_inside_never_shows_on_the_host() {
    if !common::need_root("a_mount_made_inside_never_shows_on_the_host") {
        return;
    }
    let h = unique("mnt");
    let mut child = common::spawn_sh(
        &h,
        &[],
        &rootfs(),
        &format!(
            "mount -t tmpfs {h} /mnt 2>/dev/null && grep -q ' {h} ' /proc/self/mountinfo && echo mounted || echo refused; read x; echo done"
        ),
    );
    let said = common::read_line(&mut child);
    assert!(said == "mounted" || said == "refused", "{said}");
    if said == "refused" {
        // A later stage (capabilities) may forbid mount(2) in the container: nothing to leak then.
        eprintln!(
            "note: mount is refused in the container; propagation is checked with a volume below"
        );
    }
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(&h),
        "the container's tmpfs leaked to the host:\n{host}"
    );
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let st = common::wait_bounded(&mut child, 10);
    assert!(st.success(), "{st:?}");
    assert_no_leftovers(&h);
}

#[test]
fn volumes_and_the_rootfs_bind_do_not_show_on_the_host() {
    if !common::need_root("volumes_and_the_rootfs_bind_do_not_show_on_the_host") {
        return;
    }
    let h = unique("volprop");
    let vol = common::scratch(&h);
    let mut child = common::spawn_sh(
        &h,
        &["-v", &format!("{}:/data", vol.display())],
        &rootfs(),
        "grep -q ' /data ' /proc/self/mountinfo && echo ok; read x; true",
    );
    assert_eq!(common::read_line(&mut child), "ok");
    // (Other programs on this machine may mount things meanwhile: look only for ours.)
    let during = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !during.contains(&h),
        "the volume shows on the host:\n{during}"
    );
    let canon = rootfs().canonicalize().unwrap();
    assert!(
        !common::host_mounts().iter().any(|m| Path::new(m) == canon),
        "the rootfs bind shows on the host:\n{during}"
    );
    drop(child.stdin.take());
    assert!(common::wait_bounded(&mut child, 10).success());
    assert_no_leftovers(&h);
}

#[test]
fn dev_holds_exactly_the_default_devices() {
    if !common::need_root("dev_holds_exactly_the_default_devices") {
        return;
    }
    let out = sh(&[], "ls -A /dev");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want = [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
        "stdin", "stdout", "stderr",
    ];
    want.sort();
    assert_eq!(got, want);
    // The devices are the host's character devices (major:minor), and they work.
    let out = sh(
        &[],
        "stat -c '%n %F %t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty",
    );
    assert_eq!(
        out,
        "/dev/null character special file 1:3\n/dev/zero character special file 1:5\n\
         /dev/full character special file 1:7\n/dev/random character special file 1:8\n\
         /dev/urandom character special file 1:9\n/dev/tty character special file 5:0\n"
    );
    assert_eq!(
        sh(
            &[],
            "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok"
        ),
        "4\nnull-ok\n"
    );
    assert_eq!(
        sh(
            &[],
            "readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin"
        ),
        "pts/ptmx\n/proc/self/fd\n/proc/self/fd/0\n"
    );
    // devpts is the container's own instance: no pty of the host is listed.
    assert_eq!(sh(&[], "ls /dev/pts"), "ptmx\n");
}

#[test]
fn a_block_device_made_inside_cannot_be_read() {
    if !common::needs_chapter(3, "a_block_device_made_inside_cannot_be_read") {
        return;
    }
    if !common::need_root("a_block_device_made_inside_cannot_be_read") {
        return;
    }
    let r = rootfs_copy("mknod");
    // The host's root disk, by major:minor, in the rootfs and on /dev (tmpfs, nodev).
    let disk = std::fs::metadata("/")
        .map(|m| std::os::linux::fs::MetadataExt::st_dev(&m))
        .unwrap();
    let (maj, min) = (nix::sys::stat::major(disk), nix::sys::stat::minor(disk));
    for path in ["/tmp/disk", "/dev/disk"] {
        let out = run_on(
            &r,
            &[],
            &[
                "sh",
                "-c",
                &format!("mknod {path} b {maj} {min}; head -c 512 {path} | wc -c"),
            ],
        );
        assert_eq!(
            common::stdout(&out).trim(),
            "0",
            "read the host's disk through {path}: {}",
            stderr(&out)
        );
    }
    assert!(
        !r.join("tmp/disk").exists(),
        "mknod made a device node in the image"
    );
}

#[test]
fn sys_is_read_only_and_proc_dev_shm_are_nosuid_nodev_noexec() {
    if !common::need_root("sys_is_read_only_and_proc_dev_shm_are_nosuid_nodev_noexec") {
        return;
    }
    for flags in [&[][..], &["--no-net"][..]] {
        let m = mounts(&sh(flags, "cat /proc/self/mountinfo"));
        let sys = opts_of(&m, "/sys");
        assert!(
            sys.split(',').any(|o| o == "ro"),
            "{flags:?}: /sys is {sys}"
        );
        let out = run(flags, &["sh", "-c", "touch /sys/x || mkdir /sys/kernel/x"]);
        assert!(!out.status.success(), "{flags:?}: wrote to /sys");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
        for point in ["/proc", "/dev/shm", "/dev/mqueue"] {
            let o = opts_of(&m, point);
            for want in ["nosuid", "nodev", "noexec"] {
                assert!(o.split(',').any(|x| x == want), "{point} lacks {want}: {o}");
            }
        }
        let dev = opts_of(&m, "/dev");
        for want in ["nosuid", "noexec"] {
            assert!(
                dev.split(',').any(|x| x == want),
                "/dev lacks {want}: {dev}"
            );
        }
    }
    // noexec really holds: a copy of busybox on /dev/shm cannot be run.
    let out = run(
        &[],
        &[
            "sh",
            "-c",
            "cp /bin/busybox /dev/shm/bb && /dev/shm/bb true",
        ],
    );
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn volumes_rw_and_ro() {
    if !common::need_root("volumes_rw_and_ro") {
        return;
    }
    let h = unique("vol");
    let dir = common::scratch(&h);
    std::fs::write(dir.join("in"), "from host\n").unwrap();
    // chmod 777: container root is an unprivileged host uid.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let v = format!("{}:/data", dir.display());
    let out = sh(
        &["--hostname", &h, "-v", &v],
        "cat /data/in; echo written > /data/out",
    );
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "written\n"
    );

    // :ro — writes are refused inside, and the host's files stay as they were.
    let v = format!("{}:/data:ro", dir.display());
    let out = run(
        &["--hostname", &h, "-v", &v],
        &["sh", "-c", "cat /data/in; echo changed > /data/in"],
    );
    assert_eq!(common::stdout(&out), "from host\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("in")).unwrap(),
        "from host\n"
    );
    let out = run(&["-v", &v], &["sh", "-c", "touch /data/new"]);
    assert!(!out.status.success());
    assert!(!dir.join("new").exists());

    // A single file as a volume, read-only.
    let f = format!("{}:/etc/extra.conf:ro", dir.join("in").display());
    assert_eq!(sh(&["-v", &f], "cat /etc/extra.conf"), "from host\n");
    assert_no_leftovers(&h);
}

/// A volume target that is a symlink pointing out of the rootfs lands *inside* the rootfs (the link
/// is resolved as if the rootfs were /), never on the host path it names.
#[test]
fn a_volume_target_symlinked_out_of_the_rootfs_stays_inside() {
    if !common::need_root("a_volume_target_symlinked_out_of_the_rootfs_stays_inside") {
        return;
    }
    let h = unique("volsym");
    let r = rootfs_copy("volsym");
    let dir = common::scratch(&h);
    std::fs::write(dir.join("marker"), "volume\n").unwrap();
    // Absolute and relative links that, followed on the host, would leave the rootfs.
    let host_target = common::scratch(&format!("{h}-host"));
    std::os::unix::fs::symlink("/var", r.join("mnt/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../etc", r.join("mnt/rel")).unwrap();
    // A link to a host directory that has no counterpart in the rootfs: refused, not followed.
    std::os::unix::fs::symlink(&host_target, r.join("mnt/dangling")).unwrap();
    let v = format!("{}:/mnt/dangling", dir.display());
    let out = run_on(&r, &["--hostname", &h, "-v", &v], &["true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("/mnt/dangling is a symlink to a path that does not exist in the rootfs"),
        "{}",
        stderr(&out)
    );
    for (link, lands) in [("/mnt/abs", "/var"), ("/mnt/rel", "/etc")] {
        let v = format!("{}:{link}", dir.display());
        let out = run_on(
            &r,
            &["--hostname", &h, "-v", &v],
            &[
                "sh",
                "-c",
                &format!("cat {link}/marker; cut -d' ' -f5 /proc/self/mountinfo"),
            ],
        );
        assert_ok(&out);
        let text = common::stdout(&out);
        assert!(text.starts_with("volume\n"), "{text}");
        // The mount point is the link's target *inside* the rootfs.
        assert!(
            text.lines().any(|l| l == lands),
            "{link}: not mounted on {lands} inside:\n{text}"
        );
    }
    // And on the host nothing was mounted or written.
    assert_eq!(std::fs::read_dir(&host_target).unwrap().count(), 0);
    assert!(!Path::new("/etc/marker").exists());
    assert_no_leftovers(&h);
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(host_target.to_str().unwrap()));
}

#[test]
fn the_working_directory_is_created_and_stays_inside() {
    if !common::needs_chapter(5, "the_working_directory_is_created_and_stays_inside") {
        return;
    }
    if !common::need_root("the_working_directory_is_created_and_stays_inside") {
        return;
    }
    let r = rootfs_copy("workdir");
    // With the overlay (chapter 5, the default) the directory lives in the writable layer only;
    // with --no-overlay (chapter 2's view) it is created in the rootfs itself.
    let out = run_on(&r, &["-w", "/new/deep/dir"], &["pwd"]);
    assert_ok(&out);
    assert_eq!(common::stdout(&out), "/new/deep/dir\n");
    assert!(
        !r.join("new").exists(),
        "the overlay kept the image unchanged"
    );
    let out = run_on(&r, &["--no-overlay", "-w", "/new/deep/dir"], &["pwd"]);
    assert_ok(&out);
    assert_eq!(common::stdout(&out), "/new/deep/dir\n");
    assert!(r.join("new/deep/dir").is_dir());
    // `..` cannot climb out: /../../etc is the rootfs's /etc.
    let out = run_on(&r, &["-w", "/../../etc"], &["sh", "-c", "pwd; ls"]);
    assert_ok(&out);
    let mut want: Vec<String> = std::fs::read_dir(r.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    let text = common::stdout(&out);
    let mut l = text.lines();
    assert_eq!(l.next(), Some("/etc"));
    let mut got: Vec<&str> = l.collect();
    got.sort();
    assert_eq!(got, want);
    // A symlink pointing out of the rootfs: resolved inside it.
    std::os::unix::fs::symlink("/../../../root", r.join("escape")).unwrap();
    let out = run_on(&r, &["-w", "/escape"], &["pwd"]);
    assert_ok(&out);
    assert_eq!(common::stdout(&out), "/root\n");
}

/// A rootfs whose /proc, /sys or /dev is a symlink is refused before anything is mounted.
#[test]
fn a_rootfs_with_symlinked_kernel_dirs_is_refused() {
    if !common::need_root("a_rootfs_with_symlinked_kernel_dirs_is_refused") {
        return;
    }
    for dir in ["proc", "sys", "dev"] {
        let h = unique(&format!("sym{dir}"));
        let r = rootfs_copy(&format!("sym{dir}"));
        let target = common::scratch(&h);
        std::fs::remove_dir(r.join(dir)).unwrap();
        std::os::unix::fs::symlink(&target, r.join(dir)).unwrap();
        let out = run_on(&r, &["--hostname", &h], &["true"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(err.contains(&format!("/{dir} is a symlink")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !host.contains(target.to_str().unwrap()),
            "mounted on the host path:\n{host}"
        );
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
        assert_no_leftovers(&h);
        // A file where a directory is needed: refused too.
        std::fs::remove_file(r.join(dir)).unwrap();
        std::fs::write(r.join(dir), "").unwrap();
        let out = run_on(&r, &["--hostname", &h], &["true"]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is not a directory"),
            "{}",
            stderr(&out)
        );
    }
}

/// The container's first process holds no descriptor of minictr's, and its cwd is in the rootfs.
#[test]
fn only_stdio_reaches_the_container() {
    if !common::need_root("only_stdio_reaches_the_container") {
        return;
    }
    // This test process holds an extra descriptor without close-on-exec, as a careless caller would.
    let leak = std::fs::File::open("/etc/hostname").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leak);
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
    let out = common::minictr()
        .arg("run")
        .arg(rootfs())
        .args(["ls", "/proc/self/fd"])
        .output()
        .unwrap();
    drop(leak);
    assert_ok(&out);
    // 0, 1, 2 and the directory ls itself opened to list them; nothing inherited.
    assert_eq!(common::stdout(&out), "0\n1\n2\n3\n");
    assert_eq!(
        sh(&[], "readlink /proc/1/cwd; cd /tmp && readlink /proc/1/cwd"),
        "/\n/tmp\n"
    );
}
