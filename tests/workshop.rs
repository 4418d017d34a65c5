//! The workshop's checks (workshop/check.sh N runs `chNN_` of this file with MINICTR_TEST_UNTIL=N):
//! a few fast tests per exercise of chapters 1–8, each failing with a message that names the mistake
//! it caught. The full suite runs them too, with every stage on (what users get). Which test checks
//! which exercise: workshop/exercises.tsv.
//!
//! At level 1 the container has no root filesystem of its own (`--until 1` runs the command in the
//! host's files), so chapter 1's tests use only what both the host and busybox have.

mod common;

use common::{assert_ok, need_root, rootfs, run, stderr, stdout, unique};
use std::process::Output;

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// `sh -c SCRIPT` with these options; its stdout, or a failure that shows minictr's own error.
fn sh_out(opts: &[&str], script: &str) -> String {
    let out = run(opts, &["sh", "-c", script]);
    assert_ok(&out);
    stdout(&out)
}

/// Lines of the container's own /proc/self/mountinfo: (mount point, options, super options).
fn mountinfo(opts: &[&str]) -> Vec<(String, String, String)> {
    sh_out(opts, "cat /proc/self/mountinfo")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len() - 1);
            (
                f[4].to_string(),
                f[5].to_string(),
                f.get(sep + 3).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

/// A value of the container's /proc/self/status (e.g. "CapBnd").
fn status_field(opts: &[&str], field: &str) -> String {
    let out = run(opts, &["cat", "/proc/self/status"]);
    // Without no_new_privs the kernel refuses the seccomp filter to a process that has dropped
    // CAP_SYS_ADMIN (seccomp(2)): minictr then fails (125) while installing it.
    let err = stderr(&out);
    assert!(
        out.status.success() || !err.contains("seccomp filter"),
        "no_new_privs must be set before seccomp (an unprivileged process may only install a filter with no_new_privs): {}",
        err.trim()
    );
    assert_ok(&out);
    let out = stdout(&out);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status:\n{out}"))
        .trim()
        .to_string()
}

// --- chapter 1: namespaces ------------------------------------------------------------------

#[test]
fn ch01_clone_the_command_is_pid_1_of_its_own_pid_namespace() {
    if !need_root("ch01_clone_the_command_is_pid_1_of_its_own_pid_namespace") {
        return;
    }
    let pid = sh_out(&[], "echo $$");
    assert_eq!(
        pid.trim(),
        "1",
        "the command is not PID 1: was CLONE_NEWPID among clone3's flags?"
    );
}

#[test]
fn ch01_clone_the_hostname_is_the_containers_own() {
    if !need_root("ch01_clone_the_hostname_is_the_containers_own") {
        return;
    }
    let h = unique("ws-uts");
    let inside = sh_out(&["--hostname", &h], "cat /proc/sys/kernel/hostname");
    assert_eq!(inside.trim(), h, "the container does not see its hostname");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(
        host.trim(),
        h,
        "the host's hostname changed: was CLONE_NEWUTS among clone3's flags?"
    );
}

#[test]
fn ch01_exit_status_passes_the_commands_code_through() {
    if !need_root("ch01_exit_status_passes_the_commands_code_through") {
        return;
    }
    let out = run(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(
        code(&out),
        Some(3),
        "`exit 3` in the container must make minictr exit 3: {}",
        stderr(&out)
    );
}

#[test]
fn ch01_exit_status_a_signal_death_is_128_plus_n() {
    if !need_root("ch01_exit_status_a_signal_death_is_128_plus_n") {
        return;
    }
    let h = unique("ws-kill");
    let mut child = common::spawn_sh(&h, &[], &rootfs(), "echo ready; sleep 60");
    assert_eq!(common::read_line(&mut child), "ready");
    let pid = common::container_pid(&h);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = common::wait_bounded(&mut child, 20);
    assert_eq!(
        st.code(),
        Some(137),
        "PID 1 killed by SIGKILL must make minictr exit 128+9 = 137, as a shell reports it (a signal death reported as 0 or 9?)"
    );
}

// --- chapter 2: the root filesystem ---------------------------------------------------------

#[test]
fn ch02_pivot_root_the_image_is_slash_and_the_old_root_is_gone() {
    if !need_root("ch02_pivot_root_the_image_is_slash_and_the_old_root_is_gone")
        || !common::needs_chapter(2, "ch02_pivot_root")
    {
        return;
    }
    let out = sh_out(&[], "test -x /bin/busybox && echo busybox");
    assert_eq!(out.trim(), "busybox", "/ is not the busybox image");
    let roots = mountinfo(&[]).iter().filter(|m| m.0 == "/").count();
    assert_eq!(
        roots, 1,
        "{roots} mounts on / in the container's mount table: the old root is still attached (umount2(\".\", MNT_DETACH) after pivot_root)"
    );
}

#[test]
fn ch02_pivot_root_not_chroot() {
    if !need_root("ch02_pivot_root_not_chroot") || !common::needs_chapter(2, "ch02_pivot_root") {
        return;
    }
    // The kernel refuses a new user namespace to a chrooted process (EPERM): only a real
    // pivot_root passes. Seccomp off: Docker's profile refuses unshare anyway.
    let out = run(&["--no-seccomp"], &["unshare", "-U", "true"]);
    assert_eq!(
        code(&out),
        Some(0),
        "`unshare -U true` failed in the container ({}): the kernel refuses a user namespace to a process whose root is not its mount namespace's root — chroot instead of pivot_root, or the old root left attached?",
        stderr(&out).trim()
    );
}

#[test]
fn ch02_proc_is_the_containers_own_and_nosuid_nodev_noexec() {
    if !need_root("ch02_proc_is_the_containers_own_and_nosuid_nodev_noexec")
        || !common::needs_chapter(2, "ch02_proc")
    {
        return;
    }
    let n = sh_out(&[], "ls /proc | grep -c '^[0-9]'");
    assert!(
        n.trim().parse::<u32>().unwrap_or(99) < 5,
        "{} processes in /proc: it shows the host's PID namespace, not a fresh procfs",
        n.trim()
    );
    let mi = mountinfo(&[]);
    let proc_ = mi
        .iter()
        .find(|m| m.0 == "/proc")
        .unwrap_or_else(|| panic!("no mount on /proc: {mi:?}"));
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(
            proc_.1.split(',').any(|o| o == flag),
            "/proc is mounted without {flag} ({}): mount it with MS_NOSUID|MS_NODEV|MS_NOEXEC",
            proc_.1
        );
    }
}

// --- chapter 3: user namespaces -------------------------------------------------------------

#[test]
fn ch03_id_maps_container_root_is_not_host_root() {
    if !need_root("ch03_id_maps_container_root_is_not_host_root")
        || !common::needs_chapter(3, "ch03_id_maps")
    {
        return;
    }
    let out = sh_out(&[], "cat /proc/self/uid_map /proc/self/gid_map; id -u");
    let lines: Vec<Vec<u64>> = out
        .lines()
        .take(2)
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .collect();
    for (what, l) in ["uid_map", "gid_map"].iter().zip(&lines) {
        assert_eq!(l.len(), 3, "{what}: {out}");
        assert_eq!(l[0], 0, "{what} does not start at 0 inside: {out}");
        assert_ne!(
            l[1], 0,
            "{what} maps container root to host root (an identity map?): {out}"
        );
        assert!(
            l[2] >= 65536,
            "{what} maps only {} ids (65536 are needed for an image's users): {out}",
            l[2]
        );
    }
    assert_eq!(out.lines().nth(2), Some("0"), "not root inside: {out}");
}

#[test]
fn ch03_become_root_uid_gid_0_and_no_host_groups() {
    if !need_root("ch03_become_root_uid_gid_0_and_no_host_groups")
        || !common::needs_chapter(3, "ch03_become_root")
    {
        return;
    }
    let uid = status_field(&[], "Uid");
    let gid = status_field(&[], "Gid");
    assert!(
        uid.split_whitespace().all(|x| x == "0"),
        "not uid 0 inside (setresuid(0, 0, 0)): Uid: {uid}"
    );
    assert!(
        gid.split_whitespace().all(|x| x == "0"),
        "not gid 0 inside (setresgid(0, 0, 0)): Gid: {gid}"
    );
    // minictr started with a supplementary group (4, "adm"): the container must not keep it.
    let mut cmd = common::minictr();
    cmd.args(["run"])
        .arg(rootfs())
        .args(["cat", "/proc/self/status"]);
    // SAFETY: setgroups between fork and exec, with a valid one-element array.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| match libc::setgroups(1, [4 as libc::gid_t].as_ptr()) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    let out = cmd.output().unwrap();
    assert_ok(&out);
    let groups = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Groups:").map(|g| g.trim().to_string()))
        .unwrap_or_default();
    assert_eq!(
        groups, "",
        "minictr's supplementary groups reached the container (shown as 65534): setgroups must clear them before exec (become_root's setgroups(0, []), then step 11 sets the user's own)"
    );
}

// --- chapter 4: cgroups ---------------------------------------------------------------------

const PIDS_MAX: &str =
    "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max";

#[test]
fn ch04_create_the_limit_is_written() {
    if !need_root("ch04_create_the_limit_is_written") || !common::needs_chapter(4, "ch04_create") {
        return;
    }
    let out = sh_out(&["--pids-limit", "17"], PIDS_MAX);
    assert_eq!(
        out.trim(),
        "17",
        "pids.max of the container's cgroup is not --pids-limit's 17: the cgroup was made but the limit never written"
    );
}

#[test]
fn ch04_attach_the_limit_holds_for_the_container() {
    if !need_root("ch04_attach_the_limit_holds_for_the_container")
        || !common::needs_chapter(4, "ch04_attach")
    {
        return;
    }
    // An inner sh forks until refused (busybox sh gives up on a refused fork); the outer one
    // counts the processes by its own glob, which needs no fork.
    let script = "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done' 2>/dev/null; set -- /proc/[0-9]*; echo $#";
    let out = run(&["--pids-limit", "6"], &["sh", "-c", script]);
    let n: u32 = stdout(&out).trim().parse().unwrap_or(0);
    assert!(
        (1..=6).contains(&n),
        "{n} processes ran under --pids-limit 6 ({}): is the container in its cgroup (v1: the child writes 0 to each tasks file; v2: clone3 CLONE_INTO_CGROUP) and the limit written?",
        stderr(&out).trim()
    );
}

// --- chapter 5: overlay ---------------------------------------------------------------------

#[test]
fn ch05_overlay_writes_land_in_the_layer_not_the_image() {
    if !need_root("ch05_overlay_writes_land_in_the_layer_not_the_image")
        || !common::needs_chapter(5, "ch05_overlay")
    {
        return;
    }
    let f = unique("ws-write");
    // A wrong answer may write into the image itself: put it back when the test ends, also when it
    // fails, so the next check (and every other test) starts from the untouched image.
    let image = RestoreImage::new(&f);
    let out = run(
        &[],
        &[
            "sh",
            "-c",
            &format!("echo hi > /{f} && cat /{f} && echo x >> /etc/passwd"),
        ],
    );
    assert!(
        out.status.success(),
        "writing in the container failed (exit {}): is the overlay writable — upperdir and workdir given? {}",
        code(&out).map_or("by a signal".to_string(), |c| c.to_string()),
        stderr(&out).trim()
    );
    assert_eq!(stdout(&out).trim(), "hi");
    assert!(!image.touched(), "{WRITES_REACH_THE_IMAGE}");
    let mi = mountinfo(&[]);
    assert!(
        mi.iter().any(|m| m.0 == "/" && m.2.contains("upperdir")),
        "/ is not an overlay with an upperdir: {mi:?}"
    );
}

/// The chapter 5 tests write /etc/passwd, add a file and remove /bin/ls in the container: with a
/// wrong answer those writes reach the image itself. This puts the image back as it was when the
/// test ends, also when it fails, so the next check (and every other test) starts from it untouched.
/// The two tests take turns (a lock), so neither records the other's stray writes as the original.
struct RestoreImage {
    _turn: std::sync::MutexGuard<'static, ()>,
    passwd: Vec<u8>,
    ls: std::path::PathBuf,
    added: std::path::PathBuf,
}

impl RestoreImage {
    fn new(added: &str) -> RestoreImage {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        RestoreImage {
            _turn: TURN.lock().unwrap_or_else(|e| e.into_inner()),
            passwd: std::fs::read(rootfs().join("etc/passwd")).unwrap(),
            ls: std::fs::read_link(rootfs().join("bin/ls")).unwrap(),
            added: rootfs().join(added),
        }
    }

    /// Whether a write of the container reached the image.
    fn touched(&self) -> bool {
        self.added.exists()
            || std::fs::read(rootfs().join("etc/passwd")).ok().as_ref() != Some(&self.passwd)
            || std::fs::symlink_metadata(rootfs().join("bin/ls")).is_err()
    }
}

impl Drop for RestoreImage {
    fn drop(&mut self) {
        let passwd = rootfs().join("etc/passwd");
        if std::fs::read(&passwd).ok().as_ref() != Some(&self.passwd) {
            let _ = std::fs::write(&passwd, &self.passwd);
        }
        let ls = rootfs().join("bin/ls");
        if std::fs::symlink_metadata(&ls).is_err() {
            let _ = std::os::unix::fs::symlink(&self.ls, &ls);
        }
        let _ = std::fs::remove_file(&self.added);
    }
}

const WRITES_REACH_THE_IMAGE: &str = "writes reach the image: the image must be a read-only lower layer, every write goes to the container's upper layer";

/// `minictr rm -f NAME` when the test ends, also when it fails half-way: no kept layer is left.
struct Kept(String);

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = common::minictr().args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn ch05_diff_lists_added_changed_deleted() {
    if !need_root("ch05_diff_lists_added_changed_deleted") || !common::needs_chapter(5, "ch05_diff")
    {
        return;
    }
    let name = unique("ws-diff");
    let _kept = Kept(name.clone());
    let image = RestoreImage::new("added");
    let out = run(
        &["--name", &name],
        &[
            "sh",
            "-c",
            "echo new > /added && echo more >> /etc/passwd && rm /bin/ls",
        ],
    );
    assert_ok(&out);
    assert!(!image.touched(), "{WRITES_REACH_THE_IMAGE}");
    let d = common::minictr().args(["diff", &name]).output().unwrap();
    assert_ok(&d);
    let d = stdout(&d);
    for (line, what) in [
        ("A /added", "a new file is A"),
        ("C /etc/passwd", "a changed file of the image is C"),
        (
            "D /bin/ls",
            "a deleted file (a whiteout: a 0:0 character device) is D",
        ),
    ] {
        assert!(
            d.lines().any(|l| l == line),
            "minictr diff lacks {line:?} ({what}):\n{d}"
        );
    }
}

// --- chapter 6: network ---------------------------------------------------------------------

/// The address added as a /32 (without the subnet's prefix): minictr then cannot add the default
/// route via the bridge's address, which is not on-link.
const WITHOUT_PREFIX: &str = "eth0's address was added without the subnet's prefix (a /32: ifa_prefixlen not set), so the gateway is not on-link and the default route via it cannot be added";

fn without_prefix(out: &Output) -> bool {
    let err = stderr(out);
    !out.status.success() && err.contains("default route") && err.contains("unreachable")
}

#[test]
fn ch06_veth_eth0_is_up_inside_and_reaches_the_bridge() {
    if !need_root("ch06_veth_eth0_is_up_inside_and_reaches_the_bridge")
        || !common::needs_chapter(6, "ch06_veth")
    {
        return;
    }
    let out = run(
        &["--network", "bridge"],
        &[
            "sh",
            "-c",
            "ip -4 addr show eth0; gw=$(ip route | awk '/default/ {print $3}'); echo gw=$gw; ping -c 1 -W 3 $gw",
        ],
    );
    assert!(
        !without_prefix(&out),
        "the veth pair may be right, but the network could not be finished: {WITHOUT_PREFIX}\n{}",
        stderr(&out).trim()
    );
    assert!(
        out.status.success(),
        "eth0 cannot reach the bridge: is the veth's host end enslaved to the bridge (IFLA_MASTER), and its peer moved into the container (IFLA_NET_NS_FD)?\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn ch06_address_eth0_has_its_address_and_prefix() {
    if !need_root("ch06_address_eth0_has_its_address_and_prefix")
        || !common::needs_chapter(6, "ch06_address")
    {
        return;
    }
    let out = run(
        &["--network", "bridge"],
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    );
    assert!(
        !without_prefix(&out),
        "{WITHOUT_PREFIX}\n{}",
        stderr(&out).trim()
    );
    assert_ok(&out);
    let out = stdout(&out);
    let addr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("eth0 has no IPv4 address (RTM_NEWADDR): {out}"));
    let prefix: u8 = addr.rsplit('/').next().unwrap().parse().unwrap();
    assert!(
        prefix < 32,
        "eth0's address {addr} has prefix {prefix}: the subnet's prefix (ifa_prefixlen) is needed for the bridge to be on-link"
    );
}

// --- chapter 7: hardening -------------------------------------------------------------------

#[test]
fn ch07_bounding_set_is_docker_default() {
    if !need_root("ch07_bounding_set_is_docker_default")
        || !common::needs_chapter(7, "ch07_bounding")
    {
        return;
    }
    let bnd = status_field(&[], "CapBnd");
    assert_eq!(
        bnd, "00000000a80425fb",
        "the bounding set is not Docker's 14 capabilities: PR_CAPBSET_DROP for every other one (bounding set left whole?)"
    );
}

#[test]
fn ch07_capabilities_effective_is_docker_default() {
    if !need_root("ch07_capabilities_effective_is_docker_default")
        || !common::needs_chapter(7, "ch07_capabilities")
    {
        return;
    }
    let eff = status_field(&["--cap-drop", "CHOWN"], "CapEff");
    assert_eq!(
        eff, "00000000a80425fa",
        "the effective set is not Docker's default minus CHOWN (capset: permitted = effective = keep, inheritable 0)"
    );
    let inh = status_field(&[], "CapInh");
    assert_eq!(inh, "0000000000000000", "the inheritable set must be empty");
}

#[test]
fn ch07_lock_down_no_new_privs_and_seccomp() {
    if !need_root("ch07_lock_down_no_new_privs_and_seccomp")
        || !common::needs_chapter(7, "ch07_lock_down")
    {
        return;
    }
    assert_eq!(
        status_field(&[], "NoNewPrivs"),
        "1",
        "no_new_privs is off: prctl(PR_SET_NO_NEW_PRIVS, 1) before exec"
    );
    assert_eq!(
        status_field(&[], "Seccomp"),
        "2",
        "no seccomp filter is installed (Seccomp: 2 = filter mode)"
    );
    let out = run(&[], &["unshare", "-U", "true"]);
    assert_ne!(
        code(&out),
        Some(0),
        "`unshare -U` ran: seccomp allows everything (Docker's profile refuses unshare)"
    );
}

// --- chapter 8: lifecycle -------------------------------------------------------------------

#[test]
fn ch08_init_the_command_is_pid_2_and_its_code_comes_back() {
    if !need_root("ch08_init_the_command_is_pid_2_and_its_code_comes_back")
        || !common::needs_chapter(8, "ch08_init")
    {
        return;
    }
    let out = run(&["--init"], &["sh", "-c", "echo $$; exit 5"]);
    assert_eq!(
        stdout(&out).trim(),
        "2",
        "with --init the command is PID 2 (init forks it): {}",
        stderr(&out)
    );
    assert_eq!(
        code(&out),
        Some(5),
        "init must exit with the command's code"
    );
}

#[test]
fn ch08_reap_orphans_do_not_stay_zombies() {
    if !need_root("ch08_reap_orphans_do_not_stay_zombies") || !common::needs_chapter(8, "ch08_reap")
    {
        return;
    }
    // The middle sh exits at once: its `sleep 0` becomes an orphan, re-parented to PID 1 (init).
    let script = "sh -c 'sleep 0 & exit 0'; sleep 1; cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ' || true";
    let out = sh_out(&["--init"], script);
    assert_eq!(
        out.trim(),
        "0",
        "zombies are left in the container: the init must wait for every child (waitpid(-1)), not only the command"
    );
}

#[test]
fn ch08_reap_signals_reach_the_command() {
    if !need_root("ch08_reap_signals_reach_the_command") || !common::needs_chapter(8, "ch08_reap") {
        return;
    }
    let h = unique("ws-term");
    let mut child = common::spawn_sh(&h, &["--init"], &rootfs(), "echo ready; exec sleep 60");
    assert_eq!(common::read_line(&mut child), "ready");
    common::container_pid(&h);
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = common::wait_within(&mut child, 8);
    assert_eq!(
        st.map(|s| s.code()),
        Some(Some(143)),
        "SIGTERM to minictr did not end the command with 143: the init must pass signals on to it"
    );
}
