//! The book's "Try it" sessions, re-run on the current binary (chapters/CONVENTIONS.md describes the
//! format). Each file in chapters/sessions/ is one root-shell session: `# command` lines, each followed
//! by the output it printed, with placeholders where a value changes from run to run:
//!
//! | placeholder | matches |
//! |---|---|
//! | `[..]` | any text within one line (also none) |
//! | `...` (a line of its own) | any number of lines (also none) |
//! | `[ID]` | a container id: 12 lower-case hex digits |
//! | `[HEX]` | one or more hex digits |
//! | `[N]` | one or more decimal digits (pids, sizes, counts) |
//! | `[IP]` | an IPv4 address (digits and dots) |
//! | `[TIME]` | a duration or clock time: digits, `:`, `.`, `m`, `s`, `h` |
//! | `[DATE]` | a date as `ls -l` prints it (`Nov 29 14:51`): letters, digits, spaces, `:` |
//!
//! Every session runs as root in a scratch directory of its own with a fresh busybox rootfs in
//! `./rootfs`, inside a network namespace of its own (the book's lab, chapter 0) and a private mount
//! namespace where /run/minictr, /var/lib/minictr and /tmp are empty scratch mounts; the binary under
//! test is first on PATH as `minictr`. Every command runs in its own `sh -c` with stderr merged into
//! stdout; a command's exit status is compared only when the session prints it (`; echo $?`).
//! `<!-- requires: cgroup-v2 -->` (or `cgroup-v1`, `kernel>=6.15`) before the block skips a session,
//! with the reason printed, on a host without it; `requires: bash` runs its commands in `bash -c`
//! (job specs such as `%1`, the `time` keyword); `requires: registry` starts an image registry
//! (Debian's `docker-registry`) on 127.0.0.1:5000 of the session's network namespace, stopped with
//! the session (chapter 9; `umoci` and `skopeo` must be installed too). A session must remove the
//! containers it starts.
//!
//!     sudo env "PATH=$PATH" cargo test --test sessions                        # all sessions
//!     sudo env "PATH=$PATH" MINICTR_SESSIONS=05 cargo test --test sessions    # files named *05*
//!     sudo env "PATH=$PATH" MINICTR_BLESS=1 cargo test --test sessions        # rewrite them
//!
//! `MINICTR_SESSIONS_REQUIRES=cgroup-v2` runs only the sessions that require it: `tests/vm/cgroup-v2.sh`
//! uses it in its guest, with minictr's defaults (bridge network included) like everywhere else.
//!
//! A session that fails prints a diff (`-` expected, `+` actual). Blessing keeps a placeholder
//! wherever the old expectation had one and the text around it still matches.

mod common;

/// See [`Lab::run`]: the lab waits for the veths of exited containers to go before each command.
const SETTLE: &str = r#"n=0; while [ $n -lt 150 ]; do s=; for l in $(sed -n 's/^ *mc\([0-9a-f]*\):.*/\1/p' /proc/net/dev); do minictr ps -q 2>/dev/null | grep -qx "$l" || s=1; done; [ -z "$s" ] && break; sleep 0.02; n=$((n+1)); done"#;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

// ---------------------------------------------------------------------------------------------------
// The session file: a fenced console block, `# ` commands (`> ` continues a command), output lines.

#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// The command as shown (lines joined with '\n', prompts removed).
    cmd: String,
    /// The expected output lines (patterns).
    expected: Vec<String>,
}

#[derive(Debug)]
struct Session {
    /// Everything up to and including the opening fence.
    head: String,
    steps: Vec<Step>,
    /// The closing fence and everything after it.
    tail: String,
    /// `<!-- requires: … -->` markers.
    requires: Vec<String>,
}

fn parse(text: &str) -> Result<Session, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut requires = Vec::new();
    let mut i = 0;
    let mut head = String::new();
    while i < lines.len() && !lines[i].trim_start().starts_with("```") {
        let l = lines[i].trim();
        if let Some(r) = l
            .strip_prefix("<!-- requires:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            requires.extend(
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            );
        }
        head.push_str(lines[i]);
        i += 1;
    }
    if i == lines.len() {
        return Err("no fenced block (```console … ```)".into());
    }
    head.push_str(lines[i]);
    i += 1;
    let mut steps: Vec<Step> = Vec::new();
    while i < lines.len() && !lines[i].trim_start().starts_with("```") {
        let l = lines[i].trim_end_matches(['\n', '\r']);
        if let Some(cmd) = l.strip_prefix("# ") {
            steps.push(Step {
                cmd: cmd.to_string(),
                expected: Vec::new(),
            });
        } else if let (Some(c), true) = (
            l.strip_prefix("> "),
            steps.last().is_some_and(|s| s.expected.is_empty()),
        ) {
            let s = steps.last_mut().expect("checked");
            s.cmd.push('\n');
            s.cmd.push_str(c);
        } else if let Some(s) = steps.last_mut() {
            s.expected.push(l.trim_end().to_string());
        } else if !l.trim().is_empty() {
            return Err(format!("output before the first `# ` command: {l:?}"));
        }
        i += 1;
    }
    if i == lines.len() {
        return Err("the fenced block is not closed".into());
    }
    for s in &mut steps {
        while s.expected.last().is_some_and(|l| l.is_empty()) {
            s.expected.pop();
        }
    }
    let tail = lines[i..].concat();
    Ok(Session {
        head,
        steps,
        tail,
        requires,
    })
}

fn render(s: &Session) -> String {
    let mut out = s.head.clone();
    for st in &s.steps {
        let mut first = true;
        for l in st.cmd.split('\n') {
            out.push_str(if first { "# " } else { "> " });
            out.push_str(l);
            out.push('\n');
            first = false;
        }
        for l in &st.expected {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(&s.tail);
    out
}

// ---------------------------------------------------------------------------------------------------
// Matching one line against a pattern with placeholders.

#[derive(Debug, Clone)]
enum Tok {
    Lit(Vec<char>),
    /// A run of characters of one class, at least `min` and at most `max` long.
    Class {
        name: &'static str,
        pred: fn(char) -> bool,
        min: usize,
        max: usize,
    },
}

/// A placeholder: its name, the characters it takes, and how many (at least, at most).
type Placeholder = (&'static str, fn(char) -> bool, usize, usize);

const PLACEHOLDERS: &[Placeholder] = &[
    ("[..]", |_| true, 0, usize::MAX),
    (
        "[ID]",
        |c| c.is_ascii_digit() || ('a'..='f').contains(&c),
        12,
        12,
    ),
    ("[HEX]", |c| c.is_ascii_hexdigit(), 1, usize::MAX),
    ("[N]", |c| c.is_ascii_digit(), 1, usize::MAX),
    ("[IP]", |c| c.is_ascii_digit() || c == '.', 7, 15),
    (
        "[TIME]",
        |c| c.is_ascii_digit() || ":.msh".contains(c),
        1,
        usize::MAX,
    ),
    (
        "[DATE]",
        |c| c.is_ascii_alphanumeric() || c == ' ' || c == ':',
        1,
        usize::MAX,
    ),
];

fn tokens(pattern: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut lit = String::new();
    let mut rest = pattern;
    'outer: while !rest.is_empty() {
        for (name, pred, min, max) in PLACEHOLDERS {
            if let Some(r) = rest.strip_prefix(name) {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit).chars().collect()));
                }
                toks.push(Tok::Class {
                    name,
                    pred: *pred,
                    min: *min,
                    max: *max,
                });
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit.chars().collect()));
    }
    toks
}

fn match_toks(toks: &[Tok], text: &[char]) -> bool {
    match toks.first() {
        None => text.is_empty(),
        Some(Tok::Lit(l)) => text.starts_with(l) && match_toks(&toks[1..], &text[l.len()..]),
        Some(Tok::Class { pred, min, max, .. }) => {
            let run = text.iter().take_while(|c| pred(**c)).count().min(*max);
            (*min..=run)
                .rev()
                .any(|k| match_toks(&toks[1..], &text[k..]))
        }
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let text: Vec<char> = line.chars().collect();
    match_toks(&tokens(pattern), &text)
}

fn lines_match(pats: &[String], lines: &[String]) -> bool {
    match pats.first() {
        None => lines.is_empty(),
        Some(p) if p == "..." => (0..=lines.len()).any(|k| lines_match(&pats[1..], &lines[k..])),
        Some(p) => {
            !lines.is_empty() && line_matches(p, &lines[0]) && lines_match(&pats[1..], &lines[1..])
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Aligning expected and actual lines: for the diff, and for blessing.

enum Op {
    /// The pattern line matched this actual line.
    Same(usize),
    /// `...` absorbed this actual line.
    Absorbed(usize, usize),
    /// Only in the expectation.
    Old(usize),
    /// Only in the output.
    New(usize),
}

fn align(pats: &[String], lines: &[String]) -> Vec<Op> {
    let (n, m) = (pats.len(), lines.len());
    // best[i][j]: the most matched lines aligning pats[i..] with lines[j..].
    let mut best = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let mut b = best[i + 1][j];
            if j < m {
                // an output line left over, or absorbed by `...`: both score nothing
                b = b.max(best[i][j + 1]);
                if pats[i] != "..." && line_matches(&pats[i], &lines[j]) {
                    b = b.max(best[i + 1][j + 1] + 1);
                }
            }
            best[i][j] = b;
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && pats[i] == "..." && best[i][j] > 0 && best[i][j] == best[i][j + 1] {
            ops.push(Op::Absorbed(i, j));
            j += 1;
        } else if i < n
            && j < m
            && pats[i] != "..."
            && line_matches(&pats[i], &lines[j])
            && best[i][j] == best[i + 1][j + 1] + 1
        {
            ops.push(Op::Same(i));
            i += 1;
            j += 1;
        } else if i < n && best[i][j] == best[i + 1][j] {
            ops.push(Op::Old(i));
            i += 1;
        } else {
            ops.push(Op::New(j));
            j += 1;
        }
    }
    ops
}

fn diff(pats: &[String], lines: &[String]) -> String {
    let mut out = String::new();
    for op in align(pats, lines) {
        match op {
            Op::Same(i) => out.push_str(&format!("  {}\n", pats[i])),
            Op::Absorbed(_, j) => out.push_str(&format!("  {}   (…)\n", lines[j])),
            Op::Old(i) if pats[i] == "..." => out.push_str("  ...\n"),
            Op::Old(i) => out.push_str(&format!("- {}\n", pats[i])),
            Op::New(j) => out.push_str(&format!("+ {}\n", lines[j])),
        }
    }
    out
}

/// Put the placeholders of `old` into `new` where the literal text around them is still there.
fn transplant(old: &str, new: &str) -> String {
    let toks = tokens(old);
    if !toks.iter().any(|t| matches!(t, Tok::Class { .. })) {
        return new.to_string();
    }
    let text: Vec<char> = new.chars().collect();
    let mut out = String::new();
    let mut p = 0;
    let mut pending: Option<&'static str> = None;
    for t in &toks {
        match t {
            Tok::Class { name, .. } => {
                if pending.is_some() {
                    return new.to_string(); // two placeholders in a row: cannot split the text
                }
                pending = Some(name);
            }
            Tok::Lit(l) => {
                let found =
                    (p..=text.len().saturating_sub(l.len())).find(|&q| text[q..].starts_with(l));
                let Some(q) = found else {
                    return new.to_string();
                };
                match pending.take() {
                    Some(name) => out.push_str(name),
                    None => out.extend(&text[p..q]),
                }
                out.extend(l.iter());
                p = q + l.len();
            }
        }
    }
    match pending {
        Some(name) => out.push_str(name),
        None => out.extend(&text[p..]),
    }
    if line_matches(&out, new) {
        out
    } else {
        new.to_string()
    }
}

/// A line new to the expectation, with the values that change from run to run replaced: dates as
/// `ls -l` prints them (`Nov 29 14:51`) by `[DATE]`, container ids (12 hex digits) by `[ID]`.
fn redact(line: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c: Vec<char> = line.chars().collect();
    let is_date = |i: usize| -> bool {
        // "Mmm dd hh:mm": 12 characters, the day padded with a space
        if i + 12 > c.len()
            || (i > 0 && c[i - 1].is_alphanumeric())
            || (i + 12 < c.len() && c[i + 12].is_alphanumeric())
            || !c[i..i + 12].iter().all(char::is_ascii)
        {
            return false;
        }
        // ASCII only from here: byte indices are character indices
        let s: String = c[i..i + 12].iter().collect();
        let b = s.as_bytes();
        MONTHS.contains(&&s[..3])
            && b[3] == b' '
            && (b[4] == b' ' || b[4].is_ascii_digit())
            && b[5].is_ascii_digit()
            && b[6] == b' '
            && b[7].is_ascii_digit()
            && b[8].is_ascii_digit()
            && b[9] == b':'
            && b[10].is_ascii_digit()
            && b[11].is_ascii_digit()
    };
    let is_id = |i: usize| -> bool {
        let hex = |k: usize| k < c.len() && (c[k].is_ascii_digit() || ('a'..='f').contains(&c[k]));
        (i == 0 || !c[i - 1].is_alphanumeric())
            && (i..i + 12).all(hex)
            && (i + 12 == c.len() || !c[i + 12].is_alphanumeric())
            && c[i..i + 12].iter().any(|x| x.is_ascii_digit())
            && c[i..i + 12].iter().any(|x| x.is_ascii_alphabetic())
    };
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if is_date(i) {
            out.push_str("[DATE]");
            i += 12;
        } else if is_id(i) {
            out.push_str("[ID]");
            i += 12;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The new expectation for `lines`: the old pattern lines that still match, `...` where it still
/// absorbs lines, and the changed lines with the old placeholders put back where they fit.
fn bless(pats: &[String], lines: &[String]) -> Vec<String> {
    if lines_match(pats, lines) {
        return pats.to_vec();
    }
    let ops = align(pats, lines);
    let mut out = Vec::new();
    let mut old_gap: Vec<usize> = Vec::new();
    let mut new_gap: Vec<usize> = Vec::new();
    let flush = |out: &mut Vec<String>, old_gap: &mut Vec<usize>, new_gap: &mut Vec<usize>| {
        let olds: Vec<&String> = old_gap
            .iter()
            .map(|&i| &pats[i])
            .filter(|p| *p != "...")
            .collect();
        for (k, &j) in new_gap.iter().enumerate() {
            out.push(match olds.get(k) {
                Some(o) => transplant(o, &lines[j]),
                None => redact(&lines[j]),
            });
        }
        old_gap.clear();
        new_gap.clear();
    };
    let mut last_absorber = None;
    for op in ops {
        match op {
            Op::Old(i) if pats[i] == "..." => {
                flush(&mut out, &mut old_gap, &mut new_gap);
                if last_absorber != Some(i) {
                    out.push("...".to_string());
                    last_absorber = Some(i);
                }
            }
            Op::Old(i) => old_gap.push(i),
            Op::New(j) => new_gap.push(j),
            Op::Same(i) => {
                flush(&mut out, &mut old_gap, &mut new_gap);
                out.push(pats[i].clone());
            }
            Op::Absorbed(i, _) => {
                flush(&mut out, &mut old_gap, &mut new_gap);
                if last_absorber != Some(i) {
                    out.push("...".to_string());
                    last_absorber = Some(i);
                }
            }
        }
    }
    flush(&mut out, &mut old_gap, &mut new_gap);
    out
}

// ---------------------------------------------------------------------------------------------------
// Running a session.

fn sessions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters/sessions")
}

/// Why this host cannot run a session, if it cannot.
fn unmet(requires: &[String]) -> Option<String> {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version: Vec<u32> = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    for r in requires {
        match r.as_str() {
            "cgroup-v2" if !v2 => return Some(
                "needs cgroup v2 on /sys/fs/cgroup (this host has v1; the VM runner can run it)"
                    .into(),
            ),
            "cgroup-v1" if v2 => return Some("needs a cgroup v1 host".into()),
            "cgroup-v2" | "cgroup-v1" => {}
            "bash" if !Path::new("/bin/bash").exists() => return Some("needs bash".into()),
            "bash" => {}
            "registry" => {
                for tool in [
                    "/usr/bin/docker-registry",
                    "/usr/bin/umoci",
                    "/usr/bin/skopeo",
                ] {
                    if !Path::new(tool).exists() {
                        return Some(format!(
                            "needs {tool} (apt-get install docker-registry umoci skopeo)"
                        ));
                    }
                }
            }
            k if k.starts_with("kernel>=") => {
                let want: Vec<u32> = k["kernel>=".len()..]
                    .split('.')
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if version < want {
                    return Some(format!(
                        "needs Linux {} (this is {})",
                        &k["kernel>=".len()..],
                        release.trim()
                    ));
                }
            }
            other => return Some(format!("unknown requirement {other:?}")),
        }
    }
    None
}

/// Where the labs' scratch directories go: MINICTR_SESSIONS_DIR (the v2 VM mounts an ext4 image
/// there), else beside the test's build — but never under /tmp: the lab mounts a /tmp of its own over
/// it, and a checkout there would vanish inside the lab (the binary is copied in for the same reason).
/// The filesystem must be one the kernel can idmap (the sessions' ./rootfs is an overlay's lower).
fn lab_base() -> PathBuf {
    if let Some(d) = std::env::var_os("MINICTR_SESSIONS_DIR") {
        return PathBuf::from(d);
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if target.starts_with("/tmp") {
        PathBuf::from("/var/tmp/minictr-sessions")
    } else {
        target.join("sessions")
    }
}

/// A process that holds the session's namespaces: a network namespace with `lo` up (the lab), and
/// a private mount namespace with empty /run/minictr, /var/lib/minictr and /tmp.
struct Lab {
    holder: Child,
    dir: PathBuf,
    /// `requires: registry`: the registry on 127.0.0.1:5000 of the lab's network namespace.
    registry: Option<Child>,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let dir = lab_base().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("scratch dir");
        // /tmp on disk, as on a reader's machine (a tmpfs shows other sizes in `ls -l`)
        std::fs::create_dir_all(dir.join("tmp")).expect("scratch /tmp");
        std::fs::set_permissions(
            dir.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("chmod /tmp");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(common::rootfs())
            .arg(dir.join("rootfs"))
            .status()
            .expect("cp")
            .success();
        assert!(ok, "copy the busybox rootfs into {}", dir.display());
        std::fs::create_dir_all(dir.join("bin")).expect("scratch bin/");
        std::fs::copy(common::bin(), dir.join("bin/minictr")).expect("copy the minictr binary");
        for d in ["/run/minictr", "/var/lib/minictr"] {
            std::fs::create_dir_all(d).expect("mount point");
        }
        let setup = format!(
            "set -e; mount -t tmpfs -o mode=755 session /run/minictr; mount --bind '{}' /var/lib/minictr; \
             mount --bind '{}' /tmp; ip link set lo up; echo ready; exec sleep 100000",
            dir.join("data").display(),
            dir.join("tmp").display()
        );
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &setup,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("piped")).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "the session's namespaces could not be set up"
        );
        Lab {
            holder,
            dir,
            registry: None,
        }
    }

    /// `requires: registry`: a distribution registry on 127.0.0.1:5000 inside the lab (its own
    /// network namespace: the port is free), its storage in the session's scratch directory.
    fn start_registry(&mut self) {
        let config = self.dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                self.dir.join("registry").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("nsenter")
            .arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-n", "--", "/usr/bin/docker-registry", "serve"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("registry.log")).expect("registry log"))
            .spawn()
            .expect("start docker-registry");
        self.registry = Some(child);
        // Up to a minute: a loaded 2-core CI machine starts the registry slowly.
        for _ in 0..600 {
            let up = self.run(
                "sh",
                "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/ || true",
            );
            if up.first().is_some_and(|l| l == "200") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "the session's registry did not answer on 127.0.0.1:5000; its log:\n{}",
            std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// A reader types the next command seconds after the last one returned; the harness, at once.
    /// The host end of an exited container's veth goes with its network namespace, which the kernel
    /// destroys a moment later (chapter 6): before each command, wait (up to 3 s) until every
    /// `mc<ID>` link in the lab belongs to a container that still runs (`minictr ps -q`).
    /// Run one command in the lab, stderr merged into stdout; the output's lines.
    fn run(&self, shell: &str, cmd: &str) -> Vec<String> {
        let bin_dir = self.dir.join("bin");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("nsenter");
        // `cd` inside, not nsenter's --wd: nsenter opens that directory before it enters the mount
        // namespace, and a working directory of another mount namespace is "(unreachable)" to
        // getcwd — musl's realpath then fails (the VM's static minictr did)
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "-n"])
            .args(["--", "timeout", "-k", "5", "300", shell, "-c"])
            .arg(format!(
                "cd '{}' || exit 1\n{SETTLE}\nexec 2>&1\n{cmd}",
                self.dir.display()
            ))
            .env("PATH", path)
            // a reader types in a terminal: minictr passes its TERM on (chapter 1)
            .env("TERM", "xterm")
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("MINICTR_") {
                c.env_remove(k);
            }
        }
        let out = c.output().expect("nsenter");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Containers the session left behind (it must remove what it made), removed now.
    fn leftovers(&self) -> Vec<String> {
        let left = self.run("sh", "ls /run/minictr | grep -E '^[0-9a-f]{12}$' || true");
        if !left.is_empty() {
            self.run("sh", &format!("minictr rm -f {}", left.join(" ")));
        }
        left
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut r) = self.registry.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The session files, sorted, whose name contains `only` (MINICTR_SESSIONS).
fn session_files(only: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sessions_dir())
        .expect("chapters/sessions")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(only))
        })
        .collect();
    files.sort();
    files
}

/// Run one session in a lab of its own; returns what differs (empty when it matches). With
/// `bless_mode`, the expected output is rewritten instead.
fn run_session(name: &str, session: &mut Session, bless_mode: bool) -> String {
    // `requires: bash`: job specs (%1), the `time` keyword and bash's own messages
    let shell = if session.requires.iter().any(|r| r == "bash") {
        "bash"
    } else {
        "sh"
    };
    let mut lab = Lab::new(name);
    if session.requires.iter().any(|r| r == "registry") {
        lab.start_registry();
    }
    let mut report = String::new();
    for step in &mut session.steps {
        let lines = lab.run(shell, &step.cmd);
        if !lines_match(&step.expected, &lines) {
            if bless_mode {
                step.expected = bless(&step.expected, &lines);
            } else {
                report.push_str(&format!(
                    "# {}\n{}",
                    step.cmd.replace('\n', "\n> "),
                    diff(&step.expected, &lines)
                ));
            }
        }
    }
    let left = lab.leftovers();
    if !left.is_empty() {
        report.push_str(&format!(
            "the session left containers behind: {}\n",
            left.join(" ")
        ));
    }
    drop(lab);
    report
}

#[test]
fn sessions() {
    if !common::need_root("sessions") {
        return;
    }
    let bless_mode = std::env::var_os("MINICTR_BLESS").is_some_and(|v| v != "0");
    let only = std::env::var("MINICTR_SESSIONS").unwrap_or_default();
    // MINICTR_SESSIONS_REQUIRES=cgroup-v2: only the sessions that say they need it (the VM runs these)
    let required = std::env::var("MINICTR_SESSIONS_REQUIRES").unwrap_or_default();
    let files = session_files(&only);
    let mut failures = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("read session");
        let mut session = match parse(&text) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if !required.is_empty() && !session.requires.contains(&required) {
            continue;
        }
        if let Some(why) = unmet(&session.requires) {
            eprintln!("SKIPPED session {name}: {why}");
            continue;
        }
        eprintln!("session {name}: {} commands", session.steps.len());
        let report = run_session(&name, &mut session, bless_mode);
        if bless_mode {
            let new = render(&session);
            if new != text {
                std::fs::write(&file, new).expect("write session");
                eprintln!("blessed {}", file.display());
            }
        }
        if !report.is_empty() {
            failures.push(format!("{name} ({}):\n{report}", file.display()));
        }
    }
    let _ = std::fs::remove_dir(lab_base()); // (only when empty: every lab removed its own)
    assert!(
        failures.is_empty(),
        "sessions differ from the book (`-` expected, `+` actual; MINICTR_BLESS=1 rewrites them):\n\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------------
// The matcher and the blessing, without root.

fn v(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn placeholders_match_what_they_say() {
    assert!(line_matches("id [ID] up", "id 08893cd2eb7c up"));
    assert!(!line_matches("id [ID] up", "id 08893cd2eb7 up"));
    assert!(line_matches(
        "[N] bytes in [TIME]",
        "1982256 bytes in 0m0.013s"
    ));
    assert!(line_matches("inet [IP]/16", "inet 10.213.0.2/16"));
    assert!(line_matches(
        "-rw-r--r-- 1 0 0 0 [DATE] x",
        "-rw-r--r-- 1 0 0 0 Nov 29 14:51 x"
    ));
    assert!(line_matches("a[..]z", "az"));
    assert!(line_matches("a[..]z", "a middle z"));
    assert!(!line_matches("a[..]z", "a middle"));
    assert!(line_matches("[x] stays literal", "[x] stays literal"));
    assert!(lines_match(
        &v(&["first", "...", "last"]),
        &v(&["first", "a", "b", "last"])
    ));
    assert!(lines_match(
        &v(&["first", "...", "last"]),
        &v(&["first", "last"])
    ));
    assert!(!lines_match(
        &v(&["first", "last"]),
        &v(&["first", "a", "last"])
    ));
}

#[test]
fn bless_keeps_placeholders_and_ellipses() {
    let old = v(&["container [ID] started", "...", "pid [N]", "gone"]);
    let new = v(&[
        "container 0123456789ab started",
        "x",
        "y",
        "pid 42",
        "still here",
    ]);
    assert_eq!(
        bless(&old, &new),
        v(&["container [ID] started", "...", "pid [N]", "still here"])
    );
    assert_eq!(
        transplant("size [N] of [..]", "size 12 of everything, now"),
        "size [N] of [..]"
    );
    assert_eq!(
        transplant("owned by [N]:[N]", "owned by 0:1"),
        "owned by [N]:[N]"
    );
    assert_eq!(
        transplant(
            "ls: [..]: No such file",
            "ls: /x: No such file or directory"
        ),
        "ls: [..]: No such file or directory"
    );
    assert_eq!(
        bless(&v(&["a", "...", "b"]), &v(&["a", "c"])),
        v(&["a", "...", "c"])
    );
    assert_eq!(transplant("plain", "changed"), "changed");
    assert_eq!(
        redact("-rw-r--r-- 1 0 0  0 Dec  1 02:15 resolv.conf"),
        "-rw-r--r-- 1 0 0  0 [DATE] resolv.conf"
    );
    assert_eq!(
        redact("/run/minictr/08893cd2eb7c/root and deadbeefdeadbeef"),
        "/run/minictr/[ID]/root and deadbeefdeadbeef"
    );
    // a multi-byte character near where a date could start (found by a `--explain` line)
    assert_eq!(
        redact("[ch01 namespaces] clone3(…) — the child"),
        "[ch01 namespaces] clone3(…) — the child"
    );
}

#[test]
fn session_files_parse_and_render_back() {
    let text = "<!-- requires: cgroup-v2 -->\n```console\n# echo a \\\n> b\na b\n# true\n```\n";
    let s = parse(text).expect("parse");
    assert_eq!(s.requires, v(&["cgroup-v2"]));
    assert_eq!(s.steps[0].cmd, "echo a \\\nb");
    assert_eq!(s.steps[0].expected, v(&["a b"]));
    assert_eq!(render(&s), text);
    for e in std::fs::read_dir(sessions_dir()).expect("chapters/sessions") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|e| e == "md") {
            let t = std::fs::read_to_string(&p).expect("read");
            let s = parse(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                render(&s),
                t,
                "{} does not render back unchanged",
                p.display()
            );
        }
    }
}
