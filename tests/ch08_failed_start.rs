//! Chapter 8 — a failed start leaves nothing: whatever step fails, and however (a failure injected
//! at each checkpoint of the start sequence with the test-only MINICTR_FAIL_AT, or a natural one:
//! a taken name, a published port, a bad volume target, a command that cannot run), minictr exits
//! with its error and the host has no record, name, writable layer, cgroup or veth of it — in the
//! foreground and with -d. Each test has runtime and data directories of its own, so `ps -a` must
//! be empty.

mod common;

use common::PrivateDirs;
use std::process::Output;

/// The container id of a run, from `--explain`'s line about its runtime directory.
fn id_from_explain(out: &Output) -> String {
    let err = common::stderr(out);
    let line = err
        .lines()
        .find(|l| l.contains("the container's runtime directory"))
        .unwrap_or_else(|| panic!("no runtime directory line in:\n{err}"));
    line.split(['/', '"', '.'])
        .find(|w| w.len() == 12 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no id in {line:?}"))
        .to_string()
}

/// The checkpoints of a successful start, as `--explain` lists them with MINICTR_FAIL_AT set.
fn steps(dirs: &PrivateDirs) -> Vec<String> {
    let out = dirs
        .minictr()
        .env("MINICTR_FAIL_AT", "none")
        .args(["run", "--explain"])
        .arg(common::rootfs())
        .arg("true")
        .output()
        .unwrap();
    common::assert_ok(&out);
    common::stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("[ch08 lifecycle] step \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Nothing of container `id` is left: nothing `ps -a` or the directories show (see
/// [`PrivateDirs::assert_empty`]), no cgroup, no veth, no mount.
fn assert_gone(dirs: &PrivateDirs, id: &str, what: &str) {
    dirs.assert_empty(what);
    let cg = common::cgroups_of(id);
    assert!(cg.is_empty(), "{what}: cgroups left: {cg:?}");
    // The host end of the veth is deleted by a helper process while minictr exits (chapter 6).
    let veth = format!("mc{id}");
    common::wait_until(10, &format!("{what}: the veth {veth} to go"), || {
        !common::links().contains(&veth)
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(id),
        "{what}: a mount of {id} is left:\n{mounts}"
    );
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    if !common::need_root("a_failure_at_any_step_leaves_nothing") {
        return;
    }
    let dirs = PrivateDirs::new("failstep");
    let all = steps(&dirs);
    assert!(all.len() >= 8, "steps named: {all:?}");
    dirs.assert_empty("after a successful run");
    for detach in [false, true] {
        // Every reservation at once: a name (and so a kept layer), a published port, the bridge.
        let opts = ["--name", "failing", "-p", "127.0.0.1:18080:80"];
        for step in all.iter().filter(|s| *s != "teardown") {
            let what = format!(
                "{} failure at {step}",
                if detach { "-d" } else { "foreground" }
            );
            let mut c = dirs.minictr();
            c.env("MINICTR_FAIL_AT", step).args(["run", "--explain"]);
            if detach {
                c.arg("-d");
            }
            let out = c
                .args(opts)
                .arg(common::rootfs())
                .args(["sleep", "30"])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(125),
                "{what}: {}",
                common::stderr(&out)
            );
            assert!(
                common::stderr(&out).contains(&format!("failure injected at step \"{step}\"")),
                "{what}: {}",
                common::stderr(&out)
            );
            assert_gone(&dirs, &id_from_explain(&out), &what);
        }
    }
    // The name and the port were given back: the same run works now.
    let out = dirs.cmd(&[
        "run",
        "--name",
        "failing",
        "-p",
        "127.0.0.1:18080:80",
        common::rootfs().to_str().unwrap(),
        "true",
    ]);
    common::assert_ok(&out);
    let out = dirs.cmd(&["rm", "failing"]);
    common::assert_ok(&out);
    dirs.assert_empty("after rm");
}

/// `minictr run -d --name web` while "web" is taken: exit 125 and no second record (it used to stay
/// in `ps -a` as "exited (minictr died)", carrying the name).
#[test]
fn a_taken_name_leaves_nothing() {
    if !common::need_root("a_taken_name_leaves_nothing") {
        return;
    }
    let dirs = PrivateDirs::new("taken");
    let rootfs = common::rootfs();
    let r = rootfs.to_str().unwrap();
    let first = dirs.cmd(&["run", "-d", "--name", "web", r, "sleep", "30"]);
    common::assert_ok(&first);
    let web = common::stdout(&first).trim().to_string();
    for opts in [&["-d"][..], &[][..]] {
        let mut args = vec!["run", "--explain"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["--name", "web", r, "true"]);
        let out = dirs.cmd(&args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{opts:?}: {}",
            common::stderr(&out)
        );
        assert!(
            common::stderr(&out).contains("already in use by container"),
            "{opts:?}: {}",
            common::stderr(&out)
        );
        let id = id_from_explain(&out);
        assert_eq!(
            dirs.ids(),
            vec![web.clone()],
            "{opts:?}: only web is listed"
        );
        assert!(
            common::cgroups_of(&id).is_empty(),
            "{opts:?}: cgroup of {id} left"
        );
        assert!(!dirs.data.join("containers").join(&id).exists());
    }
    let ps = common::stdout(&dirs.cmd(&["ps", "-a"]));
    assert!(
        ps.lines()
            .nth(1)
            .is_some_and(|l| l.contains(" web ") && l.contains("Up ")),
        "{ps}"
    );
    common::assert_ok(&dirs.cmd(&["rm", "-f", "web"]));
    assert_gone(&dirs, &web, "after rm -f web");
}

/// A host port another container publishes: the second start fails with 125 and leaves nothing,
/// and the first keeps its port.
#[test]
fn a_published_port_leaves_nothing() {
    if !common::need_root("a_published_port_leaves_nothing") {
        return;
    }
    let dirs = PrivateDirs::new("port");
    let rootfs = common::rootfs();
    let r = rootfs.to_str().unwrap();
    let first = dirs.cmd(&["run", "-d", "-p", "18081:80", r, "sleep", "30"]);
    common::assert_ok(&first);
    let a = common::stdout(&first).trim().to_string();
    for opts in [&["-d"][..], &[][..]] {
        let mut args = vec!["run", "--explain"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["-p", "18081:80", r, "true"]);
        let out = dirs.cmd(&args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{opts:?}: {}",
            common::stderr(&out)
        );
        assert!(
            common::stderr(&out).contains("already published"),
            "{opts:?}: {}",
            common::stderr(&out)
        );
        let id = id_from_explain(&out);
        assert_eq!(
            dirs.ids(),
            vec![a.clone()],
            "{opts:?}: only the first is listed"
        );
        assert!(
            common::cgroups_of(&id).is_empty(),
            "{opts:?}: cgroup of {id} left"
        );
        let veth = format!("mc{id}");
        common::wait_until(10, "the veth of the failed start to go", || {
            !common::links().contains(&veth)
        });
    }
    // The first container still has its port: a third start on it fails the same way.
    let out = dirs.cmd(&["run", "-p", "18081:80", r, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    common::assert_ok(&dirs.cmd(&["rm", "-f", &a]));
    assert_gone(&dirs, &a, "after rm -f");
    // And now the port is free.
    common::assert_ok(&dirs.cmd(&["run", "-p", "18081:80", r, "true"]));
}

/// Failures inside the container's setup (a volume target that is a file, a command that cannot
/// run), in the foreground and with -d: minictr's exit status is the error's, nothing is left.
#[test]
fn setup_failures_in_the_child_leave_nothing() {
    if !common::need_root("setup_failures_in_the_child_leave_nothing") {
        return;
    }
    let dirs = PrivateDirs::new("childfail");
    let vol = common::scratch("childfail-vol");
    let v = format!("{}:/etc/passwd", vol.display());
    let rootfs = common::rootfs();
    let r = rootfs.to_str().unwrap();
    let cases: [(&[&str], &str, i32, &str); 3] = [
        (&["-v", &v, "--name", "vol"], "true", 125, "not a directory"),
        (
            &["--name", "noexec"],
            "/etc/passwd",
            126,
            "cannot run /etc/passwd",
        ),
        (
            &["--name", "missing"],
            "/nonexistent",
            127,
            "cannot run /nonexistent",
        ),
    ];
    for detach in [false, true] {
        for (opts, cmd, code, msg) in cases {
            let what = format!("{opts:?} {cmd} (-d: {detach})");
            let mut args = vec!["run", "--explain"];
            if detach {
                args.push("-d");
            }
            args.extend_from_slice(opts);
            args.extend_from_slice(&[r, cmd]);
            let out = dirs.cmd(&args);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{what}: {}",
                common::stderr(&out)
            );
            assert!(
                common::stderr(&out).contains(msg),
                "{what}: {}",
                common::stderr(&out)
            );
            assert_gone(&dirs, &id_from_explain(&out), &what);
        }
    }
}
