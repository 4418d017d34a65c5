//! Chapter 8 — many starts leave nothing behind: 1000 in a row and 50 at once. Each test gives minictr
//! runtime and data directories of its own, so "nothing left" means exactly that: empty directories.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Dirs {
    run: PathBuf,
    data: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Dirs {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique(name));
        let d = Dirs {
            run: base.join("run"),
            data: base.join("data"),
        };
        std::fs::create_dir_all(&d.run).unwrap();
        std::fs::create_dir_all(&d.data).unwrap();
        d
    }

    fn cmd(&self) -> Command {
        let mut c = common::minictr();
        c.env("MINICTR_RUN_DIR", &self.run)
            .env("MINICTR_DATA_DIR", &self.data);
        c
    }

    fn assert_empty(&self) {
        // The bridge, its NAT table and the (empty) address table stay for the next container, as
        // Docker's docker0 does; `network rm` removes them — and then nothing may be left.
        common::assert_ok(&self.cmd().args(["network", "rm"]).output().unwrap());
        let entries = |p: &Path| -> Vec<String> {
            std::fs::read_dir(p)
                .map(|r| {
                    r.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        // probes.json is the kernel-feature cache, kept for the boot on purpose (src/probe.rs).
        let left: Vec<String> = entries(&self.run)
            .into_iter()
            .filter(|e| e != "probes.json")
            .collect();
        assert_eq!(left, Vec::<String>::new(), "runtime directories left");
        assert_eq!(
            entries(&self.data.join("containers")),
            Vec::<String>::new(),
            "writable layers left"
        );
    }
}

#[test]
fn a_thousand_runs_in_a_row_leave_nothing() {
    if !common::need_root("a_thousand_runs_in_a_row_leave_nothing") {
        return;
    }
    let d = Dirs::new("seq");
    let prefix = common::unique("seq");
    for i in 0..1000 {
        let out = d
            .cmd()
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
    d.assert_empty();
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&prefix));
}

#[test]
fn fifty_at_once_leave_nothing() {
    if !common::need_root("fifty_at_once_leave_nothing") {
        return;
    }
    let d = Dirs::new("par");
    let prefix = common::unique("par");
    let kids: Vec<_> = (0..50)
        .map(|i| {
            d.cmd()
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
    d.assert_empty();
}
