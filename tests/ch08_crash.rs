//! Chapter 8 — crash safety: minictr SIGKILLed at every step of the start sequence leaves nothing
//! behind once the next minictr command has run. The steps are the ones `--explain` lists when the
//! test-only variable MINICTR_CRASH_AT is set; at the named step minictr kills itself.
//! (One test in this file: it inspects host state that a concurrent test could clean first.)

mod common;

use std::process::Command;

fn steps(opts: &[&str]) -> Vec<String> {
    common::checkpoints(common::minictr(), "MINICTR_CRASH_AT", opts)
}

/// Everything of container `id` (hostname `host`) that could be left on the host.
fn leftovers(id: &str, host: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [common::run_dir(), common::data_dir().join("containers")] {
        if dir.join(id).exists() {
            found.push(format!("{}/{id}", dir.display()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts
        .lines()
        .filter(|l| l.contains(id) || l.contains(host))
    {
        found.push(format!("mount: {l}"));
    }
    let cg = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", id])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&cg.stdout).lines() {
        found.push(format!("cgroup: {l}"));
    }
    // The test's own network namespace (/sys/class/net would show the host's). The veth goes with
    // the container's namespace, or by a helper process: give the kernel a moment.
    let veth = format!("mc{id}");
    let gone = (0..250).any(|_| {
        let present = common::links().contains(&veth);
        if present {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        !present
    });
    if !gone {
        found.push(format!("link: {veth}"));
    }
    let ps = Command::new("pgrep").args(["-f", host]).output().unwrap();
    for l in String::from_utf8_lossy(&ps.stdout).lines() {
        found.push(format!("process: {l}"));
    }
    found
}

fn id_of(host: &str) -> Option<String> {
    for e in std::fs::read_dir(common::run_dir()).ok()?.flatten() {
        let s = std::fs::read_to_string(e.path().join("state.json")).unwrap_or_default();
        if s.contains(&format!("\"hostname\": \"{host}\"")) {
            return Some(e.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

#[test]
fn a_crash_at_any_step_is_cleaned_by_the_next_command() {
    if !common::need_root("a_crash_at_any_step_is_cleaned_by_the_next_command") {
        return;
    }
    for opts in [&[][..], &["--userns=host"][..], &["-d"][..]] {
        // (-d narrates into its log: it passes the same steps as a foreground run.)
        let all = steps(if opts == ["-d"] { &[] } else { opts });
        assert!(all.len() >= 5, "steps named: {all:?}");
        for step in &all {
            let host = common::unique("crash");
            let out = common::minictr()
                .env("MINICTR_CRASH_AT", step)
                .args(["run", "--hostname", &host])
                .args(opts)
                .arg(common::rootfs())
                .args(["sleep", "1"])
                .output()
                .unwrap();
            // Killed at the step (for -d: the monitor was, and the foreground reports it).
            // With -d a crash after the start is the monitor's: the foreground already printed the id.
            let started = opts == ["-d"] && out.status.success();
            let crashed = out.status.code().is_none() || out.status.code() == Some(125) || started;
            assert!(
                crashed,
                "{opts:?} step {step}: minictr should have died, got {:?}",
                out.status
            );
            let id = id_of(&host);
            // Any command cleans up what the crashed run left.
            common::assert_ok(&common::minictr().arg("ps").output().unwrap());
            if let Some(id) = id {
                // A detached container that was already running stays listed as exited until rm.
                let _ = common::minictr().args(["rm", "-f", &id]).output();
                let left = leftovers(&id, &host);
                assert!(
                    left.is_empty(),
                    "{opts:?} crash at {step}: left behind {left:?}"
                );
            }
            common::assert_no_leftovers(&host);
        }
    }
}
