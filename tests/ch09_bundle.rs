//! Chapter 9 — the OCI runtime bundle: `minictr run --bundle DIR` runs a config.json written by
//! `runc spec` (edited as a user would) and one written by `umoci unpack` from an OCI image, on the
//! busybox rootfs, and refuses broken bundles with one line and exit 125.

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `runc spec` in a fresh bundle directory, its config.json edited by `edit`; root.path is a copy
/// of the busybox rootfs (read-only, but the mount points of the config's mounts are made in it).
fn runc_bundle(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = common::scratch(name);
    let out = Command::new("runc")
        .arg("spec")
        .current_dir(&dir)
        .output()
        .expect("runc (apt-get install runc)");
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["root"]["path"] = common::rootfs_copy(name).display().to_string().into();
    config["process"]["terminal"] = false.into();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

fn run_bundle(dir: &Path, opts: &[&str]) -> Output {
    common::minictr()
        .args(["run", "--bundle"])
        .arg(dir)
        .args(opts)
        .output()
        .unwrap()
}

fn warning(out: &Output) -> String {
    common::stderr(out)
        .lines()
        .find(|l| l.starts_with("minictr: warning: bundle fields"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn runc_spec_bundle() {
    if !common::need_root("runc_spec_bundle") {
        return;
    }
    let data = common::scratch("bundle-data");
    std::fs::write(data.join("hello"), "from the host\n").unwrap();
    let script = "hostname; id -u; grep NoNewPrivs /proc/self/status; \
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
        cat /data/hello; grep -w /cache /proc/mounts | cut -d' ' -f3; \
        mkdir /cache/x 2>&1; grep ^CapEff /proc/self/status";
    let dir = runc_bundle("bundle-runc", |c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["mounts"].as_array_mut().unwrap().extend([
            json!({"destination": "/data", "type": "bind", "source": data.display().to_string(), "options": ["rbind", "ro"]}),
            json!({"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        ]);
        // OCI's seccomp format: every syscall allowed but mkdir/mkdirat, which fail with ENOSYS
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
    });
    let out = run_bundle(&dir, &[]);
    common::assert_ok(&out);
    let lines: Vec<String> = common::stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[0], "runc", "{lines:?}");
    assert_eq!(lines[1], "0");
    assert_eq!(lines[2], "NoNewPrivs:\t1");
    assert_eq!(lines[3], (64u64 << 20).to_string());
    assert_eq!(lines[4], "from the host");
    assert_eq!(lines[5], "tmpfs");
    assert!(lines[6].contains("Function not implemented"), "{lines:?}");
    // CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE: bits 29, 5, 10
    assert_eq!(lines[7], "CapEff:\t0000000020000420", "{lines:?}");
    assert_eq!(
        warning(&out),
        "minictr: warning: bundle fields not supported, ignored: linux.resources.devices, linux.sysctl"
    );
    // The profile was never a file of its own: nothing of it is left in the runtime directory.
    assert_eq!(
        std::fs::read_dir(common::run_dir())
            .map(|rd| rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("seccomp"))
                .count())
            .unwrap_or(0),
        0
    );
    // `minictr exec` in a detached bundle container builds the same filter from state.json.
    let dir_d = runc_bundle("bundle-runc-exec", |c| {
        c["process"]["args"] = json!(["sleep", "60"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
    });
    let host_d = common::unique("bundle-exec");
    let out = run_bundle(&dir_d, &["-d", "--hostname", &host_d]);
    common::assert_ok(&out);
    let id = common::stdout(&out).trim().to_string();
    let exec = common::minictr()
        .args(["exec", &id, "sh", "-c", "mkdir /tmp/x 2>&1; true"])
        .output()
        .unwrap();
    let _ = common::minictr().args(["rm", "-f", &id]).output();
    common::assert_ok(&exec);
    assert!(
        common::stdout(&exec).contains("Function not implemented"),
        "{}",
        common::stdout(&exec)
    );
    common::assert_no_leftovers(&host_d);

    // The user's own options win over the config's: another hostname, another memory limit.
    let dir = runc_bundle("bundle-runc-override", |c| {
        c["process"]["args"] = json!(["sh", "-c", "hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    });
    let host = common::unique("bundle");
    let out = run_bundle(&dir, &["--hostname", &host, "-m", "32m"]);
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), format!("{host}\n{}\n", 32u64 << 20));
    common::assert_no_leftovers(&host);
}

#[test]
fn umoci_unpack_bundle() {
    if !common::need_root("umoci_unpack_bundle") {
        return;
    }
    let dir = common::scratch("bundle-umoci");
    let img = format!("{}:v1", dir.join("oci").display());
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .output()
            .expect("umoci (apt-get install umoci)");
        assert!(out.status.success(), "umoci {args:?}: {out:?}");
    };
    umoci(&["init", "--layout", &dir.join("oci").display().to_string()]);
    umoci(&["new", "--image", &img]);
    umoci(&[
        "insert",
        "--image",
        &img,
        &common::rootfs().display().to_string(),
        "/",
    ]);
    umoci(&[
        "config",
        "--image",
        &img,
        "--config.entrypoint",
        "sh",
        "--config.entrypoint",
        "-c",
        "--config.cmd",
        "echo $GREETING from $(hostname) in $(pwd); touch /written && echo wrote",
        "--config.env",
        "GREETING=hello",
        "--config.workingdir",
        "/etc",
    ]);
    let bundle = dir.join("bundle");
    umoci(&["unpack", "--image", &img, &bundle.display().to_string()]);
    let out = run_bundle(&bundle, &[]);
    common::assert_ok(&out);
    // process.terminal is true (umoci's default, as runc spec's): a pty, whose lines end in \r\n
    assert_eq!(
        common::stdout(&out),
        "hello from umoci-default in /etc\r\nwrote\r\n"
    );
    // As with runc, a writable root is the bundle's rootfs itself: the file is there afterwards.
    assert!(bundle.join("rootfs/written").exists());
    // umoci asks for an inheritable set; minictr clears it (chapter 7)
    assert!(
        warning(&out).contains("process.capabilities.inheritable"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn broken_bundles() {
    if !common::need_root("broken_bundles") {
        return;
    }
    let fails = |out: &Output, what: &str| {
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        // one line besides the warning about ignored fields
        let err = common::stderr(out);
        let lines = err
            .lines()
            .filter(|l| !l.contains("warning: bundle fields"));
        assert_eq!(lines.count(), 1, "{err}");
        assert!(err.contains(what), "{what} not in {err}");
    };
    let dir = common::scratch("bundle-broken");
    std::fs::write(dir.join("config.json"), "{\"ociVersion\": \"1.0.2\",").unwrap();
    fails(&run_bundle(&dir, &[]), "not valid JSON");
    let dir = runc_bundle("bundle-noargs", |c| {
        c["process"].as_object_mut().unwrap().remove("args");
    });
    fails(&run_bundle(&dir, &[]), "process.args");
    let dir = runc_bundle("bundle-netns-path", |c| {
        c["linux"]["namespaces"][1]["path"] = "/var/run/netns/elsewhere".into();
    });
    fails(
        &run_bundle(&dir, &[]),
        "joining the existing network namespace",
    );
    fails(
        &run_bundle(Path::new("/nonexistent-bundle"), &[]),
        "cannot open the bundle",
    );
    // an option with a bad value, from the config: the same error as typed on the command line
    let dir = runc_bundle("bundle-badcpu", |c| {
        c["linux"]["resources"]["cpu"] = json!({"quota": 100_000_000, "period": 100_000});
    });
    fails(&run_bundle(&dir, &[]), "invalid --cpus value");
    // ROOTFS and CMD: required without --bundle, refused with it
    let out = common::minictr().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(common::stderr(&out).contains("ROOTFS"));
    let out = run_bundle(&dir, &["/", "sh"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        common::stderr(&out).contains("cannot be used with"),
        "{}",
        common::stderr(&out)
    );
}
