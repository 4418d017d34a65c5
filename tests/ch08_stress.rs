//! Chapter 8 — many starts leave nothing behind: 1000 in a row and 50 at once. Each test gives minictr
//! runtime and data directories of its own, so "nothing left" means exactly that: empty directories.

mod common;

use common::PrivateDirs;
use std::process::Stdio;

/// Nothing is left in `d`: no container, and after `network rm` no network state either.
fn assert_all_gone(d: &PrivateDirs) {
    // The bridge, its NAT table and the (empty) address table stay for the next container, as
    // Docker's docker0 does; `network rm` removes them — and then nothing may be left but the
    // kernel probes' cache of this boot.
    common::assert_ok(&d.cmd(&["network", "rm"]));
    d.assert_empty("after the runs");
    let left: Vec<String> = std::fs::read_dir(&d.run)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "probes.json")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(left, Vec::<String>::new(), "left in the runtime directory");
}

#[test]
fn a_thousand_runs_in_a_row_leave_nothing() {
    if !common::need_root("a_thousand_runs_in_a_row_leave_nothing") {
        return;
    }
    let d = PrivateDirs::new("seq");
    let prefix = common::unique("seq");
    for i in 0..1000 {
        let out = d
            .minictr()
            .args(["run", "--hostname", &format!("{prefix}-{i}")])
            .arg(common::rootfs())
            .arg("true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {i} failed: {:?}: {}",
            out.status,
            common::stderr(&out)
        );
    }
    assert_all_gone(&d);
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&prefix));
}

#[test]
fn fifty_at_once_leave_nothing() {
    if !common::need_root("fifty_at_once_leave_nothing") {
        return;
    }
    let d = PrivateDirs::new("par");
    let prefix = common::unique("par");
    let kids: Vec<_> = (0..50)
        .map(|i| {
            d.minictr()
                .args(["run", "--hostname", &format!("{prefix}-{i}")])
                .arg(common::rootfs())
                .args([
                    "sh",
                    "-c",
                    "echo $(hostname) > /tmp/me; sleep 0.5; cat /tmp/me",
                ])
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
    assert_all_gone(&d);
}
