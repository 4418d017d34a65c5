//! cgroup v2: one unified tree. A controller is usable in a cgroup only when its parent lists it in
//! `cgroup.subtree_control`; a cgroup with processes cannot pass controllers on to children (the
//! "no internal processes" rule), which is why the container's cgroup is a leaf of its own.

use super::stats::{self, Stats};
use super::{container_dir, limits, limits::Swap, mkdir, read_trim, write_file, Limits};
use crate::error::hint;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The unified hierarchy and minictr's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unified {
    pub mount: PathBuf,
    pub own: PathBuf,
}

/// The container's cgroup, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub anchor: PathBuf,
    pub path: PathBuf,
    /// Controllers to enable on the way down (those the anchor offers, of the ones minictr uses).
    pub enable: Vec<String>,
    /// Controllers a limit needs (enabling them must not fail).
    pub needed: Vec<String>,
}

/// Where creation starts: minictr's own cgroup, or the hierarchy's root for an absolute parent.
pub fn anchor(u: &Unified, parent: Option<&str>) -> PathBuf {
    match parent {
        Some(p) if p.starts_with('/') => u.mount.clone(),
        _ => u.own.clone(),
    }
}

// ANCHOR: files
/// One limit as a file write (with an alternative file where kernels differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
    pub alt: Option<(&'static str, String)>,
    pub optional: bool,
    pub flag: &'static str,
}

/// The v2 files behind each flag.
pub fn writes(l: &Limits) -> Vec<Write> {
    let write = |controller, file, value: String, flag| Write {
        controller,
        file,
        value,
        alt: None,
        optional: false,
        flag,
    };
    let mut w = Vec::new();
    if let Some(m) = l.memory {
        w.push(write("memory", "memory.max", m.to_string(), "--memory"));
        // v2 limits swap alone: memory.swap.max = (memory + swap) - memory.
        let (swap, optional) = match l.memory_swap {
            Some(Swap::Total(t)) => ((t - m).to_string(), false),
            Some(Swap::Unlimited) => ("max".to_string(), false),
            None => (m.to_string(), true), // Docker's default: as much swap as memory
        };
        w.push(Write {
            optional,
            ..write("memory", "memory.swap.max", swap, "--memory-swap")
        });
    }
    if let Some((quota, period)) = l.cpu {
        w.push(write(
            "cpu",
            "cpu.max",
            format!("{quota} {period}"),
            "--cpus",
        ));
    }
    if let Some(s) = l.cpu_shares {
        let weight = limits::shares_to_weight(s).to_string();
        w.push(write("cpu", "cpu.weight", weight, "--cpu-shares"));
    }
    if let Some(p) = l.pids {
        let v = p.map_or("max".to_string(), |n| n.to_string());
        w.push(write("pids", "pids.max", v, "--pids-limit"));
    }
    if let Some(c) = &l.cpuset_cpus {
        w.push(write("cpuset", "cpuset.cpus", c.clone(), "--cpuset-cpus"));
    }
    if let Some(b) = l.blkio_weight {
        let v = format!("default {}", limits::blkio_to_io_weight(b));
        w.push(Write {
            alt: Some(("io.bfq.weight", b.to_string())),
            ..write("io", "io.weight", v, "--blkio-weight")
        });
    }
    w
}
// ANCHOR_END: files

/// Controllers minictr enables for accounting even without limits (cpuset only when asked for).
const ACCOUNTING: [&str; 4] = ["cpu", "memory", "pids", "io"];

/// Step 1: the directory, and a check that every limit's controller is offered.
pub fn plan_dir(u: &Unified, l: &Limits, parent: Option<&str>, id: &str) -> Result<Dir> {
    let anchor = anchor(u, parent);
    let ctl = anchor.join("cgroup.controllers");
    let offered = read_trim(&ctl).unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let mut needed: Vec<String> = Vec::new();
    for w in writes(l) {
        if w.optional {
            continue;
        }
        if !offered.contains(&w.controller) {
            bail!(hint(
                format!(
                    "{} needs the {} controller, which {} does not offer (cgroup.controllers: {})",
                    w.flag,
                    w.controller,
                    anchor.display(),
                    if offered.is_empty() { "none".to_string() } else { offered.join(" ") }
                ),
                format!(
                    "enable it in the parent (echo +{c} > {}/cgroup.subtree_control), have systemd delegate it (Delegate=yes), or drop {}",
                    anchor.parent().unwrap_or(&anchor).display(),
                    w.flag,
                    c = w.controller
                )
            ));
        }
        if !needed.iter().any(|c| c == w.controller) {
            needed.push(w.controller.to_string());
        }
    }
    let enable = offered
        .iter()
        .filter(|c| ACCOUNTING.contains(c) || (**c == "cpuset" && l.cpuset_cpus.is_some()))
        .map(|c| c.to_string())
        .collect();
    Ok(Dir {
        path: container_dir(&u.mount, &u.own, parent, id),
        anchor,
        enable,
        needed,
    })
}

// ANCHOR: create
/// Step 2: enable the controllers on the way down, create the leaf, write the limits.
pub fn create(d: &Dir, l: &Limits, created: &mut Vec<PathBuf>) -> Result<()> {
    // EXERCISE(ch04, "create the cgroup and write its limits", hint = "enable the controllers in each parent's cgroup.subtree_control, mkdir the leaf, write each limit file writes(l) names")
    let rel = d
        .path
        .strip_prefix(&d.anchor)
        .unwrap_or(&d.path)
        .to_path_buf();
    let mut cur = d.anchor.clone();
    for comp in rel.components() {
        enable_controllers(&cur, d)?;
        cur.push(comp);
        mkdir(&cur)?;
        if cur == d.path {
            created.push(cur.clone());
        }
    }
    for w in writes(l) {
        let main = d.path.join(w.file);
        if main.exists() {
            write_file(&main, &w.value)?;
            continue;
        }
        if let Some((alt, v)) = &w.alt {
            let p = d.path.join(alt);
            if p.exists() {
                write_file(&p, v)?;
                continue;
            }
        }
        if w.optional {
            continue;
        }
        bail!(hint(
            format!(
                "{} needs {} in the {} controller, which this kernel does not offer at {}",
                w.flag,
                w.file,
                w.controller,
                d.path.display()
            ),
            match w.flag {
                "--blkio-weight" => "I/O weights need the BFQ scheduler or blk-iocost; or drop --blkio-weight",
                "--memory-swap" => "swap limits need swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1); or drop --memory-swap",
                _ => "drop the flag",
            }
        ));
    }
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: create

/// `echo "+cpu +memory …" > DIR/cgroup.subtree_control` for the controllers not yet enabled there.
fn enable_controllers(dir: &Path, d: &Dir) -> Result<()> {
    let sc = dir.join("cgroup.subtree_control");
    let on = read_trim(&sc).unwrap_or_default();
    let on: Vec<&str> = on.split_whitespace().collect();
    let missing: Vec<String> = d
        .enable
        .iter()
        .filter(|c| !on.contains(&c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    match write_file(&sc, &missing.join(" ")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let lacking: Vec<&String> = d
                .needed
                .iter()
                .filter(|c| !on.contains(&c.as_str()))
                .collect();
            if lacking.is_empty() {
                return Ok(()); // accounting only: go on, --stats will say what is unavailable
            }
            let busy = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.raw_os_error())
                    == Some(libc::EBUSY)
            });
            if busy {
                bail!(hint(
                    format!(
                        "cannot enable {:?} below {}: it holds processes, and cgroup v2 lets only an empty cgroup pass controllers to its children",
                        lacking, dir.display()
                    ),
                    "start minictr in a cgroup of its own, e.g. systemd-run --scope -p Delegate=yes minictr run …, or give --cgroup-parent an empty cgroup"
                ));
            }
            Err(e)
        }
    }
}

// ANCHOR: stats
/// The counters, v2 names: cpu.stat, memory.peak, pids.peak, io.stat, memory.events.
pub fn stats(dir: &Path) -> Stats {
    let read = |f: &str| -> Result<String, String> {
        let p = dir.join(f);
        std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                let c = f.split('.').next().unwrap_or(f);
                format!("no {f}: the {c} controller is not enabled for this cgroup, or the kernel is too old")
            } else {
                format!("{}: {e}", p.display())
            }
        })
    };
    let keyed = |f: &str, key: &str| -> Result<u64, String> {
        let s = read(f)?;
        stats::key_value(&s, key).ok_or_else(|| format!("no {key} in {f}"))
    };
    let num = |f: &str| -> Result<u64, String> {
        let s = read(f)?;
        s.trim()
            .parse()
            .map_err(|_| format!("{f}: unexpected {:?}", s.trim()))
    };
    let io =
        |key: &str| -> Result<u64, String> { read("io.stat").map(|s| stats::sum_io_stat(&s, key)) };
    Stats {
        version: "v2",
        cpu_user_us: keyed("cpu.stat", "user_usec"),
        cpu_system_us: keyed("cpu.stat", "system_usec"),
        memory_peak: num("memory.peak"),
        pids_peak: num("pids.peak"),
        io_read: io("rbytes"),
        io_write: io("wbytes"),
        oom_kills: keyed("memory.events", "oom_kill"),
        throttled_us: keyed("cpu.stat", "throttled_usec"),
        throttled_periods: keyed("cpu.stat", "nr_throttled"),
    }
}
// ANCHOR_END: stats

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minictr-v2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_files_behind_each_flag() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(Swap::Total(96 << 20)),
            cpu: Some((50_000, 100_000)),
            cpu_shares: Some(1024),
            pids: Some(None),
            blkio_weight: Some(500),
            ..Default::default()
        };
        let w: Vec<(&str, String)> = writes(&l).into_iter().map(|w| (w.file, w.value)).collect();
        assert_eq!(
            w,
            [
                ("memory.max", "67108864".to_string()),
                ("memory.swap.max", "33554432".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                ("cpu.weight", "39".to_string()),
                ("pids.max", "max".to_string()),
                ("io.weight", "default 4950".to_string()),
            ]
        );
    }

    #[test]
    fn plan_and_create_on_a_fixture() {
        let root = tmp("fixture");
        let own = root.join("user.slice/session-1.scope");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "cpu\n").unwrap();
        let u = Unified {
            mount: root.clone(),
            own: own.clone(),
        };
        let l = Limits {
            memory: Some(64 << 20),
            pids: Some(Some(32)),
            ..Default::default()
        };
        let d = plan_dir(&u, &l, None, "abc").unwrap();
        assert_eq!(d.path, own.join("minictr/abc"));
        assert_eq!(d.enable, ["cpu", "io", "memory", "pids"]);
        // A real cgroupfs creates the files; the fixture pre-creates the leaf with them.
        std::fs::create_dir_all(&d.path).unwrap();
        std::fs::write(d.path.join("memory.max"), "").unwrap();
        std::fs::write(d.path.join("pids.max"), "").unwrap();
        let mut created = Vec::new();
        create(&d, &l, &mut created).unwrap();
        assert_eq!(created, std::slice::from_ref(&d.path));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(own.join("cgroup.subtree_control")),
            "+io +memory +pids"
        );
        assert_eq!(read(d.path.join("memory.max")), "67108864");
        assert_eq!(read(d.path.join("pids.max")), "32");
        // A limit whose controller the parent does not offer names it.
        let l2 = Limits {
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        let e = plan_dir(&u, &l2, None, "x").unwrap_err().to_string();
        assert!(e.contains("cpuset controller"), "{e}");
        // An absolute parent starts from the hierarchy's root.
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let d3 = plan_dir(&u, &l, Some("/ci"), "abc").unwrap();
        assert_eq!(d3.path, root.join("ci/abc"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn stats_from_a_fixture() {
        let d = tmp("stats");
        let w = |f: &str, s: &str| std::fs::write(d.join(f), s).unwrap();
        w("cpu.stat", "usage_usec 420000\nuser_usec 400000\nsystem_usec 20000\nnr_periods 20\nnr_throttled 19\nthrottled_usec 1600000\n");
        w("memory.peak", "67108864\n");
        w(
            "memory.events",
            "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\n",
        );
        w("io.stat", "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n");
        let s = stats(&d);
        assert_eq!(s.cpu_user_us, Ok(400_000));
        assert_eq!(s.throttled_us, Ok(1_600_000));
        assert_eq!(s.memory_peak, Ok(64 << 20));
        assert_eq!(s.oom_kills, Ok(1));
        assert_eq!(s.io_write, Ok(8192));
        assert!(s.pids_peak.unwrap_err().contains("pids controller"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
