//! Chapter 3 — user namespaces: container root is an unprivileged host uid; image files stay owned
//! by host root through the idmapped root; volumes show the mapping (plain) or hide it (`:idmap`).

mod common;

use common::{
    assert_no_leftovers, assert_ok, rootfs, rootfs_copy, run, run_on, sh, stderr, unique,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The host start of the default range, derived the way `userns::plan` documents it: root's range in
/// /etc/subuid (resp. /etc/subgid) when it has one of at least 65536 ids, else 100000.
fn default_start(file: &str) -> u32 {
    let content = std::fs::read_to_string(file).unwrap_or_default();
    content
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            (f.len() == 3 && (f[0] == "root" || f[0] == "0")).then_some(f)
        })
        .find_map(|f| {
            let (start, count) = (f[1].parse::<u32>().ok()?, f[2].parse::<u32>().ok()?);
            (count >= 65536).then_some(start)
        })
        .unwrap_or(100_000)
}

/// `/proc/self/uid_map` text as (inside, outside, len) triples.
fn parse_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let n: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (n[0], n[1], n[2])
        })
        .collect()
}

/// The options that make a container write to the rootfs itself (not an overlay on top of it), if
/// this minictr has an overlay stage.
fn direct_rootfs_opts() -> Vec<&'static str> {
    let help = common::minictr().args(["run", "--help"]).output().unwrap();
    if common::stdout(&help).contains("--no-overlay") {
        vec!["--no-overlay"]
    } else {
        vec![]
    }
}

/// A world-writable scratch directory (container root is an unprivileged host uid).
fn open_dir(name: &str) -> PathBuf {
    let d = common::scratch(name);
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    d
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn the_default_maps_are_the_configured_range_never_the_identity() {
    if !common::need_root("the_default_maps_are_the_configured_range_never_the_identity") {
        return;
    }
    let out = sh(
        &[],
        "cat /proc/self/uid_map; echo -; cat /proc/self/gid_map; echo -; cat /proc/self/setgroups",
    );
    let parts: Vec<&str> = out.split("-\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let (u, g) = (
        default_start("/etc/subuid") as u64,
        default_start("/etc/subgid") as u64,
    );
    assert_eq!(parse_map(parts[0]), [(0, u, 65536)]);
    assert_eq!(parse_map(parts[1]), [(0, g, 65536)]);
    assert_ne!(u, 0);
    // As host root minictr writes gid_map itself, so setgroups stays allowed.
    assert_eq!(parts[2].trim(), "allow");
    // Root inside, with HOME, and every id inside is a host id in the range.
    assert_eq!(sh(&[], "id -u; id -g; echo $HOME"), "0\n0\n/root\n");
}

#[test]
fn the_host_sees_the_containers_processes_as_the_mapped_uid() {
    if !common::need_root("the_host_sees_the_containers_processes_as_the_mapped_uid") {
        return;
    }
    let u = default_start("/etc/subuid");
    for (opts, inside_uid, host_uid) in [
        (vec![], 0u32, u),
        (vec!["-u", "1000:1000"], 1000, u + 1000),
        (
            vec!["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"],
            0,
            200000,
        ),
    ] {
        let h = unique("hostuid");
        let mut child = common::spawn_sh(&h, &opts, &rootfs(), "id -u; exec sleep 9138");
        assert_eq!(common::read_line(&mut child), inside_uid.to_string());
        let pid = common::container_pid(&h);
        common::wait_until(10, "the container to exec sleep", || {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep"))
        });
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap()
                .to_string()
        };
        let want = format!("{host_uid}\t{host_uid}\t{host_uid}\t{host_uid}");
        assert_eq!(line("Uid:"), format!("Uid:\t{want}"), "{opts:?}");
        assert_eq!(line("Gid:"), format!("Gid:\t{want}"), "{opts:?}");
        // Root inside has its capabilities only within its own user namespace.
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        assert!(!parse_map(&uid_map).contains(&(0, 0, 4294967295)));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert_eq!(common::wait_bounded(&mut child, 10).code(), Some(137));
        assert_no_leftovers(&h);
    }
}

/// Container root edits the image's files; on disk they stay owned by host root (0:0), because the
/// rootfs is seen through an idmapped mount.
#[test]
fn image_files_written_by_container_root_stay_host_root_owned() {
    if !common::need_root("image_files_written_by_container_root_stay_host_root_owned") {
        return;
    }
    let r = rootfs_copy("idmap-root");
    let opts = direct_rootfs_opts();
    let out = run_on(
        &r,
        &opts,
        &["sh", "-c", "ls -ln /etc/motd; echo 'added' >> /etc/motd; echo x > /usr/bin/x; mkdir /home/alice; ls -ln /usr/bin/x"],
    );
    assert_ok(&out);
    let text = common::stdout(&out);
    // Inside, image files show as root's (not nobody 65534).
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!((f[2], f[3]), ("0", "0"), "{text}");
    }
    // (With an overlay stage, --no-overlay above makes the writes land in the image itself.)
    assert!(std::fs::read_to_string(r.join("etc/motd"))
        .unwrap()
        .contains("added"));
    assert_eq!(owner(&r.join("etc/motd")), (0, 0));
    assert_eq!(owner(&r.join("usr/bin/x")), (0, 0));
    assert_eq!(owner(&r.join("home/alice")), (0, 0));
}

/// A plain volume shows the mapping: what container root creates is owned by the mapped host uid.
/// An `:idmap` volume hides it: the file is owned by host root, like an image file.
#[test]
fn volume_files_are_owned_by_the_mapped_uid_or_by_host_root_with_idmap() {
    if !common::need_root("volume_files_are_owned_by_the_mapped_uid_or_by_host_root_with_idmap") {
        return;
    }
    let h = unique("volown");
    let (u, g) = (default_start("/etc/subuid"), default_start("/etc/subgid"));
    let plain = open_dir(&format!("{h}-plain"));
    let idm = common::scratch(&format!("{h}-idmap")); // 0755 root: only host root may write
    std::fs::write(idm.join("by-host-root"), "x").unwrap();
    let out = sh(
        &[
            "--hostname",
            &h,
            "-v",
            &format!("{}:/plain", plain.display()),
            "-v",
            &format!("{}:/idm:idmap", idm.display()),
        ],
        "touch /plain/f /idm/f; mkdir /idm/d; chown 1000:1000 /idm/d; ls -ln /idm/by-host-root",
    );
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        (f[2], f[3]),
        ("0", "0"),
        "host root's file seen inside an :idmap volume: {out}"
    );
    assert_eq!(owner(&plain.join("f")), (u, g));
    assert_eq!(owner(&idm.join("f")), (0, 0));
    assert_eq!(owner(&idm.join("d")), (1000, 1000));
    // :ro,idmap — mapped and read-only.
    let out = run(
        &["-v", &format!("{}:/idm:ro,idmap", idm.display())],
        &["sh", "-c", "ls -ln /idm/f && touch /idm/g"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!idm.join("g").exists());
    // A single file, idmapped.
    let out = sh(
        &[
            "-v",
            &format!("{}:/etc/x.conf:idmap", idm.join("by-host-root").display()),
        ],
        "ls -ln /etc/x.conf",
    );
    assert_eq!(out.split_whitespace().nth(2), Some("0"), "{out}");
    // Without a user namespace there is nothing to map into.
    let out = run(
        &[
            "--userns=host",
            "-v",
            &format!("{}:/idm:idmap", idm.display()),
        ],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(":idmap` volumes need a user namespace"),
        "{}",
        stderr(&out)
    );
    assert_no_leftovers(&h);
}

#[test]
fn userns_host_maps_every_id() {
    if !common::need_root("userns_host_maps_every_id") {
        return;
    }
    let out = sh(
        &["--userns=host"],
        "cat /proc/self/uid_map; readlink /proc/self/ns/user",
    );
    let mut l = out.lines();
    assert_eq!(parse_map(l.next().unwrap()), [(0, 0, 4294967295)]);
    let host = std::fs::read_link("/proc/thread-self/ns/user").unwrap();
    assert_eq!(l.next().unwrap(), host.to_str().unwrap());
    // --uidmap makes no sense then.
    let out = run(&["--userns=host", "--uidmap", "0:200000:65536"], &["true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
}

#[test]
fn custom_maps_are_used() {
    if !common::need_root("custom_maps_are_used") {
        return;
    }
    let h = unique("custom");
    let dir = open_dir(&h);
    let out = sh(
        &[
            "--hostname",
            &h,
            "--uidmap",
            "0:200000:65536",
            "--gidmap",
            "0:300000:65536",
            "-v",
            &format!("{}:/v", dir.display()),
        ],
        "cat /proc/self/uid_map /proc/self/gid_map; touch /v/f",
    );
    assert_eq!(parse_map(&out), [(0, 200000, 65536), (0, 300000, 65536)]);
    assert_eq!(owner(&dir.join("f")), (200000, 300000));
    // Two ranges, and only --uidmap given: the gid map follows it.
    let out = sh(
        &["--uidmap", "0:200000:1000", "--uidmap", "1000:400000:1000"],
        "cat /proc/self/uid_map; echo -; cat /proc/self/gid_map",
    );
    let parts: Vec<&str> = out.split("-\n").collect();
    assert_eq!(
        parse_map(parts[0]),
        [(0, 200000, 1000), (1000, 400000, 1000)]
    );
    assert_eq!(parse_map(parts[1]), parse_map(parts[0]));
    assert_no_leftovers(&h);
}

#[test]
fn bad_maps_exit_125_with_a_clear_message() {
    if !common::need_root("bad_maps_exit_125_with_a_clear_message") {
        return;
    }
    for (args, want) in [
        (
            vec!["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"],
            "overlap inside the container",
        ),
        (
            vec!["--uidmap", "0:100000:10", "--uidmap", "100:100005:10"],
            "overlap on the host",
        ),
        (
            vec!["--uidmap", "0:4294967290:100"],
            "goes past the largest id",
        ),
        (vec!["--uidmap", "0:0:4294967295"], "identity of all ids"),
        (vec!["--gidmap", "0:0:4294967295"], "identity of all ids"),
        (vec!["--uidmap", "0:100000"], "invalid id map"),
        (vec!["--uidmap", "a:b:c"], "invalid id map"),
        (vec!["--uidmap", "0:100000:0"], "has length 0"),
        (vec!["--uidmap=-1:100000:1"], "invalid id map"),
        (
            vec!["--uidmap", "1:100000:10"],
            "no uid map for container uid 0",
        ),
        (vec!["--userns=bogus"], "invalid --userns"),
    ] {
        let h = unique("badmap");
        let out = common::minictr()
            .args(["run", "--hostname", &h])
            .args(&args)
            .arg(rootfs())
            .arg("true")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.contains("(hint: "),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert_no_leftovers(&h);
    }
}

/// With a user namespace: /dev/pts works (a pty can be opened), -u works, and HOME follows the user.
#[test]
fn pts_user_and_home_work_in_the_user_namespace() {
    if !common::need_root("pts_user_and_home_work_in_the_user_namespace") {
        return;
    }
    // Opening /dev/ptmx allocates /dev/pts/0 in the container's own devpts.
    let out = sh(
        &[],
        "exec 3<>/dev/ptmx; ls /dev/pts; stat -c '%u %g %a' /dev/pts/0",
    );
    // Owned by root:tty (gid 5, mapped) with mode 620, as in Docker.
    assert_eq!(out, "0\nptmx\n0 5 620\n");
    assert_eq!(
        sh(&["-u", "nobody"], "id -u; echo $HOME"),
        "65534\n/nonexistent\n"
    );
    assert_eq!(sh(&["-u", "0"], "echo $HOME"), "/root\n");
}
