//! Chapter 8 — many starts leave nothing behind: 1000 in a row and 50 at once.

mod common;

use std::process::{Command, Stdio};

fn no_trace_of(prefix: &str) {
    for dir in ["/run/minictr", "/var/lib/minictr/containers"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let s = std::fs::read_to_string(e.path().join("state.json")).unwrap_or_default();
            assert!(!s.contains(prefix), "{:?} was left behind", e.path());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(prefix));
}

#[test]
fn a_thousand_runs_in_a_row_leave_nothing() {
    if !common::need_root("a_thousand_runs_in_a_row_leave_nothing") {
        return;
    }
    let prefix = common::unique("seq");
    let before = std::fs::read_dir("/var/lib/minictr/containers")
        .map(|r| r.count())
        .unwrap_or(0);
    for i in 0..1000 {
        let host = format!("{prefix}-{i}");
        let st = common::minictr()
            .args(["run", "--hostname", &host])
            .arg(common::rootfs())
            .arg("true")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "run {i} failed: {st:?}");
    }
    no_trace_of(&prefix);
    let after = std::fs::read_dir("/var/lib/minictr/containers")
        .map(|r| r.count())
        .unwrap_or(0);
    assert!(
        after <= before,
        "writable layers accumulated: {before} → {after}"
    );
}

#[test]
fn fifty_at_once_leave_nothing() {
    if !common::need_root("fifty_at_once_leave_nothing") {
        return;
    }
    let prefix = common::unique("par");
    let kids: Vec<_> = (0..50)
        .map(|i| {
            Command::new(common::bin())
                .args(["run", "--hostname", &format!("{prefix}-{i}")])
                .arg(common::rootfs())
                .args([
                    "sh",
                    "-c",
                    "echo $(hostname) > /tmp/me; sleep 0.5; cat /tmp/me",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let out = k.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "container {i}: {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{prefix}-{i}")
        );
    }
    no_trace_of(&prefix);
}
