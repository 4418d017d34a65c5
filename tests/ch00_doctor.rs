//! `minictr doctor` (the preflight): as root on this host it passes; as a normal user it names what
//! is missing with a fix; with user namespaces switched off it fails and says how to switch them on.
//! It changes nothing on the host.

mod common;

use common::{minictr, need_root};
use std::process::Output;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every line is OK, WARN or FAIL; every WARN and FAIL carries a fix; the last line is the verdict.
fn check_shape(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 5, "{out}");
    for l in &lines[..lines.len() - 1] {
        assert!(
            l.starts_with("OK   ") || l.starts_with("WARN ") || l.starts_with("FAIL "),
            "{l}"
        );
        if !l.starts_with("OK") {
            assert!(l.contains("(fix: "), "a WARN or FAIL without a fix: {l}");
        }
    }
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("minictr run with its defaults"),
        "{out}"
    );
}

fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l[5..].starts_with(what))
        .unwrap_or_else(|| panic!("no line {what:?} in:\n{out}"))
}

#[test]
fn as_root_every_requirement_is_checked_and_it_passes() {
    if !need_root("as_root_every_requirement_is_checked_and_it_passes") {
        return;
    }
    // The probes mount tmpfs on the temp directory, in namespaces of their own only.
    let tmp = format!(" {} ", std::env::temp_dir().display());
    let on_tmp = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&tmp))
            .count()
    };
    let before = on_tmp();
    let o = minictr().arg("doctor").output().unwrap();
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_shape(&out);
    for what in [
        "kernel: Linux ",
        "user namespaces: yes",
        "unprivileged user namespaces",
        "subordinate ids",
        "idmapped mounts: on ",
        "overlayfs over idmapped lower layers: yes",
        "overlayfs layers by file descriptor",
        "overlayfs layers by O_PATH descriptor",
        "throwaway writable layers in memory",
        "data directory: ",
        "runtime directory: ",
        "cgroups: ",
        "netlink NETLINK_ROUTE",
        "netlink NETLINK_NETFILTER",
        "bridge and veth: yes",
        "ip_forward: ",
    ] {
        assert!(line(&out, what).starts_with("OK"), "{what}: {out}");
    }
    assert_eq!(
        out.lines().last(),
        Some("minictr run with its defaults works here")
    );
    // Nothing mounted, nothing left in the data directory's parent.
    assert_eq!(on_tmp(), before);
    let data = std::env::var("MINICTR_DATA_DIR").unwrap_or_else(|_| "/var/lib/minictr".into());
    let parent = std::path::Path::new(&data).parent().unwrap().to_path_buf();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".minictr-doctor")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn as_nobody_it_names_what_is_missing_with_fixes() {
    if !need_root("as_nobody_it_names_what_is_missing_with_fixes") {
        return;
    }
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::bin())
        .arg("doctor")
        .env_remove("MINICTR_DATA_DIR")
        .env_remove("MINICTR_RUN_DIR")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let out = text(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    check_shape(&out);
    // nobody has no home to keep writable layers in, and no subordinate ids.
    assert!(line(&out, "data directory").starts_with("FAIL"), "{out}");
    assert!(
        line(&out, "data directory").contains("MINICTR_DATA_DIR"),
        "{out}"
    );
    assert!(line(&out, "subordinate ids").starts_with("WARN"), "{out}");
    assert!(
        line(&out, "subordinate ids").contains("usermod --add-subuids"),
        "{out}"
    );
    assert!(
        line(&out, "user namespaces (as your user)").len() > 10,
        "{out}"
    );
    for what in [
        "overlayfs in a user namespace (rootless)",
        "runtime directory",
    ] {
        assert!(line(&out, what).len() > what.len() + 8, "{out}");
    }
    assert_eq!(o.status.code(), Some(1), "{out}");
}

#[test]
fn without_user_namespaces_it_fails_and_says_how_to_enable_them() {
    if !need_root("without_user_namespaces_it_fails_and_says_how_to_enable_them") {
        return;
    }
    // user.max_user_namespaces is per user namespace: set to 0 inside a fresh one, it hides the
    // feature from everything started there, and from nothing else.
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} doctor",
        common::bin().display()
    );
    let o = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = text(&o);
    check_shape(&out);
    let l = line(&out, "user namespaces:");
    assert!(l.starts_with("FAIL"), "{out}");
    assert!(l.contains("ENOSPC") && l.contains("Linux 3.8"), "{l}");
    assert!(l.contains("sysctl -w user.max_user_namespaces="), "{l}");
    assert_eq!(o.status.code(), Some(1), "{out}");
    // Outside, nothing changed.
    let v = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    assert_ne!(v.trim(), "0");
}

#[test]
fn completions_and_man_page_are_generated() {
    for (shell, want) in [
        ("bash", "_minictr()"),
        ("zsh", "#compdef minictr"),
        ("fish", "complete -c minictr"),
    ] {
        let o = minictr().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let s = text(&o);
        assert!(s.contains(want), "{shell}: {s}");
        assert!(s.contains("doctor") && s.contains("selftest"), "{shell}");
    }
    let o = minictr().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let o = minictr().arg("man").output().unwrap();
    assert!(o.status.success());
    let s = text(&o);
    assert!(s.starts_with(".ie") || s.contains(".TH minictr"), "{s}");
    assert!(s.contains("doctor"), "{s}");
    // One page per command into a directory; a missing directory is a one-line error.
    let dir = std::env::temp_dir().join(format!("minictr-man-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let o = minictr().arg("man").arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_to_string(dir.join("minictr-run.1")).unwrap();
    assert!(
        run.contains("userns") && run.contains("no\\-overlay"),
        "{run}"
    );
    assert!(dir.join("minictr.1").exists() && dir.join("minictr-doctor.1").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    let o = minictr().arg("man").arg(&dir).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}

#[test]
fn run_names_the_missing_feature_before_it_starts_anything() {
    if !need_root("run_names_the_missing_feature_before_it_starts_anything") {
        return;
    }
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run {} /bin/true",
        common::bin().display(),
        common::rootfs().display()
    );
    let o = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("user namespaces are not available here"),
        "{err}"
    );
    assert!(
        err.contains("Linux 3.8") && err.contains("--userns=host"),
        "{err}"
    );
}

#[test]
fn a_cached_no_is_tried_again_before_it_stops_a_run() {
    if !need_root("a_cached_no_is_tried_again_before_it_stops_a_run") {
        return;
    }
    // A runtime directory of this test's own, so the machine's probe cache is left alone.
    let run_dir = std::env::temp_dir().join(format!("minictr-probes-{}", std::process::id()));
    let cache = run_dir.join("probes.json");
    let run = |text: &str| {
        minictr()
            .env("MINICTR_RUN_DIR", &run_dir)
            .arg("run")
            .arg(common::rootfs())
            .args(["echo", text])
            .output()
            .unwrap()
    };
    common::assert_ok(&run("first"));
    let text = std::fs::read_to_string(&cache).expect("the first run caches its probes");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["overlay_idmapped_lower"]["result"], "yes", "{text}");
    // A stale "no" (a probe that failed for a passing reason, a sysctl changed since).
    v["overlay_idmapped_lower"] = serde_json::json!({"result": "no", "why": "planted by the test"});
    std::fs::write(&cache, v.to_string()).unwrap();
    let o = run("second");
    common::assert_ok(&o);
    assert_eq!(common::stdout(&o), "second\n");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(
        !text.contains("planted"),
        "the cache was not refreshed: {text}"
    );
    std::fs::remove_dir_all(&run_dir).unwrap();
}
