//! Chapter 8 — lifecycle: terminals, init, detached containers and the commands that manage them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed when the test ends however it ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("minictr-{}", common::unique(name)),
        }
    }
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t"])
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "t"];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    /// Wait until the screen shows `text` (generous bound for a loaded machine).
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // If the test failed half-way, the container in the pane may still run: end it first.
        if let Some(pid) = running_pid_of("ttybox") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The container pid of a live container with this hostname, if any.
fn running_pid_of(hostname: &str) -> Option<i32> {
    for e in std::fs::read_dir(common::run_dir()).ok()?.flatten() {
        let s = std::fs::read_to_string(e.path().join("state.json")).unwrap_or_default();
        if s.contains(&format!("\"hostname\": \"{hostname}\"")) {
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            return v["container_pid"].as_i64().map(|p| p as i32);
        }
    }
    None
}

#[test]
fn an_interactive_shell_behaves_like_docker_run_it() {
    if !common::need_root("an_interactive_shell_behaves_like_docker_run_it") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test (apt-get install tmux; tests/all.sh installs it)");
    }
    let t = Tmux::new("tty");
    let script = format!(
        "unshare -n {} run -it --hostname ttybox {} /bin/sh; echo EXIT=$?; stty -a | tr ';' '\\n' | grep -o -- '-\\?icanon' | sed 's/^/HOST:/'; sleep 60",
        common::bin().display(),
        common::rootfs().display()
    );
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    t.wait_for("/ #");
    t.keys(&[
        "echo T=$(tty) O=$(stat -c %u:%g $(tty)) S=$(stty size) END$((1+1))",
        "Enter",
    ]);
    let s = t.wait_for("END2");
    assert!(
        s.contains("T=/dev/pts/0 O=0:5 S=30 100"),
        "pts/0 owned by 0:5, size of the pane:\n{s}"
    );

    // A resize reaches the container (SIGWINCH → TIOCSWINSZ).
    t.cmd(&["resize-window", "-t", "t", "-x", "80", "-y", "20"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["clear; echo R=$(stty size)", "Enter"]);
    t.wait_for("R=20 80");

    // Ctrl-C interrupts the foreground job inside, not the shell.
    t.keys(&["clear; sleep 50", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-c"]);
    t.keys(&["echo still-$((40+2))", "Enter"]);
    t.wait_for("still-42");

    // exit 3 passes through, and the host terminal is back in canonical mode.
    t.keys(&["exit 3", "Enter"]);
    let s = t.wait_for("HOST:");
    assert!(s.contains("EXIT=3"), "{s}");
    assert!(
        s.contains("HOST:icanon") && !s.contains("HOST:-icanon"),
        "terminal restored:\n{s}"
    );
    common::assert_no_leftovers("ttybox");
}

#[test]
fn without_t_there_is_no_terminal() {
    if !common::need_root("without_t_there_is_no_terminal") {
        return;
    }
    let out = common::run(&[], &["tty"]);
    assert_eq!(common::stdout(&out).trim(), "not a tty");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn init_reaps_orphans_and_passes_signals_and_status() {
    if !common::need_root("init_reaps_orphans_and_passes_signals_and_status") {
        return;
    }
    // An orphan re-parented to PID 1: `exec sleep` never reaps it, init does.
    let orphan = "(sleep 0.2 &); exec sleep 3";
    for (opts, zombie) in [(&[][..], true), (&["--init"][..], false)] {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(opts);
        let root = common::rootfs();
        let out = common::minictr()
            .args(&args)
            .arg(&root)
            .args(["sh", "-c", orphan])
            .output()
            .unwrap();
        common::assert_ok(&out);
        let id = common::stdout(&out).trim().to_string();
        std::thread::sleep(Duration::from_millis(1000));
        let ps = common::minictr()
            .args(["exec", &id, "ps", "-o", "stat,comm"])
            .output()
            .unwrap();
        common::assert_ok(&ps);
        let has_zombie = common::stdout(&ps)
            .lines()
            .any(|l| l.trim_start().starts_with('Z'));
        assert_eq!(
            has_zombie,
            zombie,
            "opts {opts:?}:\n{}",
            common::stdout(&ps)
        );
        common::assert_ok(&common::minictr().args(["rm", "-f", &id]).output().unwrap());
    }
    // Status passes through init: a code, and 128+N for a signal.
    assert_eq!(
        common::run(&["--init"], &["sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    assert_eq!(
        common::run(&["--init"], &["sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );
    // SIGTERM to minictr: with --init it reaches `sleep` (143); without, PID 1 `sleep` has no handler
    // and the kernel drops it (the PID 1 problem), so sleep runs to its end (0).
    for (opts, want) in [(&["--init"][..], 143), (&[][..], 0)] {
        let mut child = common::minictr()
            .arg("run")
            .args(opts)
            .arg(common::rootfs())
            .args(["sleep", "2"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let st = common::wait_bounded(&mut child, 20);
        assert_eq!(st.code(), Some(want), "opts {opts:?}");
    }
}

fn ok(args: &[&str]) -> String {
    let out = common::minictr().args(args).output().unwrap();
    common::assert_ok(&out);
    common::stdout(&out)
}

fn code(args: &[&str]) -> (Option<i32>, String) {
    let out = common::minictr().args(args).output().unwrap();
    (out.status.code(), common::stderr(&out))
}

/// exec sees the same processes, hostname, mounts and user mapping, with the container's env.
fn exec_sees_the_container(name: &str, id: &str) {
    let inside = ok(&["exec", name, "sh", "-c", "ps -o pid,comm | grep -c sh; hostname; echo $COLOR; cat /proc/self/uid_map; { readlink /proc/1/ns/mnt; readlink /proc/self/ns/mnt; } | uniq | wc -l"]);
    let lines: Vec<&str> = inside.lines().collect();
    assert!(
        lines[0].trim().parse::<u32>().unwrap() >= 2,
        "PID 1's sh and ours: {inside}"
    );
    assert_eq!(lines[1], id, "hostname");
    assert_eq!(lines[2], "blue", "the container's environment");
    assert!(lines[3].contains("100000"), "uid map: {inside}");
    assert_eq!(lines[4].trim(), "1", "same mount namespace as PID 1");
    assert_eq!(
        ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/etc",
            name,
            "sh",
            "-c",
            "echo $X $PWD"
        ])
        .trim(),
        "1 /etc"
    );
    assert_eq!(ok(&["exec", "-u", "1000", name, "id", "-u"]).trim(), "1000");
    assert_eq!(code(&["exec", name, "nosuchcommand"]).0, Some(127));
}

/// `minictr rm -f ID` when dropped (a no-op once the test removed it itself).
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = common::minictr().args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn detached_containers_and_their_commands() {
    if !common::need_root("detached_containers_and_their_commands") {
        return;
    }
    let name = common::unique("web");
    let root = common::rootfs();
    let script = "trap 'echo got HUP' HUP; trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done";
    let id = ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-e",
        "COLOR=blue",
        root.to_str().unwrap(),
        "sh",
        "-c",
        script,
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 12, "-d prints the id: {id:?}");
    // If an assertion below fails, the detached container must not outlive the test.
    let _cleanup = RemoveOnDrop(id.clone());

    // ps lists it running, with name and pid.
    let ps = ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not in ps:\n{ps}"));
    assert!(line.contains(&name) && line.contains(" Up "), "{line}");
    let pid: i32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    // logs
    common::wait_until(10, "the log shows started", || {
        ok(&["logs", &name]).contains("started")
    });

    exec_sees_the_container(&name, &id);

    // kill -s HUP reaches the trap; stop ends it with TERM.
    ok(&["kill", "-s", "HUP", &name]);
    common::wait_until(10, "the trap saw HUP", || {
        ok(&["logs", &name]).contains("got HUP")
    });
    ok(&["stop", "-t", "5", &name]);
    assert!(ok(&["logs", &name]).contains("bye"));
    let ps = ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id) && l.contains(" Exited (0) ")),
        "{ps}"
    );
    assert!(!ok(&["ps"]).contains(&id), "ps without -a hides it");

    // Bad input: exec into a stopped container, unknown ids, a name in use.
    let (c, e) = code(&["exec", &name, "true"]);
    assert_eq!(c, Some(125), "{e}");
    assert!(e.contains("not running"), "{e}");
    for args in [
        &["exec", "nosuchid", "true"][..],
        &["logs", "nosuchid"],
        &["stop", "nosuchid"],
        &["kill", "nosuchid"],
        &["rm", "nosuchid"],
    ] {
        let (c, e) = code(args);
        assert_eq!(c, Some(125), "{args:?}");
        assert!(e.contains("no such container"), "{args:?}: {e}");
    }
    let (c, e) = code(&["run", "--name", &name, root.to_str().unwrap(), "true"]);
    assert_eq!(c, Some(125));
    assert!(e.contains("already in use"), "{e}");
    assert_eq!(code(&["kill", "-s", "NOPE", &name]).0, Some(125));

    // rm removes state, log, layer and name.
    ok(&["rm", &name]);
    assert!(!ok(&["ps", "-a"]).contains(&id));
    assert!(!common::data_dir().join("containers").join(&id).exists());
    assert!(!common::run_dir().join(&id).exists());

    // rm of a running container needs -f.
    let id = ok(&["run", "-d", root.to_str().unwrap(), "sleep", "100"])
        .trim()
        .to_string();
    let (c, e) = code(&["rm", &id]);
    assert_eq!(c, Some(125), "{e}");
    ok(&["rm", "-f", &id]);
    assert!(!common::run_dir().join(&id).exists());
}

#[test]
fn logs_follow_ends_with_the_container() {
    if !common::need_root("logs_follow_ends_with_the_container") {
        return;
    }
    let root = common::rootfs();
    let id = ok(&[
        "run",
        "-d",
        root.to_str().unwrap(),
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]);
    let id = id.trim();
    let mut f = common::minictr()
        .args(["logs", "-f", id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let st = common::wait_bounded(&mut f, 20);
    assert!(st.success());
    let mut out = String::new();
    std::io::Read::read_to_string(f.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(out, "line1\nline2\nline3\n");
    ok(&["rm", id]);
}

#[test]
fn stats_and_exec_use_the_containers_cgroup() {
    if !common::need_root("stats_and_exec_use_the_containers_cgroup") {
        return;
    }
    let root = common::rootfs();
    let name = common::unique("stats");
    ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--pids-limit",
        "8",
        root.to_str().unwrap(),
        "sleep",
        "60",
    ]);
    // exec runs in the container's cgroup: same cgroups as PID 1, and its limit holds.
    let cg = ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
    ]);
    let (mine, first) = cg.split_once("---\n").unwrap();
    let pick = |s: &str| {
        s.lines()
            .filter(|l| l.contains(":pids:") || l.starts_with("0::"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(!pick(mine).is_empty(), "{cg}");
    assert_eq!(pick(mine), pick(first), "exec joins PID 1's cgroup:\n{cg}");
    let bomb = common::minictr()
        .args([
            "exec",
            &name,
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>&1; wait",
        ])
        .output()
        .unwrap();
    assert!(
        common::stderr(&bomb).contains("can't fork")
            || common::stdout(&bomb).contains("can't fork"),
        "the pids limit applies to exec'd processes"
    );
    // stats --no-stream: the cgroup's counters, the same fields as --stats.
    let st = ok(&["stats", "--no-stream", &name]);
    for field in [
        "cpu user",
        "cpu system",
        "memory peak",
        "pids peak",
        "io read",
        "io written",
        "oom kills",
        "throttled",
    ] {
        assert!(st.contains(field), "stats lacks {field}:\n{st}");
    }
    ok(&["rm", "-f", &name]);
    let (c, e) = code(&["stats", "--no-stream", &name]);
    assert_eq!(c, Some(125), "{e}");
}
