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
    let all = common::checkpoints(dirs.minictr(), "MINICTR_FAIL_AT", &[]);
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

/// A start refused because `first` holds what it asks for (`opts`): 125 naming the conflict
/// (`msg`), in the foreground and with -d, and nothing of it is left beside `first`: `ps -aq` lists
/// `first` alone, no cgroup, layer or veth of the refused one exists.
fn assert_refused_beside(dirs: &PrivateDirs, first: &str, opts: &[&str], msg: &str) {
    let rootfs = common::rootfs();
    for detach in [&["-d"][..], &[][..]] {
        let mut args = vec!["run", "--explain"];
        args.extend_from_slice(detach);
        args.extend_from_slice(opts);
        args.extend_from_slice(&[rootfs.to_str().unwrap(), "true"]);
        let out = dirs.cmd(&args);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        let id = id_from_explain(&out);
        assert_eq!(
            dirs.ids(),
            vec![first.to_string()],
            "{args:?}: only {first} is listed"
        );
        assert!(
            common::cgroups_of(&id).is_empty(),
            "{args:?}: cgroup of {id} left"
        );
        assert!(
            !dirs.data.join("containers").join(&id).exists(),
            "{args:?}: layer left"
        );
        let veth = format!("mc{id}");
        common::wait_until(10, "the veth of the refused start to go", || {
            !common::links().contains(&veth)
        });
    }
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
    assert_refused_beside(
        &dirs,
        &web,
        &["--name", "web"],
        "already in use by container",
    );
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
    assert_refused_beside(&dirs, &a, &["-p", "18081:80"], "already published");
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
