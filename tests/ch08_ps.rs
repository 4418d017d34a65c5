//! Chapter 8 — `minictr ps`, `ps -a`, `ps -q`, `inspect`: running, detached and exited, kept and
//! named containers, each with a Docker-like status; `rm $(ps -aq)` removes them all. The test has
//! runtime and data directories of its own, so the listings hold exactly its containers.

mod common;

use common::PrivateDirs;

/// The `ps -a` line of the container `id`.
fn line_of<'a>(ps: &'a str, id: &str) -> &'a str {
    ps.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} is not listed:\n{ps}"))
}

fn inspect(d: &PrivateDirs, what: &str) -> serde_json::Value {
    let out = d.cmd(&["inspect", what]);
    common::assert_ok(&out);
    serde_json::from_str(&common::stdout(&out)).expect("inspect prints JSON")
}

#[test]
fn ps_lists_running_exited_kept_and_named_containers() {
    if !common::need_root("ps_lists_running_exited_kept_and_named_containers") {
        return;
    }
    let d = PrivateDirs::new("ps");
    let rootfs = common::rootfs();
    let r = rootfs.to_str().unwrap();
    let started = |args: &[&str]| -> String {
        let out = d.cmd(args);
        common::assert_ok(&out);
        common::stdout(&out).trim().to_string()
    };
    // Kept by name and by --keep: in the foreground, so only their layer and record stay.
    let out = d.cmd(&["run", "--name", "kept1", r, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    common::assert_ok(&d.cmd(&["run", "--keep", r, "true"]));
    let web = started(&["run", "-d", "--name", "web", r, "sleep", "30"]);
    let seven = started(&["run", "-d", r, "sh", "-c", "exit 7"]);
    let died = started(&["run", "-d", r, "sleep", "30"]);
    // A detached container whose monitor is SIGKILLed: the container dies with it (PDEATHSIG), the
    // next command finds the lock free and keeps the record as exited, with no exit status.
    let owner = inspect(&d, &died)["owner_pid"].as_i64().expect("owner_pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(owner as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_until(10, "the detached `exit 7` to end", || {
        inspect(&d, &seven)["status"] == "exited"
    });
    common::wait_until(10, "the killed monitor's lock to go", || {
        inspect(&d, &died)["live"] == false
    });

    let ids = check_ps(&d, &web, &seven, &died);
    check_inspect(&d, &web, &seven);
    // rm $(ps -aq): a running container is refused without -f, the others go.
    let mut rm = vec!["rm"];
    rm.extend(ids.iter().map(String::as_str));
    let out = d.cmd(&rm);
    assert_eq!(
        out.status.code(),
        Some(125),
        "web runs: {}",
        common::stderr(&out)
    );
    assert_eq!(d.ids(), vec![web.clone()]);
    let mut rm = vec!["rm", "-f"];
    let left = d.ids();
    rm.extend(left.iter().map(String::as_str));
    common::assert_ok(&d.cmd(&rm));
    d.assert_empty("after rm -f $(ps -aq)");
    assert!(common::cgroups_of(&web).is_empty());
}

/// `ps`, `ps -a`, `ps -q`, `ps -aq` over the five containers; returns the ids of `ps -aq`.
fn check_ps(d: &PrivateDirs, web: &str, seven: &str, died: &str) -> Vec<String> {
    // ps: the running one only, "Up …", with its pid and address.
    let ps = common::stdout(&d.cmd(&["ps"]));
    assert_eq!(ps.lines().count(), 2, "{ps}");
    assert!(ps.lines().next().unwrap().starts_with("ID "), "{ps}");
    let l = line_of(&ps, web);
    assert!(
        l.contains(" web ") && l.contains(" Up ") && l.contains("sleep 30"),
        "{l}"
    );
    // ps -a: all five, with their statuses.
    let all = common::stdout(&d.cmd(&["ps", "-a"]));
    assert_eq!(all.lines().count(), 6, "{all}");
    let kept1 = inspect(d, "kept1")["id"].as_str().unwrap().to_string();
    assert!(line_of(&all, &kept1).contains(" kept1 "), "{all}");
    assert!(line_of(&all, &kept1).contains(" Exited (3) "), "{all}");
    assert!(line_of(&all, seven).contains(" Exited (7) "), "{all}");
    assert!(
        line_of(&all, died).contains(" Exited (minictr died) "),
        "{all}"
    );
    assert!(line_of(&all, web).contains(" Up "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains(" Exited (0) ") && l.contains(" true ")),
        "the --keep container: {all}"
    );
    // -q and -aq: ids only.
    assert_eq!(common::stdout(&d.cmd(&["ps", "-q"])).trim(), web);
    let ids = d.ids();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids
        .iter()
        .all(|i| i.len() == 12 && i.bytes().all(|b| b.is_ascii_hexdigit())));
    for id in [kept1.as_str(), web, seven, died] {
        assert!(ids.iter().any(|i| i == id), "{id} not in {ids:?}");
    }

    ids
}

/// `inspect`: state.json, a kept container's layer record, a prefix, an unknown name.
fn check_inspect(d: &PrivateDirs, web: &str, seven: &str) {
    // inspect: state.json, and for kept containers their layer's record.
    let k = inspect(d, "kept1");
    assert_eq!(k["name"], "kept1");
    assert_eq!(k["exit_code"], 3);
    assert_eq!(k["command"], serde_json::json!(["sh", "-c", "exit 3"]));
    let layer = k["kept"]["layer"].as_str().expect("kept.layer");
    assert!(std::path::Path::new(layer).join("upper").is_dir(), "{k}");
    let w = inspect(d, "web");
    assert_eq!(w["id"], web);
    assert_eq!(w["status"], "running");
    assert_eq!(w["live"], true);
    assert!(w["container_pid"].as_i64().is_some(), "{w}");
    assert!(w["resources"]["network"].is_object(), "{w}");
    assert_eq!(w["kept"]["name"], "web");
    assert_eq!(inspect(d, &web[..6])["id"], web, "a unique id prefix");
    let s = inspect(d, seven);
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("exited"), Some(7))
    );
    assert!(
        s.get("kept").is_none(),
        "-d alone keeps no named layer: {s}"
    );
    let out = d.cmd(&["inspect", "no-such-container"]);
    assert_eq!(out.status.code(), Some(125));
    let err = common::stderr(&out);
    assert!(
        err.contains("no such container") && err.contains("ps -a"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
