//! Chapter 1 — namespaces, the first process, exit codes, signals and input checks: the real binary
//! on the real busybox rootfs, asserting what the container sees and what the host sees.

mod common;

use common::{assert_no_leftovers, assert_ok, rootfs, run, sh, stderr, stdout, unique};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;

const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// The test's own namespace (per thread: the harness moved this test thread into a network
/// namespace of its own, /proc/self would show the main thread's).
fn host_ns(ns: &str) -> String {
    std::fs::read_link(format!("/proc/thread-self/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn the_first_process_is_pid_1_and_ps_shows_only_the_container() {
    if !common::needs_chapter(
        2,
        "the_first_process_is_pid_1_and_ps_shows_only_the_container",
    ) {
        return;
    }
    if !common::need_root("the_first_process_is_pid_1_and_ps_shows_only_the_container") {
        return;
    }
    let h = unique("pid1");
    // (`; echo end`: otherwise sh execs the last command and ps itself would be pid 1)
    let out = sh(&["--hostname", &h], "echo $$; ps -o pid,comm; echo end");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    let procs: Vec<Vec<&str>> = lines
        .skip(1) // ps header
        .filter(|l| *l != "end")
        .map(|l| l.split_whitespace().collect())
        .collect();
    // sh (pid 1) and ps itself, nothing of the host.
    assert_eq!(procs.len(), 2, "ps saw more than the container:\n{out}");
    assert_eq!(procs[0], ["1", "sh"], "{out}");
    assert_eq!(procs[1][1], "ps", "{out}");
    assert_no_leftovers(&h);
}

#[test]
fn every_namespace_differs_from_the_hosts() {
    if !common::needs_chapter(3, "every_namespace_differs_from_the_hosts") {
        return;
    }
    if !common::need_root("every_namespace_differs_from_the_hosts") {
        return;
    }
    let script: String = NAMESPACES
        .iter()
        .map(|ns| format!("readlink /proc/self/ns/{ns}; "))
        .collect();
    let out = sh(&[], &script);
    let inside: Vec<&str> = out.lines().collect();
    assert_eq!(inside.len(), NAMESPACES.len(), "{out}");
    for (ns, link) in NAMESPACES.iter().zip(inside) {
        assert!(link.starts_with(&format!("{ns}:[")), "{ns}: {link}");
        assert_ne!(
            link,
            host_ns(ns),
            "the container shares the host's {ns} namespace"
        );
    }
}

#[test]
fn stage_switches_keep_the_hosts_namespace() {
    if !common::needs_chapter(2, "stage_switches_keep_the_hosts_namespace") {
        return;
    }
    if !common::need_root("stage_switches_keep_the_hosts_namespace") {
        return;
    }
    for (flag, ns) in [
        ("--no-pid", "pid"),
        ("--no-net", "net"),
        ("--no-uts", "uts"),
        ("--no-ipc", "ipc"),
        ("--no-cgroupns", "cgroup"),
    ] {
        let out = sh(&[flag], &format!("readlink /proc/self/ns/{ns}"));
        assert_eq!(
            out.trim(),
            host_ns(ns),
            "{flag} should keep the host's {ns} namespace"
        );
        // The other namespaces stay private.
        let other = if ns == "net" { "uts" } else { "net" };
        let out = sh(&[flag], &format!("readlink /proc/self/ns/{other}"));
        assert_ne!(
            out.trim(),
            host_ns(other),
            "{flag} also dropped the {other} namespace"
        );
    }
}

#[test]
fn no_net_shows_the_hosts_interfaces_and_network_none_only_lo() {
    if !common::needs_chapter(
        2,
        "no_net_shows_the_hosts_interfaces_and_network_none_only_lo",
    ) {
        return;
    }
    if !common::need_root("no_net_shows_the_hosts_interfaces_and_network_none_only_lo") {
        return;
    }
    let ifaces = |text: &str| -> Vec<String> {
        text.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|s| s.trim().to_string())
            .collect()
    };
    // A container with the default network gives the test's namespace a bridge besides lo.
    let mut inside = ifaces(&sh(&[], "cat /proc/net/dev"));
    inside.sort();
    assert_eq!(inside, ["eth0", "lo"]);
    let host = ifaces(&std::fs::read_to_string("/proc/thread-self/net/dev").unwrap());
    assert!(host.len() > 1, "the host has only lo? {host:?}");
    let inside = ifaces(&sh(&["--network", "none"], "cat /proc/net/dev"));
    assert_eq!(inside, ["lo"]);
    // lo is up (step 10): its flags in sysfs say IFF_UP.
    let flags = sh(&["--network", "none"], "cat /sys/class/net/lo/flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down inside");
    // The host ends (mc…) of the earlier containers' veths go with their network namespaces a
    // moment after they exit (chapter 6), so either snapshot may still show one: compare the rest.
    let settled = |mut v: Vec<String>| {
        v.retain(|i| !i.starts_with("mc"));
        v.sort();
        v
    };
    let shared = settled(ifaces(&sh(&["--no-net"], "cat /proc/net/dev")));
    assert_eq!(shared, settled(host));
}

#[test]
fn no_pid_shows_the_hosts_processes() {
    if !common::need_root("no_pid_shows_the_hosts_processes") {
        return;
    }
    let out = sh(&["--no-pid"], "echo $$; cat /proc/1/comm");
    let mut l = out.lines();
    assert_ne!(l.next(), Some("1"), "{out}");
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(l.next(), Some(host_init.trim()), "{out}");
    let n: usize = sh(&["--no-pid"], "ps -o pid | wc -l")
        .trim()
        .parse()
        .unwrap();
    assert!(n > 5, "--no-pid: ps sees only {n} lines");
}

#[test]
fn hostname_is_the_containers_and_the_hosts_is_unchanged() {
    if !common::need_root("hostname_is_the_containers_and_the_hosts_is_unchanged") {
        return;
    }
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let h = unique("uts");
    let out = sh(&["--hostname", &h], "hostname; echo $HOSTNAME");
    assert_eq!(out, format!("{h}\n{h}\n"));
    // Default: the 12-hex-digit container id.
    let out = sh(&[], "hostname; echo $HOSTNAME");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 2, "{out}");
    assert_eq!(l[0], l[1]);
    assert_eq!(l[0].len(), 12, "{out}");
    assert!(
        l[0].bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{out}"
    );
    // --no-uts: the host's name, and $HOSTNAME agrees with it.
    let out = sh(&["--no-uts"], "hostname; echo $HOSTNAME");
    let host = host_before.trim();
    assert_eq!(out, format!("{host}\n{host}\n"));
    // --hostname makes no sense without a UTS namespace.
    let out = run(&["--no-uts", "--hostname", &h], &["true"]);
    assert_eq!(code(&out), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-uts"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before
    );
    assert_no_leftovers(&h);
}

#[test]
fn exit_codes_follow_dockers_convention() {
    if !common::need_root("exit_codes_follow_dockers_convention") {
        return;
    }
    assert_eq!(code(&run(&[], &["true"])), Some(0));
    assert_eq!(code(&run(&[], &["sh", "-c", "exit 42"])), Some(42));
    // PID 1 of a PID namespace ignores signals it has no handler for, even SIGKILL, when they come
    // from inside: `kill -9 $$` does nothing. (The 137 of a killed PID 1 is proven from the host below.)
    assert_eq!(
        code(&run(&[], &["sh", "-c", "kill -9 $$; exit 7"])),
        Some(7)
    );
    let out = run(&[], &["/etc/passwd"]); // exists, not executable
    assert_eq!(code(&out), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("/etc/passwd"), "{}", stderr(&out));
    let out = run(&[], &["/bin"]);
    assert_eq!(code(&out), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run /bin: it is a directory"),
        "{}",
        stderr(&out)
    );
    let out = run(&[], &["no-such-command"]);
    assert_eq!(code(&out), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no-such-command: command not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = run(&[], &["/bin/no-such-file"]);
    assert_eq!(code(&out), Some(127), "{}", stderr(&out));
    let out = run(&["--hostname=bad_name"], &["true"]);
    assert_eq!(code(&out), Some(125), "{}", stderr(&out));
}

/// The container's first process SIGKILLed from the host (by the pid minictr recorded in
/// state.json): minictr reports 137, and every other process of the container dies with it.
#[test]
fn killing_pid_1_kills_the_container_and_minictr_exits_137() {
    if !common::need_root("killing_pid_1_kills_the_container_and_minictr_exits_137") {
        return;
    }
    let h = unique("kill1");
    let mut child = common::spawn_sh(
        &h,
        &[],
        &rootfs(),
        "sleep 9137 & sleep 9137 & echo ready; wait",
    );
    assert_eq!(common::read_line(&mut child), "ready");
    let pid = common::container_pid(&h);
    // The two sleeps, seen from the host: children of the container's pid 1.
    let kids: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");
    // (each is a forked sh until it has exec'd sleep)
    common::wait_until(10, "both children to exec sleep", || {
        kids.iter().all(|k| {
            std::fs::read_to_string(format!("/proc/{k}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\09137"))
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = common::wait_bounded(&mut child, 10);
    assert_eq!(st.code(), Some(137), "{st:?}");
    // The kernel kills the rest of the PID namespace when its init dies.
    common::wait_until(10, "the container's other processes to die", || {
        kids.iter().all(|k| {
            std::fs::read_to_string(format!("/proc/{k}/cmdline"))
                .map_or(true, |c| !c.starts_with("sleep\09137"))
        })
    });
    assert_no_leftovers(&h);
}

#[test]
fn sigterm_to_minictr_reaches_a_trap_in_the_container() {
    if !common::need_root("sigterm_to_minictr_reaches_a_trap_in_the_container") {
        return;
    }
    let h = unique("term");
    let mut child = common::spawn_sh(
        &h,
        &[],
        &rootfs(),
        "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
    );
    assert_eq!(common::read_line(&mut child), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = common::wait_bounded(&mut child, 10);
    assert_eq!(st.code(), Some(3), "{st:?} (signal {:?})", st.signal());
    assert_eq!(common::read_line(&mut child), "got TERM");
    assert_no_leftovers(&h);
}

#[test]
fn environment_defaults_overrides_and_host_values() {
    if !common::need_root("environment_defaults_overrides_and_host_values") {
        return;
    }
    let h = unique("env");
    let out = common::minictr()
        .env("MINICTR_TEST_FROM_HOST", "host value")
        .env("MINICTR_TEST_NOT_PASSED", "secret")
        .args([
            "run",
            "--hostname",
            &h,
            "-e",
            "A=1",
            "-e",
            "B=x=y",
            "-e",
            "PATH=/usr/bin:/bin",
        ])
        .args([
            "-e",
            "MINICTR_TEST_FROM_HOST",
            "-e",
            "MINICTR_TEST_UNSET_ON_HOST",
        ])
        .arg(rootfs())
        .arg("env")
        .output()
        .unwrap();
    assert_ok(&out);
    let env = stdout(&out);
    let mut vars: Vec<&str> = env.lines().filter(|l| !l.starts_with("TERM=")).collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "A=1",
            "B=x=y",
            "HOME=/root",
            &format!("HOSTNAME={h}") as &str,
            "MINICTR_TEST_FROM_HOST=host value",
            "PATH=/usr/bin:/bin",
        ],
        "{env}"
    );
    let out = sh(&[], "echo $PATH");
    assert_eq!(
        out.trim(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

#[test]
fn user_by_number_and_by_name() {
    if !common::needs_chapter(2, "user_by_number_and_by_name") {
        return;
    }
    if !common::need_root("user_by_number_and_by_name") {
        return;
    }
    assert_eq!(
        sh(&["-u", "1000:1000"], "id -u; id -g; echo $HOME"),
        "1000\n1000\n/\n"
    );
    assert_eq!(sh(&["-u", "1000"], "id -u; id -g"), "1000\n1000\n");
    // By name, from the container's /etc/passwd (busybox.sh writes nobody as 65534).
    assert_eq!(sh(&["-u", "nobody"], "id -un; id -u"), "nobody\n65534\n");
    let out = run(&["-u", "no-such-user"], &["true"]);
    assert_eq!(code(&out), Some(125));
    assert!(
        stderr(&out).contains("unable to find user no-such-user"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn arguments_after_the_command_are_passed_verbatim() {
    if !common::need_root("arguments_after_the_command_are_passed_verbatim") {
        return;
    }
    let out = run(&[], &["echo", "-n", "-e", "x\\ty"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "x\ty");
    let out = run(
        &[],
        &[
            "sh",
            "-c",
            "printf '[%s]' \"$@\"",
            "sh",
            "-a",
            "--b",
            "--hostname",
            "a b",
            "",
        ],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "[-a][--b][--hostname][a b][]");
}

#[test]
fn help_version_and_explain() {
    if !common::needs_chapter(2, "help_version_and_explain") {
        return;
    }
    let help = common::minictr().args(["run", "--help"]).output().unwrap();
    assert_ok(&help);
    assert!(
        stdout(&help).contains("minictr run ./rootfs /bin/sh"),
        "{}",
        stdout(&help)
    );
    let v = common::minictr().arg("--version").output().unwrap();
    assert_ok(&v);
    assert_eq!(
        stdout(&v).trim(),
        format!("minictr {}", env!("CARGO_PKG_VERSION"))
    );
    if !common::need_root("help_version_and_explain") {
        return;
    }
    let out = run(&["--explain"], &["true"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l
            .starts_with("[ch01 namespaces] clone3(flags=CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("[ch02 rootfs] ") && l.contains("pivot_root")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("[ch03 userns] ") && l.contains("uid_map")),
        "{err}"
    );
    // Every line is narration, with its chapter.
    for l in err.lines() {
        assert!(l.starts_with("[ch"), "not an --explain line: {l}");
    }
    let out = run(&[], &["true"]);
    assert_ok(&out);
    assert_eq!(stderr(&out), "", "minictr printed without --explain");
    assert_eq!(stdout(&out), "");
}

/// Every bad input: exit 125, one line naming the problem with a hint, and nothing left behind.
#[test]
fn bad_input_exits_125_with_one_line_and_leaves_nothing() {
    if !common::needs_chapter(2, "bad_input_exits_125_with_one_line_and_leaves_nothing") {
        return;
    }
    if !common::need_root("bad_input_exits_125_with_one_line_and_leaves_nothing") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().unwrap();
    let file = format!("{r}/etc/passwd");
    let long = "x".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["/nonexistent-minictr-rootfs", "true"],
            "rootfs /nonexistent-minictr-rootfs cannot be used",
        ),
        (vec![&file, "true"], "is not a directory"),
        (vec!["-e", "=x", r, "true"], "invalid environment variable"),
        (
            vec!["-e", "A B=1", r, "true"],
            "invalid environment variable",
        ),
        (vec!["-u", "a:b:c", r, "true"], "invalid user"),
        (vec!["-u", "1000:", r, "true"], "invalid user"),
        (vec!["-u", "4294967295", r, "true"], "out of range"),
        (vec!["--hostname=-bad", r, "true"], "invalid hostname"),
        (vec!["--hostname", "a_b", r, "true"], "invalid hostname"),
        (vec!["--hostname", &long, r, "true"], "invalid hostname"),
        (vec!["-v", "/tmp", r, "true"], "invalid volume"),
        (vec!["-v", "/tmp:rel", r, "true"], "not absolute"),
        (vec!["-v", "/tmp:/", r, "true"], "cannot mount over"),
        (vec!["-v", "/tmp:/x:rx", r, "true"], "invalid volume option"),
        (
            vec!["-v", "/nonexistent-minictr-src:/x", r, "true"],
            "volume source",
        ),
        (vec!["-v", "tmp:/x", r, "true"], "not absolute"),
        (vec!["-w", "rel", r, "true"], "invalid working directory"),
        (vec!["--userns=bogus", r, "true"], "invalid --userns"),
        (vec!["-u", "no-such-user", r, "true"], "unable to find user"),
        (vec![r, ""], "the command is an empty string"),
    ];
    for (args, want) in cases {
        let h = unique("bad");
        let mut cmd = common::minictr();
        cmd.arg("run");
        if !args.iter().any(|a| a.starts_with("--hostname")) {
            cmd.args(["--hostname", &h]);
        }
        let out = cmd.args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), Some(125), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
        assert!(
            err.starts_with("minictr: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(err.contains("(hint: "), "{args:?}: no hint: {err}");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_no_leftovers(&h);
    }
    // No command at all (a directory has no default command, unlike an image): 125 too, one line,
    // and nothing created.
    let out = common::minictr().args(["run", r]).output().unwrap();
    assert_eq!(code(&out), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no command: a root filesystem directory has no default command")
            && stderr(&out).contains("(hint: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stdin_and_stdout_are_passed_through() {
    if !common::need_root("stdin_and_stdout_are_passed_through") {
        return;
    }
    let mut child = common::minictr()
        .args(["run"])
        .arg(rootfs())
        .args(["sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "HELLO\n");
}

/// minictr itself SIGKILLed: the container dies with it (PR_SET_PDEATHSIG), and the runtime
/// directory it could not remove is cleaned by the next minictr command.
#[test]
fn a_sigkilled_minictr_takes_its_container_along_and_the_next_run_cleans_up() {
    if !common::need_root(
        "a_sigkilled_minictr_takes_its_container_along_and_the_next_run_cleans_up",
    ) {
        return;
    }
    let h = unique("mkill");
    let mut child = common::spawn_sh(&h, &[], &rootfs(), "echo ready; exec sleep 9140");
    assert_eq!(common::read_line(&mut child), "ready");
    let pid = common::container_pid(&h);
    child.kill().unwrap(); // SIGKILL to minictr
    let st = common::wait_bounded(&mut child, 10);
    assert_eq!(st.signal(), Some(9));
    common::wait_until(10, "the container to die with minictr", || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map_or(true, |c| !c.starts_with("sleep\09140"))
    });
    // The next container start cleans stale runtime directories first.
    assert_ok(&run(&[], &["true"]));
    assert_no_leftovers(&h);
}
