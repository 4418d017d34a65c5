//! Chapter 7 — hardening, proven on real containers: capabilities, no_new_privs, rlimits, seccomp,
//! masked and read-only paths, devices, descriptors, mounts and the symlink escapes (behaviours
//! 11–16 and 20–24 of the security note), with the user namespace and without it (--userns=host).

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;

/// Both ways to run: container root is an unprivileged host user, or the host's root itself.
const MODES: [&[&str]; 2] = [&[], &["--userns=host"]];

const DOCKER_14: &str = "00000000a80425fb";
const ZERO: &str = "0000000000000000";

fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn caps(opts: &[&str]) -> [String; 5] {
    let s = common::sh(opts, "cat /proc/self/status");
    ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"].map(|k| field(&s, k))
}

fn with<'a>(mode: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [mode, more].concat()
}

#[test]
fn capabilities_are_dockers_14() {
    if !common::need_root("capabilities_are_dockers_14") {
        return;
    }
    for mode in MODES {
        let [bnd, eff, prm, inh, amb] = caps(mode);
        assert_eq!(
            (bnd.as_str(), eff.as_str(), prm.as_str()),
            (DOCKER_14, DOCKER_14, DOCKER_14),
            "{mode:?}"
        );
        assert_eq!((inh.as_str(), amb.as_str()), (ZERO, ZERO), "{mode:?}");
        // A non-root user keeps the bounding set but holds nothing (as `docker run -u 1000`).
        let [bnd, eff, prm, inh, amb] = caps(&with(mode, &["-u", "1000"]));
        assert_eq!(bnd, DOCKER_14, "{mode:?}");
        assert_eq!(
            [eff, prm, inh, amb],
            [ZERO; 4].map(String::from),
            "{mode:?}"
        );
    }
}

#[test]
fn cap_add_and_cap_drop_change_exactly_what_they_say() {
    if !common::need_root("cap_add_and_cap_drop_change_exactly_what_they_say") {
        return;
    }
    for mode in MODES {
        let [bnd, eff, ..] = caps(&with(mode, &["--cap-add", "sys_admin"]));
        assert_eq!(
            (bnd.as_str(), eff.as_str()),
            ("00000000a82425fb", "00000000a82425fb")
        );
        let [bnd, ..] = caps(&with(
            mode,
            &["--cap-drop", "CAP_NET_RAW", "--cap-drop", "mknod"],
        ));
        assert_eq!(
            bnd,
            format!("{:016x}", 0xa80425fbu64 & !(1 << 13) & !(1 << 27))
        );
        let [bnd, eff, ..] = caps(&with(mode, &["--cap-drop", "ALL", "--cap-add", "Chown"]));
        assert_eq!(
            (bnd.as_str(), eff.as_str()),
            ("0000000000000001", "0000000000000001")
        );
        let [bnd, eff, ..] = caps(&with(mode, &["--cap-drop", "all"]));
        assert_eq!((bnd.as_str(), eff.as_str()), (ZERO, ZERO));
        // SYS_ADMIN also opens the syscalls seccomp gates behind it: mount works.
        let out = common::sh(
            &with(mode, &["--cap-add", "SYS_ADMIN"]),
            "mount -t tmpfs t /mnt && echo mounted",
        );
        assert_eq!(out.trim(), "mounted", "{mode:?}");
    }
}

#[test]
fn bad_hardening_options_exit_125_before_anything_exists() {
    if !common::need_root("bad_hardening_options_exit_125_before_anything_exists") {
        return;
    }
    let cases: [(&[&str], &str); 7] = [
        (
            &["--cap-add", "NOPE"],
            "unknown capability \"NOPE\" in --cap-add",
        ),
        (&["--cap-drop", "SYS_ADMINX"], "unknown capability"),
        (
            &["--ulimit", "nofile=2048:1024"],
            "soft limit is above the hard limit",
        ),
        (&["--ulimit", "files=1"], "unknown ulimit"),
        (
            &["--security-opt", "seccomp=/nonexistent/profile.json"],
            "cannot read the seccomp profile",
        ),
        (&["--security-opt", "apparmor=x"], "invalid --security-opt"),
        (
            &["--security-opt", "no-new-privileges=maybe"],
            "invalid --security-opt",
        ),
    ];
    for (opts, msg) in cases {
        let host = common::unique("bad-opt");
        let out = common::run(&with(&["--hostname", &host], opts), &["true"]);
        common::assert_refused(&out, msg, &opts);
        common::assert_no_leftovers(&host);
    }
}

#[test]
fn mount_unshare_and_nsenter_are_refused() {
    if !common::need_root("mount_unshare_and_nsenter_are_refused") {
        return;
    }
    for mode in MODES {
        let tag = common::unique("mnt");
        let before = common::host_mounts();
        let script = format!(
            "mount -t tmpfs {tag} /mnt 2>/dev/null && echo mount; \
             unshare -U true 2>/dev/null && echo unshare; \
             nsenter -t 1 -m true 2>/dev/null && echo nsenter; echo done"
        );
        let out = common::sh(mode, &script);
        assert_eq!(out.trim(), "done", "{mode:?}: allowed: {out}");
        assert_eq!(before.len(), common::host_mounts().len());
    }
}

#[test]
fn seccomp_is_on_and_unconfined_turns_it_off() {
    if !common::need_root("seccomp_is_on_and_unconfined_turns_it_off") {
        return;
    }
    for mode in MODES {
        let s = common::sh(mode, "cat /proc/self/status");
        assert_eq!(field(&s, "Seccomp"), "2", "{mode:?}");
        // unshare(CLONE_NEWUSER) needs no capability: only the filter refuses it, with EPERM.
        let out = common::run(mode, &["unshare", "-U", "true"]);
        assert_eq!(out.status.code(), Some(1), "{mode:?}");
        assert!(
            common::stderr(&out).contains("Operation not permitted"),
            "{}",
            common::stderr(&out)
        );
        for off in [
            &["--security-opt", "seccomp=unconfined"][..],
            &["--no-seccomp"],
        ] {
            let opts = with(mode, off);
            let s = common::sh(&opts, "cat /proc/self/status");
            assert_eq!(field(&s, "Seccomp"), "0", "{opts:?}");
            common::assert_ok(&common::run(&opts, &["unshare", "-U", "true"]));
            // …and nothing else changed: still Docker's 14, still no_new_privs.
            assert_eq!(field(&s, "CapBnd"), DOCKER_14);
            assert_eq!(field(&s, "NoNewPrivs"), "1");
        }
    }
}

#[test]
fn a_docker_json_profile_is_honoured() {
    if !common::need_root("a_docker_json_profile_is_honoured") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("profile"));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let opts = ["--security-opt", opt.as_str()];
    let out = common::run(&opts, &["mkdir", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("Permission denied"),
        "{}",
        common::stderr(&out)
    );
    // The rest of the profile allows everything: unshare works, touch works.
    common::assert_ok(&common::run(
        &opts,
        &["sh", "-c", "touch /tmp/f && unshare -U true"],
    ));
    // A broken profile is refused at validation.
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
    let out = common::run(&opts, &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        common::stderr(&out).contains("invalid seccomp profile"),
        "{}",
        common::stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_new_privs_and_ulimits() {
    if !common::need_root("no_new_privs_and_ulimits") {
        return;
    }
    for mode in MODES {
        let out = common::sh(
            mode,
            "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn",
        );
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["NoNewPrivs:", "1", "1024", "1024"],
            "{mode:?}"
        );
        let out = common::sh(
            &with(mode, &["--security-opt", "no-new-privileges=false"]),
            "grep NoNewPrivs /proc/self/status",
        );
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["NoNewPrivs:", "0"]
        );
        let out = common::sh(
            &with(mode, &["--ulimit", "nofile=512:1000", "--ulimit", "core=0"]),
            "ulimit -n; ulimit -Hn; ulimit -c",
        );
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["512", "1000", "0"],
            "{mode:?}"
        );
    }
}

#[test]
fn masked_paths_are_empty() {
    if !common::need_root("masked_paths_are_empty") {
        return;
    }
    // /proc/kcore exists only with CONFIG_PROC_KCORE; /proc/interrupts is masked the same way.
    let mut files = vec!["/proc/keys", "/proc/timer_list", "/proc/interrupts"];
    if Path::new("/proc/kcore").exists() {
        files.push("/proc/kcore");
    }
    for mode in MODES {
        for f in &files {
            let out = common::sh(mode, &format!("echo $(stat -c '%F %t:%T' {f}) $(wc -c < {f}); umount {f} 2>/dev/null && echo unmounted; :"));
            assert_eq!(out.trim(), "character special file 1:3 0", "{mode:?} {f}");
        }
        let out = common::sh(mode, "ls -A /sys/firmware | wc -l; ls -A /proc/acpi 2>/dev/null | wc -l; touch /sys/firmware/x 2>/dev/null && echo written; :");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["0", "0"],
            "{mode:?}"
        );
    }
    // --no-masks shows what the masks hide (the host's interrupt counters).
    let out = common::sh(&["--no-masks"], "wc -c < /proc/interrupts");
    assert!(out.trim().parse::<u64>().unwrap() > 0);
}

#[test]
fn read_only_paths_refuse_writes() {
    if !common::need_root("read_only_paths_refuse_writes") {
        return;
    }
    let host_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for mode in MODES {
        // `: >` opens for writing and writes nothing: the only write to these files a test may do.
        let out = common::run(mode, &["sh", "-c", "( : > /proc/sys/kernel/core_pattern ) && echo written; ( : > /proc/sysrq-trigger ) && echo written; :"]);
        common::assert_ok(&out);
        assert_eq!(common::stdout(&out), "", "{mode:?}");
        let err = common::stderr(&out);
        assert!(
            err.contains("core_pattern: Read-only file system"),
            "{mode:?}: {err}"
        );
        if Path::new("/proc/sysrq-trigger").exists() {
            assert!(
                err.contains("sysrq-trigger: Read-only file system"),
                "{mode:?}: {err}"
            );
        }
        let out = common::sh(mode, "awk '$5 ~ /^\\/proc\\/(sys|bus|fs|irq)$/ {print $5, substr($6, 1, 2)}' /proc/self/mountinfo | sort");
        assert!(out.contains("/proc/sys ro"), "{mode:?}: {out}");
        assert!(out.lines().all(|l| l.ends_with(" ro")), "{mode:?}: {out}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        host_pattern
    );
}

#[test]
fn kernel_filesystems_are_mounted_safely() {
    if !common::need_root("kernel_filesystems_are_mounted_safely") {
        return;
    }
    for mode in MODES {
        let out = common::sh(mode, "awk '{print $5, $6}' /proc/self/mountinfo");
        let opts = |point: &str| -> Vec<String> {
            out.lines()
                .rfind(|l| l.split(' ').next() == Some(point))
                .unwrap_or_else(|| panic!("{point} not mounted: {out}"))
                .split(' ')
                .nth(1)
                .unwrap()
                .split(',')
                .map(String::from)
                .collect()
        };
        assert!(opts("/sys").contains(&"ro".to_string()), "{mode:?}");
        for p in ["/proc", "/dev/shm"] {
            let o = opts(p);
            for f in ["nosuid", "nodev", "noexec"] {
                assert!(o.contains(&f.to_string()), "{mode:?} {p} {o:?}");
            }
        }
        if out.lines().any(|l| l.starts_with("/sys/fs/cgroup ")) {
            assert!(
                opts("/sys/fs/cgroup").contains(&"ro".to_string()),
                "{mode:?}"
            );
        }
    }
}

#[test]
fn dev_holds_only_the_default_devices_and_mknod_is_refused() {
    if !common::need_root("dev_holds_only_the_default_devices_and_mknod_is_refused") {
        return;
    }
    for mode in MODES {
        let out = common::sh(mode, "ls /dev");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            [
                "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                "stdout", "tty", "urandom", "zero"
            ]
        );
        // A block device (the host's first disk, sda or vda) and /dev/mem: not created, not read.
        let out = common::sh(
            mode,
            "for n in 'b 8 0' 'b 254 0' 'c 1 1'; do mknod /tmp/node $n 2>/dev/null && echo created && head -c1 /tmp/node >/dev/null 2>&1 && echo read; rm -f /tmp/node; done; \
             mkfifo /tmp/fifo && echo fifo",
        );
        assert_eq!(out.trim(), "fifo", "{mode:?}");
    }
}

#[test]
fn only_stdio_reaches_the_container() {
    if !common::need_root("only_stdio_reaches_the_container") {
        return;
    }
    // An fd minictr inherits without close-on-exec (as a careless caller would leave it).
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let leaked = nix::unistd::dup(&f).unwrap();
    nix::fcntl::fcntl(
        &leaked,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    for mode in MODES {
        // `; :` keeps sh as PID 1 (a lone command would be exec'd and list its own directory fd).
        let out = common::sh(
            &with(mode, &["-w", "/tmp"]),
            "ls /proc/1/fd; readlink /proc/1/cwd; :",
        );
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["0", "1", "2", "/tmp"],
            "{mode:?} (fd {} leaked?)",
            leaked.as_raw_fd()
        );
    }
}

#[test]
fn mounts_are_the_containers_own_and_never_reach_the_host() {
    if !common::need_root("mounts_are_the_containers_own_and_never_reach_the_host") {
        return;
    }
    for mode in MODES {
        let out = common::sh(mode, "cat /proc/self/mountinfo");
        let root_line = out
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .expect("a / mount");
        assert!(!root_line.contains("shared:"), "{root_line}");
        for l in out.lines() {
            let point = l.split(' ').nth(4).unwrap();
            assert!(
                point == "/"
                    || ["/proc", "/sys", "/dev"]
                        .iter()
                        .any(|p| point.starts_with(p))
                    // the network stage's files (chapter 6)
                    || ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&point),
                "a host mount is visible: {l}"
            );
        }
        // A mount made inside (with SYS_ADMIN granted for it) while we look at the host's table.
        let tag = common::unique("prop");
        let mut child = common::minictr()
            .arg("run")
            .args(mode)
            .args(["--cap-add", "SYS_ADMIN"])
            .arg(common::rootfs())
            .args([
                "sh",
                "-c",
                &format!("mount -t tmpfs {tag} /mnt && echo mounted && sleep 2"),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "mounted");
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!host.contains(&tag), "{tag} leaked to the host");
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn a_symlinked_proc_or_dev_is_refused() {
    if !common::need_root("a_symlinked_proc_or_dev_is_refused") {
        return;
    }
    for dir in ["proc", "dev"] {
        let rootfs = common::rootfs_copy(&common::unique(&format!("symlink-{dir}")));
        let host_target =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique(&format!("host-{dir}")));
        std::fs::create_dir_all(&host_target).unwrap();
        std::fs::remove_dir(rootfs.join(dir)).unwrap();
        std::os::unix::fs::symlink(&host_target, rootfs.join(dir)).unwrap();
        let out = common::run_on(&rootfs, &[], &["true"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            common::stderr(&out).contains(&format!("/{dir} is a symlink")),
            "{}",
            common::stderr(&out)
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(host_target.to_str().unwrap()),
            "something was mounted on {host_target:?}"
        );
        assert_eq!(std::fs::read_dir(&host_target).unwrap().count(), 0);
        std::fs::remove_dir_all(&rootfs).unwrap();
        std::fs::remove_dir_all(&host_target).unwrap();
    }
}

#[test]
fn a_volume_target_symlinked_out_of_the_rootfs_stays_inside() {
    if !common::need_root("a_volume_target_symlinked_out_of_the_rootfs_stays_inside") {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("vol-escape"));
    let host_target = tmp.join("host-target");
    let src = tmp.join("src");
    std::fs::create_dir_all(&host_target).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "from the volume\n").unwrap();
    let rootfs = common::rootfs_copy(&common::unique("vol-escape"));
    // Absolute and ../.. symlinks: on the host both lead to host_target.
    std::os::unix::fs::symlink(&host_target, rootfs.join("mnt/abs")).unwrap();
    let rel = format!("../../../../../../../../..{}", host_target.display());
    std::os::unix::fs::symlink(&rel, rootfs.join("mnt/rel")).unwrap();
    // While the path the links name does not exist inside the rootfs, the target is refused
    // (a dangling link is never guessed at, and never followed out).
    for link in ["abs", "rel"] {
        let vol = format!("{}:/mnt/{link}/data", src.display());
        let out = common::run_on(&rootfs, &["-v", &vol], &["true"]);
        assert_eq!(out.status.code(), Some(125), "{link}");
        assert!(common::stderr(&out)
            .contains("is a symlink to a path that does not exist in the rootfs"));
        assert_eq!(
            std::fs::read_dir(&host_target).unwrap().count(),
            0,
            "{link}: the host directory was touched"
        );
    }
    // Once it exists inside the rootfs, the links resolve there: the volume lands inside.
    let inside = rootfs.join(host_target.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    for link in ["abs", "rel"] {
        let vol = format!("{}:/mnt/{link}/data", src.display());
        let out = common::run_on(
            &rootfs,
            &["-v", &vol],
            &["cat", &format!("{}/data/hello", host_target.display())],
        );
        common::assert_ok(&out);
        assert_eq!(common::stdout(&out), "from the volume\n");
        assert_eq!(
            std::fs::read_dir(&host_target).unwrap().count(),
            0,
            "{link}: the host directory was touched"
        );
    }
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn container_root_cannot_write_a_host_root_binary_with_the_user_namespace() {
    if !common::need_root("container_root_cannot_write_a_host_root_binary_with_the_user_namespace")
    {
        return;
    }
    // CVE-2019-5736 overwrote the runtime's binary from a container whose root was host root. With a
    // user namespace, container root is an unprivileged host uid: even a binary reached through a
    // volume (here a copy of minictr, to keep the real one safe) cannot be opened for writing.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("exe"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(common::bin(), dir.join("minictr")).unwrap();
    let vol = format!("{}:/host", dir.display());
    let out = common::run(&["-v", &vol], &["sh", "-c", ": >> /host/minictr"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        common::stderr(&out).contains("Permission denied"),
        "{}",
        common::stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_security_turns_every_wall_off_and_explain_names_each() {
    if !common::need_root("no_security_turns_every_wall_off_and_explain_names_each") {
        return;
    }
    let s = common::sh(
        &["--no-security"],
        "cat /proc/self/status; wc -c < /proc/interrupts",
    );
    assert_eq!(field(&s, "Seccomp"), "0");
    assert_eq!(field(&s, "NoNewPrivs"), "0");
    assert_ne!(field(&s, "CapBnd"), DOCKER_14);
    let out = common::run(&["--explain"], &["true"]);
    common::assert_ok(&out);
    let err = common::stderr(&out);
    for want in [
        "[ch07 hardening] prctl(PR_SET_DUMPABLE, 0)",
        "[ch07 hardening] setrlimit(RLIMIT_NOFILE, {1024, 1024})",
        "[ch07 hardening] prctl(PR_CAPBSET_DROP",
        "[ch07 hardening] capset(permitted=effective=0xa80425fb",
        "[ch07 hardening] close_range(3, ~0, CLOSE_RANGE_CLOEXEC)",
        "[ch07 hardening] prctl(PR_SET_NO_NEW_PRIVS, 1)",
        "[ch07 hardening] seccomp(SECCOMP_SET_MODE_FILTER, ",
        "/proc/keys",
    ] {
        assert!(err.contains(want), "--explain lacks {want:?}:\n{err}");
    }
    let seccomp_at = err.find("seccomp(SECCOMP_SET_MODE_FILTER").unwrap();
    let execve_at = err.find("execve(").unwrap();
    assert!(
        seccomp_at < execve_at,
        "seccomp goes up last, right before execve"
    );
}

#[test]
fn selftest_passes_on_the_busybox_rootfs() {
    if !common::needs_chapter(8, "selftest_passes_on_the_busybox_rootfs") {
        return;
    }
    if !common::need_root("selftest_passes_on_the_busybox_rootfs") {
        return;
    }
    // Both ways: minictr's default network (the bridge, in the test's network namespace) and none.
    for net in [&[][..], &["--network", "none"][..]] {
        let out = common::minictr()
            .arg("selftest")
            .args(net)
            .arg(common::rootfs())
            .output()
            .unwrap();
        let text = common::stdout(&out);
        assert!(out.status.success(), "{text}\n{}", common::stderr(&out));
        for want in [
            "PASS  [ch07] CapBnd is 00000000a80425fb",
            "PASS  [ch02] the root is its mount namespace's root (pivot_root, not chroot)",
            "PASS  [ch05] the image is unchanged",
            "PASS  [ch08] --init reaps orphans",
        ] {
            assert!(text.contains(want), "{net:?}: {want:?} missing:\n{text}");
        }
        // As root the cgroup stage runs here: chapter 4 is checked, not skipped.
        assert!(
            text.contains("PASS  [ch04] -m 64m --pids-limit 20"),
            "{text}"
        );
        assert!(!text.contains("FAIL"), "{text}");
    }
    // A ROOTFS that does not exist is a usage error (125), not a failed check.
    let out = common::minictr()
        .args(["selftest", "/nonexistent-rootfs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn exec_gets_the_containers_walls() {
    if !common::need_root("exec_gets_the_containers_walls") {
        return;
    }
    // `minictr exec` enters a running container: the new process must be as restricted as the
    // first one (runc applies the container's capabilities, seccomp and no_new_privs to exec too).
    let name = common::unique("exec-walls");
    let out = common::minictr()
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--cap-add",
            "NET_ADMIN",
            "--ulimit",
            "nofile=300:400",
        ])
        .arg(common::rootfs())
        .args(["sleep", "60"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let exec = |script: &str| {
        common::minictr()
            .args(["exec", &name, "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = exec("cat /proc/self/status; ulimit -n");
    let status = common::stdout(&out);
    let rm = || {
        common::minictr()
            .args(["rm", "-f", &name])
            .output()
            .unwrap();
    };
    if !out.status.success() {
        rm();
        panic!("exec failed: {}", common::stderr(&out));
    }
    let checks = [
        (field(&status, "CapBnd"), "00000000a80435fb"),
        (field(&status, "CapEff"), "00000000a80435fb"),
        (field(&status, "NoNewPrivs"), "1"),
        (field(&status, "Seccomp"), "2"),
    ];
    let refused = exec("mount -t tmpfs t /mnt 2>/dev/null && echo mount; unshare -U true 2>/dev/null && echo unshare; echo done");
    rm();
    for (got, want) in checks {
        assert_eq!(got, want, "{status}");
    }
    assert_eq!(status.lines().last(), Some("300"), "{status}");
    assert_eq!(common::stdout(&refused).trim(), "done");
}

#[test]
fn a_working_directory_through_proc_magic_links_is_refused() {
    if !common::need_root("a_working_directory_through_proc_magic_links_is_refused") {
        return;
    }
    // CVE-2024-21626: `-w /proc/self/fd/N` on a leaked host directory fd put the container's cwd
    // outside its root. The workdir is resolved inside the rootfs without magic links.
    for w in [
        "/proc/self/fd/3",
        "/proc/self/fd/4",
        "/proc/1/cwd",
        "/proc/self/root/..",
    ] {
        let host = common::unique("cwd");
        let out = common::run(&["--hostname", &host, "-w", w], &["pwd"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "-w {w}: {}",
            common::stdout(&out)
        );
        assert!(
            common::stderr(&out).contains("working directory"),
            "{}",
            common::stderr(&out)
        );
        common::assert_no_leftovers(&host);
    }
}
