//! The README's quick start, as a new user gets it: `minictr run ROOTFS /bin/sh` with every default
//! — the bridge network made by the first container — on a machine without the nft binary (or any
//! other program minictr might have called): nothing on the start path executes a program. Proved
//! with `strace -f -e trace=execve` (the only execve calls are minictr's own and the container's
//! command) and by a run with an empty environment (no PATH to find a program on).

mod common;

use common::PrivateDirs;

/// Every execve (also failed ones) in `strace -f -e trace=execve` output: (path, result).
fn execs(trace: &str) -> Vec<(String, String)> {
    trace
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("execve(\"")? + 8..];
            let path = rest[..rest.find('"')?].to_string();
            let result = l.rsplit_once(" = ").map_or("", |(_, r)| r).to_string();
            Some((path, result))
        })
        .collect()
}

#[test]
fn the_start_path_executes_no_program() {
    if !common::need_root("the_start_path_executes_no_program") {
        return;
    }
    let strace = std::process::Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "this test needs strace (apt-get install strace; tests/all.sh installs it)"
    );
    // Fresh directories: the first run also probes the kernel (no probes.json yet) and, in the
    // test's own network namespace, creates the bridge and its nftables table.
    let d = PrivateDirs::new("quickstart");
    let trace_file = common::scratch("quickstart").join("trace");
    for run in [
        "first (probes, bridge, NAT table)",
        "second (cached probes, bridge there)",
    ] {
        // Under strace, following every process minictr starts.
        let traced = std::process::Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve", "-o"])
            .arg(&trace_file)
            .arg(common::bin())
            .arg("run")
            .arg(common::rootfs())
            .args(["/bin/sh", "-c", "echo pid $$"])
            .env("MINICTR_RUN_DIR", &d.run)
            .env("MINICTR_DATA_DIR", &d.data)
            .env_remove("MINICTR_NETWORK")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        common::assert_ok(&traced);
        assert_eq!(common::stdout(&traced), "pid 1\n", "{run}");
        let trace = std::fs::read_to_string(&trace_file).unwrap();
        let calls = execs(&trace);
        let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [common::bin().to_str().unwrap(), "/bin/sh"],
            "{run}: only minictr and the container's command may be executed:\n{trace}"
        );
        assert!(calls.iter().all(|(_, r)| r == "0"), "{run}: {calls:?}");
        // And with no PATH to find a program on.
        let out = d
            .minictr()
            .env("PATH", "/nonexistent")
            .env_remove("MINICTR_NETWORK")
            .arg("run")
            .arg(common::rootfs())
            .args(["/bin/sh", "-c", "echo pid $$"])
            .output()
            .unwrap();
        common::assert_ok(&out);
        assert_eq!(common::stdout(&out), "pid 1\n", "{run}, PATH=/nonexistent");
        // (Ran with the bridge: the container got an address on it.)
        let addr = d.cmd(&[
            "run",
            common::rootfs().to_str().unwrap(),
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ]);
        common::assert_ok(&addr);
        assert!(
            common::stdout(&addr).contains("inet 10."),
            "{run}: {}",
            common::stdout(&addr)
        );
    }
}
