//! `minictr selftest [ROOTFS]` (chapter 7): start real containers with this very binary
//! (/proc/self/exe `run …`) and check, from inside, every wall the book describes — namespaces,
//! mounts, devices, user mapping, cgroups, capabilities, seccomp, no_new_privs, masked and read-only
//! paths, descriptors. One line per check, naming the chapter that explains it; exit 1 on any FAIL.

use anyhow::Result;
use clap::Args;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Options of `minictr selftest`.
#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The rootfs to test on (a busybox one: rootfs-scripts/busybox.sh DIR) [default: ./rootfs]
    #[arg(value_name = "ROOTFS")]
    pub rootfs: Option<PathBuf>,
    /// Run every container with this --network (bridge, none or host) [default: minictr's default]
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Workshop: only chapter N's checks, every container run with `--until N` (workshop/check.sh)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub chapter: Option<u8>,
}

/// What a container printed and how it exited.
struct Outcome {
    code: i32,
    out: String,
    err: String,
}

type Expect = Box<dyn Fn(&Outcome) -> std::result::Result<(), String>>;

/// An expectation that cannot be checked here returns `Err(SKIP + why)`: reported, not failed.
const SKIP: &str = "SKIP: ";

struct Check {
    chapter: &'static str,
    what: String,
    opts: Vec<&'static str>,
    script: String,
    expect: Expect,
}

fn check(
    chapter: &'static str,
    what: impl Into<String>,
    opts: &[&'static str],
    script: &str,
    expect: impl Fn(&Outcome) -> std::result::Result<(), String> + 'static,
) -> Check {
    Check {
        chapter,
        what: what.into(),
        opts: opts.to_vec(),
        script: script.to_string(),
        expect: Box::new(expect),
    }
}

/// Succeeds and prints exactly `want` (trimmed).
fn prints(want: &'static str) -> impl Fn(&Outcome) -> std::result::Result<(), String> {
    move |o| {
        if o.code == 0 && o.out.trim() == want {
            Ok(())
        } else {
            Err(format!("wanted {want:?}, got {}", o.describe()))
        }
    }
}

/// The command ran (exit 0) and printed "refused".
fn refused(o: &Outcome) -> std::result::Result<(), String> {
    if o.code == 0 && o.out.trim() == "refused" {
        Ok(())
    } else {
        Err(format!("it was allowed: {}", o.describe()))
    }
}

impl Outcome {
    fn describe(&self) -> String {
        let mut s = format!("exit {} stdout {:?}", self.code, self.out.trim());
        if !self.err.trim().is_empty() {
            s.push_str(&format!(" stderr {:?}", self.err.trim()));
        }
        s
    }
}

/// `VALUE` of the `Key:\tVALUE` line of /proc/self/status in `out`.
fn status_field(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

fn caps_check(
    opts: &'static [&'static str],
    label: &str,
    bnd: &'static str,
    eff: &'static str,
) -> Check {
    check(
        "ch07",
        format!("CapBnd is {bnd}, CapEff {eff}, CapInh and CapAmb 0 ({label})"),
        opts,
        "cat /proc/self/status",
        move |o| {
            if o.err
                .contains("must be mapped into the container's user namespace")
            {
                return Err(format!(
                    "{SKIP}uid 1000 is not mapped (rootless without an /etc/subuid range)"
                ));
            }
            let got: Vec<Option<String>> = ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"]
                .iter()
                .map(|k| status_field(&o.out, k))
                .collect();
            let zero = "0000000000000000";
            let want = [bnd, eff, eff, zero, zero];
            if o.code == 0 && got.iter().zip(want).all(|(g, w)| g.as_deref() == Some(w)) {
                Ok(())
            } else {
                Err(format!("Bnd/Eff/Prm/Inh/Amb = {got:?}, {}", o.describe()))
            }
        },
    )
}

/// Chapter 4 from inside: the limits as the cgroup shows them (v2: /sys/fs/cgroup is the
/// container's cgroup; v1: one directory per hierarchy), then up to 40 background sleeps — the
/// subshell that starts them dies at the first refused fork ("can't fork").
const CH04_SCRIPT: &str = "c=/sys/fs/cgroup; if [ -e $c/pids.max ]; then p=$c; m=$c/memory.max; else p=$c/pids; m=$c/memory/memory.limit_in_bytes; fi
echo limits $(cat $m) $(cat $p/pids.max)
( i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all-started ) 2>/tmp/err
echo current $(cat $p/pids.current) refused $(grep -c fork /tmp/err)";

/// Every path under `dir` (not crossing into other filesystems' content), with size and mtime.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if let Ok(m) = e.path().symlink_metadata() {
                if m.is_dir() {
                    todo.push(e.path());
                }
                out.push((e.path(), m.size(), m.mtime()));
            }
        }
    }
    out.sort();
    out
}

/// Chapter 5: a container writes to its root (a new file, a new directory in /etc); the image is
/// unchanged.
fn image_unchanged_check(rootfs: &Path, net: &[&str]) -> std::result::Result<(), String> {
    let before = tree(rootfs);
    let tag = format!("selftest-{}", std::process::id());
    // Only a new file: should the overlay be missing, nothing of the image is lost.
    let script = format!("echo {tag} > /{tag} && mkdir -p /etc/{tag} && echo written");
    let mut opts = net.to_vec();
    opts.extend(["--hostname", "selftest"]);
    let o = run_container(rootfs, &opts, &script).map_err(|e| e.to_string())?;
    let after = tree(rootfs);
    if before != after {
        // Never leave the test's own files in someone's image.
        let _ = std::fs::remove_file(rootfs.join(&tag));
        let _ = std::fs::remove_dir(rootfs.join("etc").join(&tag));
        let changed: Vec<String> = after
            .iter()
            .filter(|x| !before.contains(x))
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        return Err(format!("the image changed: {changed:?}"));
    }
    if o.code != 0 || o.out.trim() != "written" {
        return Err(format!("the container could not write: {}", o.describe()));
    }
    Ok(())
}

/// Every check, in the order of the book.
fn checks(root: bool) -> Vec<Check> {
    // `--chapter 1|2` (workshop levels): the user namespace is chapter 3's, still off.
    let own_userns = std::env::var("MINICTR_UNTIL")
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .is_none_or(|n| n >= 3);
    let host_ns: Vec<(String, String)> = crate::namespaces::TABLE
        .iter()
        .map(|k| k.name)
        .map(|n| {
            let l = std::fs::read_link(format!("/proc/self/ns/{n}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (n.to_string(), l)
        })
        .collect();
    // /proc/kcore and /proc/sysrq-trigger exist only with CONFIG_PROC_KCORE and CONFIG_MAGIC_SYSRQ.
    let (masked, masked_note) = if Path::new("/proc/kcore").exists() {
        ("/proc/kcore", "")
    } else {
        ("/proc/interrupts", " (this kernel has no /proc/kcore)")
    };
    let sysrq_note = if Path::new("/proc/sysrq-trigger").exists() {
        ""
    } else {
        " (this kernel has none: refused anyway)"
    };
    let mount_flags = |point: &'static str, flags: &'static [&'static str]| {
        check(
            "ch02",
            format!("{point} is mounted {}", flags.join(",")),
            &[],
            &format!("awk '$5==\"{point}\" {{print $6}}' /proc/self/mountinfo | tail -n 1"),
            move |o| {
                let opts: Vec<&str> = o.out.trim().split(',').collect();
                if o.code == 0 && flags.iter().all(|f| opts.contains(f)) {
                    Ok(())
                } else {
                    Err(format!("mount options {:?}", o.out.trim()))
                }
            },
        )
    };
    let mut v = vec![
        check("ch01", "the command is PID 1 of its own PID namespace", &[], "echo $$", prints("1")),
        check(
            "ch01",
            "every /proc/self/ns/* link differs from the host's",
            &[],
            "for n in cgroup ipc mnt net pid user uts; do echo $n $(readlink /proc/self/ns/$n); done",
            move |o| {
                let same: Vec<&str> = host_ns
                    .iter()
                    .filter(|(n, _)| own_userns || n != "user")
                    .filter(|(n, l)| o.out.lines().any(|x| x == format!("{n} {l}")))
                    .map(|(n, _)| n.as_str())
                    .collect();
                if o.code == 0 && same.is_empty() && o.out.lines().count() == 7 {
                    Ok(())
                } else {
                    Err(format!("shared with the host: {same:?}; {}", o.describe()))
                }
            },
        ),
        check("ch01", "the hostname is the container's", &["--hostname", "selftest"], "hostname", prints("selftest")),
        check(
            "ch02",
            "\"/\" is a mount of its own and no host mount is visible",
            &[],
            "awk '{print $5}' /proc/self/mountinfo",
            |o| {
                let points: Vec<&str> = o.out.lines().collect();
                let foreign: Vec<&&str> = points
                    .iter()
                    .filter(|p| {
                        // The container's own: its kernel filesystems, and the network stage's
                        // /etc/hosts, /etc/hostname, /etc/resolv.conf (chapter 6).
                        **p != "/"
                            && !["/proc", "/sys", "/dev"].iter().any(|k| p.starts_with(k))
                            && !["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(*p)
                    })
                    .collect();
                // "/" need not be the first line: the mounts the parent prepared before the child
                // attached its root (chapter 6's /etc files) are listed before it.
                if o.code == 0 && points.contains(&"/") && foreign.is_empty() {
                    Ok(())
                } else {
                    Err(format!("mount points {points:?}"))
                }
            },
        ),
        check(
            "ch02",
            "the root is its mount namespace's root (pivot_root, not chroot): `unshare -U true` works with seccomp off — the kernel refuses a user namespace to a chrooted process (current_chrooted(), kernel/user_namespace.c)",
            &["--security-opt", "seccomp=unconfined"],
            "unshare -U true && echo ok",
            prints("ok"),
        ),
        check(
            "ch02",
            "\"/\" does not share mount events with the host",
            &[],
            "awk '$5==\"/\"' /proc/self/mountinfo",
            |o| {
                if o.code == 0 && !o.out.trim().is_empty() && !o.out.contains("shared:") {
                    Ok(())
                } else {
                    Err(format!("/ is {}", o.out.trim()))
                }
            },
        ),
        mount_flags("/proc", &["nosuid", "nodev", "noexec"]),
        mount_flags("/dev/shm", &["nosuid", "nodev", "noexec"]),
        mount_flags("/sys", &["ro"]),
        check(
            "ch02",
            "/dev holds only the default devices",
            &[],
            "ls /dev | tr '\\n' ' '",
            prints("fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"),
        ),
        check(
            "ch03",
            "container root is not host root: uid_map is not the identity",
            &[],
            "cat /proc/self/uid_map",
            |o| {
                let words: Vec<&str> = o.out.split_whitespace().collect();
                if o.code == 0 && words.len() >= 3 && words[..3] != ["0", "0", "4294967295"] && words[1] != "0" {
                    Ok(())
                } else {
                    Err(format!("uid_map {:?}", o.out.trim()))
                }
            },
        ),
        check(
            "ch04",
            "/proc/self/cgroup shows the container at the root of its cgroup namespace",
            &[],
            "cat /proc/self/cgroup",
            |o| {
                let lines: Vec<&str> = o.out.lines().collect();
                if o.code == 0 && !lines.is_empty() && lines.iter().all(|l| l.ends_with(":/")) {
                    Ok(())
                } else {
                    Err(format!("/proc/self/cgroup is {:?}", o.out.trim()))
                }
            },
        ),
        check(
            "ch04",
            "-m 64m --pids-limit 20: the cgroup inside shows both, and a fork bomb stops at 20 processes",
            &["-m", "64m", "--pids-limit", "20", "--tmpfs", "/tmp"],
            CH04_SCRIPT,
            |o| {
                if o.code == 125 && o.err.contains("cannot apply") {
                    return Err(format!("{SKIP}the cgroup stage does not run here: {}", o.err.trim()));
                }
                let lines: Vec<&str> = o.out.lines().collect();
                let current = lines
                    .get(1)
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u32>().ok());
                let refused = lines.get(1).is_some_and(|l| !l.ends_with(" 0"));
                if o.code == 0
                    && lines.first() == Some(&"limits 67108864 20")
                    && current.is_some_and(|c| c <= 20)
                    && refused
                    && !o.out.contains("all-started")
                {
                    Ok(())
                } else {
                    Err(o.describe())
                }
            },
        ),
        caps_check(&[], "root", "00000000a80425fb", "00000000a80425fb"),
        caps_check(&["-u", "1000"], "-u 1000: setuid empties the sets", "00000000a80425fb", "0000000000000000"),
        check("ch07", "NoNewPrivs is 1 and Seccomp is 2 (filter)", &[], "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t\\n' '  '", prints("NoNewPrivs: 1 Seccomp: 2")),
        check("ch07", "`mount -t tmpfs t /mnt` is refused", &[], "mount -t tmpfs t /mnt 2>/dev/null && echo mounted || echo refused", refused),
        check("ch07", "`unshare -U true` is refused (seccomp: unshare needs SYS_ADMIN)", &[], "unshare -U true 2>/dev/null && echo allowed || echo refused", refused),
        check("ch07", "`nsenter -t 1 -m true` is refused", &[], "nsenter -t 1 -m true 2>/dev/null && echo allowed || echo refused", refused),
        check(
            "ch07",
            "with --security-opt seccomp=unconfined the same `unshare -U true` works (so seccomp refused it)",
            &["--security-opt", "seccomp=unconfined"],
            "unshare -U true && echo ok",
            prints("ok"),
        ),
        check("ch07", "`ulimit -n` is 1024", &[], "ulimit -n", prints("1024")),
        check(
            "ch07",
            "mknod of a block device is refused (and so is reading one)",
            &[],
            "mknod /tmp/selftest-blk b 8 0 2>/dev/null && head -c1 /tmp/selftest-blk >/dev/null 2>&1 && echo read || echo refused",
            refused,
        ),
        check(
            "ch07",
            format!("{masked} is /dev/null (char 1:3, reads empty){masked_note}"),
            &[],
            &format!("echo $(stat -c '%t:%T' {masked}) $(wc -c < {masked})"),
            prints("1:3 0"),
        ),
        check(
            "ch07",
            "/proc/keys and /proc/timer_list read empty, /sys/firmware is an empty directory",
            &[],
            "echo $(cat /proc/keys /proc/timer_list | wc -c) $(ls -A /sys/firmware | wc -l)",
            prints("0 0"),
        ),
        check(
            "ch07",
            format!("`umount {masked}` fails"),
            &[],
            &format!("umount {masked} 2>/dev/null && echo unmounted || echo refused"),
            refused,
        ),
        check(
            "ch07",
            "`: > /proc/sys/kernel/core_pattern` is refused (read-only)",
            &[],
            "( : > /proc/sys/kernel/core_pattern ) 2>/dev/null && echo written || echo refused",
            refused,
        ),
        check(
            "ch07",
            format!("`: > /proc/sysrq-trigger` is refused (read-only){sysrq_note}"),
            &[],
            "( : > /proc/sysrq-trigger ) 2>/dev/null && echo written || echo refused",
            refused,
        ),
        check(
            "ch07",
            "/proc/1/fd holds only 0, 1, 2",
            &[],
            // `; :` keeps the shell as PID 1 (a lone command would be exec'd, and PID 1 would be ls
            // holding /proc/1/fd open); no pipe, whose end the shell would hold while ls looks.
            "ls /proc/1/fd; :",
            |o| {
                let fds: Vec<&str> = o.out.split_whitespace().collect();
                if o.code == 0 && fds == ["0", "1", "2"] {
                    Ok(())
                } else {
                    Err(format!("open descriptors {fds:?}"))
                }
            },
        ),
        check("ch07", "/proc/1/cwd is inside the rootfs", &["-w", "/tmp"], "readlink /proc/1/cwd", prints("/tmp")),
        check(
            "ch07",
            "--cap-add SYS_ADMIN opens what it gates (mount works)",
            &["--cap-add", "SYS_ADMIN"],
            "mount -t tmpfs t /mnt && echo mounted",
            prints("mounted"),
        ),
    ];
    if root {
        v.push(caps_check(
            &["--userns=host"],
            "--userns=host",
            "00000000a80425fb",
            "00000000a80425fb",
        ));
        v.push(check(
            "ch07",
            "--userns=host: mount, unshare -U, mknod b and core_pattern are still refused",
            &["--userns=host"],
            "for c in 'mount -t tmpfs t /mnt' 'unshare -U true' 'mknod /tmp/b b 8 0' ': > /proc/sys/kernel/core_pattern'; do (eval \"$c\") 2>/dev/null && echo \"allowed: $c\"; done; echo done",
            prints("done"),
        ));
        v.push(check(
            "ch07",
            format!("--userns=host: {masked} is masked"),
            &["--userns=host"],
            &format!("wc -c < {masked}"),
            prints("0"),
        ));
    }
    v.push(check(
        "ch08",
        "--init reaps orphans: an orphan's parent becomes PID 1 (minictr's init), and once it exits it is gone, not a zombie",
        &["--init"],
        "o=$(sh -c 'sleep 0.3 >/dev/null 2>&1 & echo $!'); pp=$(awk '/^PPid/{print $2}' /proc/$o/status); sleep 1; if [ -e /proc/$o ]; then s=$(awk '/^State/{print $2}' /proc/$o/status); else s=reaped; fi; echo $pp $s",
        prints("1 reaped"),
    ));
    v
}

fn run_container(rootfs: &Path, opts: &[&str], script: &str) -> Result<Outcome> {
    let out = Command::new("/proc/self/exe")
        .arg("run")
        .args(opts)
        .arg(rootfs)
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .output()?;
    Ok(Outcome {
        code: out.status.code().unwrap_or(128),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Behaviour 22: a mount made inside (with SYS_ADMIN granted for the purpose) never appears in the
/// host's mount table while the container is running.
fn propagation_check(rootfs: &Path, net: &[&str]) -> std::result::Result<(), String> {
    let tag = format!("minictr-selftest-{}", std::process::id());
    let script = format!("mount -t tmpfs {tag} /mnt && echo mounted && sleep 1");
    let mut child = Command::new("/proc/self/exe")
        .args(["run", "--cap-add", "SYS_ADMIN"])
        .args(net)
        .arg(rootfs)
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let status = child.wait().map_err(|e| e.to_string())?;
    if line.trim() != "mounted" {
        return Err(format!("the container could not mount (exit {status})"));
    }
    if host.contains(&tag) {
        return Err(format!("{tag} appeared in the host's mountinfo"));
    }
    Ok(())
}

/// `minictr selftest`: returns 0 when every check passes, 1 otherwise.
pub fn run(args: SelftestArgs) -> Result<i32> {
    let rootfs = match args.rootfs {
        Some(p) => p,
        None if Path::new("rootfs/bin/sh").exists() => PathBuf::from("rootfs"),
        None => anyhow::bail!(crate::error::hint(
            "no ROOTFS given and ./rootfs does not exist",
            "build one with `rootfs-scripts/busybox.sh ./rootfs` (needs busybox-static), then run `minictr selftest ./rootfs`"
        )),
    };
    let rootfs = crate::rootfs::check_rootfs(&rootfs)?;
    if !rootfs.join("bin/sh").exists() {
        anyhow::bail!(crate::error::hint(
            format!("{} has no /bin/sh", rootfs.display()),
            "the checks are shell scripts: use a busybox rootfs (rootfs-scripts/busybox.sh DIR)"
        ));
    }
    let root = nix::unistd::geteuid().is_root();
    println!(
        "minictr selftest on {} ({}, network {}, kernel {})",
        rootfs.display(),
        if root { "as root" } else { "rootless" },
        args.network.as_deref().unwrap_or("default"),
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut failed = 0;
    let mut report = |chapter: &str, what: &str, r: std::result::Result<(), String>| match r {
        Ok(()) => println!("PASS  [{chapter}] {what}"),
        Err(why) if why.starts_with(SKIP) => {
            println!("SKIP  [{chapter}] {what} — {}", &why[SKIP.len()..])
        }
        Err(why) => {
            failed += 1;
            println!("FAIL  [{chapter}] {what} — {why}");
        }
    };
    let net: Vec<&str> = match &args.network {
        Some(m) => vec!["--network", m],
        None => Vec::new(),
    };
    let chapter = args.chapter.map(|n| format!("ch{n:02}"));
    if let Some(n) = args.chapter {
        // Inherited by every `minictr run` below: the stages after chapter N are off.
        std::env::set_var("MINICTR_UNTIL", n.to_string());
    }
    let mine = |ch: &str| chapter.as_deref().is_none_or(|c| c == ch);
    for c in checks(root).into_iter().filter(|c| mine(c.chapter)) {
        let mut opts = net.clone();
        opts.extend(&c.opts);
        let r = match run_container(&rootfs, &opts, &c.script) {
            Ok(o) => (c.expect)(&o),
            Err(e) => Err(format!("could not start minictr: {e}")),
        };
        report(c.chapter, &c.what, r);
    }
    if mine("ch02") {
        report(
            "ch02",
            "a mount made inside never shows in the host's mount table",
            propagation_check(&rootfs, &net),
        );
    }
    if mine("ch05") {
        report(
            "ch05",
            "the image is unchanged after a container wrote to its root",
            image_unchanged_check(&rootfs, &net),
        );
    }
    if failed == 0 {
        println!("all checks passed");
        Ok(0)
    } else {
        println!("{failed} check(s) FAILED");
        Ok(1)
    }
}
