//! cgroup v1: one hierarchy (one mounted tree) per controller. The container gets a directory in
//! each hierarchy it uses, and each may sit at a different place: minictr's own cgroup differs per
//! hierarchy (/proc/self/cgroup lists one path per hierarchy).

use super::stats::{self, Stats};
use super::{container_dir, limits::Swap, mkdir, read_trim, write_file, Limits};
use crate::error::hint;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One mounted v1 hierarchy and minictr's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
    /// minictr's own cgroup in this hierarchy (host path).
    pub own: PathBuf,
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub controllers: Vec<String>,
    pub mount: PathBuf,
    /// Where creation starts: directories between it and `path` are created if missing.
    pub anchor: PathBuf,
    pub path: PathBuf,
}

// ANCHOR: files
/// One limit as a file write: the controller that owns the file, the file (the first of the names
/// that exists), the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub files: &'static [&'static str],
    pub value: String,
    /// Docker's implicit defaults are skipped when the kernel lacks the file; given flags are not.
    pub optional: bool,
    pub flag: &'static str,
}

// ANCHOR_END: files

// ANCHOR: writes
/// The v1 files behind each flag, in the order they must be written.
pub fn writes(l: &Limits) -> Vec<Write> {
    type Files = &'static [&'static str];
    let write = |controller, files: Files, value: String, flag| Write {
        controller,
        files,
        value,
        optional: false,
        flag,
    };
    let mut w = Vec::new();
    if let Some(m) = l.memory {
        // The memory limit first: memsw must never be below it.
        w.push(write(
            "memory",
            &["memory.limit_in_bytes"],
            m.to_string(),
            "--memory",
        ));
        let (total, optional) = match l.memory_swap {
            Some(Swap::Total(t)) => (t.to_string(), false),
            Some(Swap::Unlimited) => ("-1".to_string(), false),
            // Docker's default: as much swap as memory.
            None => ((m.saturating_mul(2)).to_string(), true),
        };
        let memsw = &["memory.memsw.limit_in_bytes"];
        w.push(Write {
            optional,
            ..write("memory", memsw, total, "--memory-swap")
        });
    }
    if let Some((quota, period)) = l.cpu {
        w.push(write(
            "cpu",
            &["cpu.cfs_period_us"],
            period.to_string(),
            "--cpus",
        ));
        w.push(write(
            "cpu",
            &["cpu.cfs_quota_us"],
            quota.to_string(),
            "--cpus",
        ));
    }
    if let Some(s) = l.cpu_shares {
        w.push(write("cpu", &["cpu.shares"], s.to_string(), "--cpu-shares"));
    }
    if let Some(p) = l.pids {
        let v = p.map_or("max".to_string(), |n| n.to_string());
        w.push(write("pids", &["pids.max"], v, "--pids-limit"));
    }
    if let Some(c) = &l.cpuset_cpus {
        w.push(write(
            "cpuset",
            &["cpuset.cpus"],
            c.clone(),
            "--cpuset-cpus",
        ));
    }
    if let Some(b) = l.blkio_weight {
        let files = &["blkio.weight", "blkio.bfq.weight"];
        w.push(write("blkio", files, b.to_string(), "--blkio-weight"));
    }
    w
}
// ANCHOR_END: writes

/// The hierarchies minictr always uses: accounting (cpuacct, memory, pids, blkio), throttling
/// counters (cpu) and the freezer (to kill everything at the end). cpuset only when asked for: a
/// new cpuset cgroup starts with no CPUs and must be filled before anything can join it.
const ALWAYS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "blkio", "freezer"];

/// Step 1: which directories, checking that every limit's controller is mounted.
pub fn plan_dirs(hs: &[Hierarchy], l: &Limits, parent: Option<&str>, id: &str) -> Result<Vec<Dir>> {
    for w in writes(l) {
        if !w.optional
            && !hs
                .iter()
                .any(|h| h.controllers.iter().any(|c| c == w.controller))
        {
            bail!(hint(
                format!(
                    "{} needs the {} controller, which is not mounted (cgroup v1: no /sys/fs/cgroup/{})",
                    w.flag, w.controller, w.controller
                ),
                format!("drop {}, or enable the {} controller on the host", w.flag, w.controller)
            ));
        }
    }
    let mut dirs = Vec::new();
    for h in hs {
        let used = h
            .controllers
            .iter()
            .any(|c| ALWAYS.contains(&c.as_str()) || (c == "cpuset" && l.cpuset_cpus.is_some()));
        if !used {
            continue;
        }
        let path = container_dir(&h.mount, &h.own, parent, id);
        let anchor = match parent {
            Some(p) if p.starts_with('/') => h.mount.clone(),
            _ => h.own.clone(),
        };
        dirs.push(Dir {
            controllers: h.controllers.clone(),
            mount: h.mount.clone(),
            anchor,
            path,
        });
    }
    Ok(dirs)
}

// ANCHOR: create
/// Step 2: create the directory in every hierarchy, then write the limits.
pub fn create(dirs: &[Dir], l: &Limits, created: &mut Vec<PathBuf>) -> Result<()> {
    // EXERCISE(ch04, "create the cgroup and write its limits", hint = "mkdir in every hierarchy (a new cpuset inherits its parent's cpus and mems), then write each limit file writes(l) names")
    for d in dirs {
        let is_cpuset = d.controllers.iter().any(|c| c == "cpuset");
        // The container's own directory first: its parents (`…/minictr`) are there after the
        // first run. Only when one is missing, every level from the anchor down.
        let leaf_made = mkdir_leaf(&d.path)?;
        if !leaf_made {
            let rel = d
                .path
                .strip_prefix(&d.anchor)
                .unwrap_or(&d.path)
                .to_path_buf();
            let mut cur = d.anchor.clone();
            for comp in rel.components() {
                cur.push(comp);
                let new = mkdir(&cur)?;
                if new && is_cpuset && cur != d.path {
                    // A new cpuset has no CPUs and no memory nodes: inherit the parent's.
                    inherit_cpuset(&cur)?;
                }
            }
        }
        created.push(d.path.clone());
        if is_cpuset {
            inherit_cpuset(&d.path)?;
        }
    }
    for w in writes(l) {
        let Some(d) = dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == w.controller))
        else {
            continue; // optional, checked in plan_dirs
        };
        match w.files.iter().map(|f| d.path.join(f)).find(|p| p.exists()) {
            Some(p) => write_file(&p, &w.value)?,
            None if w.optional => {}
            None => bail!(hint(
                format!(
                    "{} needs {} in the {} controller, which this kernel does not offer at {}",
                    w.flag,
                    w.files.join(" or "),
                    w.controller,
                    d.path.display()
                ),
                missing_file_hint(w.flag)
            )),
        }
    }
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: create

/// mkdir of the container's directory alone (it may exist already, as before); false when a
/// parent is missing (ENOENT), so that the caller creates the path level by level.
fn mkdir_leaf(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => {
            crate::explain!(super::CHAPTER, "mkdir {}", path.display());
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to create the cgroup {}", path.display())),
    }
}

fn missing_file_hint(flag: &str) -> String {
    match flag {
        "--blkio-weight" => "proportional I/O weights need the BFQ I/O scheduler (echo bfq > /sys/block/DEV/queue/scheduler); or drop --blkio-weight".into(),
        "--memory-swap" => "swap limits need swap accounting (boot with swapaccount=1); or drop --memory-swap".into(),
        f => format!("drop {f}"),
    }
}

fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if read_trim(&dir.join(f)).unwrap_or_default().is_empty() {
            let v = read_trim(&parent.join(f)).unwrap_or_default();
            write_file(&dir.join(f), &v)?;
        }
    }
    Ok(())
}

fn dir_of<'a>(dirs: &'a [Dir], controller: &str) -> Option<&'a Dir> {
    dirs.iter()
        .find(|d| d.controllers.iter().any(|c| c == controller))
}

// ANCHOR: stats
/// The counters, v1 names: cpuacct.usage_user/usage_sys, memory.max_usage_in_bytes, pids.peak,
/// blkio.throttle.io_service_bytes_recursive, memory.oom_control, cpu.stat.
pub fn stats(dirs: &[Dir]) -> Stats {
    let missing = |c: &str| format!("the {c} controller is not mounted");
    let file = |c: &str, f: &str| -> Result<PathBuf, String> {
        dir_of(dirs, c)
            .map(|d| d.path.join(f))
            .ok_or_else(|| missing(c))
    };
    let read_u64 = |c: &str, f: &str| -> Result<u64, String> {
        let p = file(c, f)?;
        let s = read_trim(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        s.parse::<u64>()
            .map_err(|_| format!("{}: unexpected {s:?}", p.display()))
    };
    let keyed = |c: &str, f: &str, key: &str| -> Result<u64, String> {
        let p = file(c, f)?;
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        stats::key_value(&s, key).ok_or_else(|| format!("no {key} in {}", p.display()))
    };
    let io = |which: &str| -> Result<u64, String> {
        let p = file("blkio", "blkio.throttle.io_service_bytes_recursive")?;
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(stats::sum_blkio(&s, which))
    };
    Stats {
        version: "v1",
        cpu_user_us: read_u64("cpuacct", "cpuacct.usage_user").map(|ns| ns / 1000),
        cpu_system_us: read_u64("cpuacct", "cpuacct.usage_sys").map(|ns| ns / 1000),
        memory_peak: read_u64("memory", "memory.max_usage_in_bytes"),
        pids_peak: read_u64("pids", "pids.peak")
            .map_err(|e| format!("{e} (pids.peak needs Linux 6.1 or later)")),
        io_read: io("Read"),
        io_write: io("Write"),
        oom_kills: keyed("memory", "memory.oom_control", "oom_kill"),
        throttled_us: keyed("cpu", "cpu.stat", "throttled_time").map(|ns| ns / 1000),
        throttled_periods: keyed("cpu", "cpu.stat", "nr_throttled"),
    }
}
// ANCHOR_END: stats

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minictr-v1-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn hier(root: &Path, c: &str, own: &str) -> Hierarchy {
        let mount = root.join(c);
        let own = mount.join(own.trim_start_matches('/'));
        std::fs::create_dir_all(&own).unwrap();
        Hierarchy {
            mount,
            controllers: vec![c.to_string()],
            own,
        }
    }

    #[test]
    fn the_files_behind_each_flag() {
        let l = Limits {
            memory: Some(64 << 20),
            cpu: Some((50_000, 100_000)),
            cpu_shares: Some(512),
            pids: Some(Some(32)),
            ..Default::default()
        };
        let w: Vec<(String, String)> = writes(&l)
            .into_iter()
            .map(|w| (w.files[0].to_string(), w.value))
            .collect();
        assert_eq!(
            w,
            [
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "134217728"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpu.shares", "512"),
                ("pids.max", "32"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn per_hierarchy_paths_and_writes_on_a_fixture() {
        // A fake hierarchy tree: memory nested (as on this project's CI hosts), the others at /.
        let root = tmp("fixture");
        let hs = vec![
            hier(&root, "memory", "/process_api/b63f"),
            hier(&root, "cpu", "/"),
            hier(&root, "pids", "/"),
            hier(&root, "devices", "/"),
        ];
        // The kernel creates the files with the directory; the fixture pre-creates them.
        let l = Limits {
            memory: Some(64 << 20),
            pids: Some(Some(32)),
            cpu: Some((20_000, 100_000)),
            ..Default::default()
        };
        let dirs = plan_dirs(&hs, &l, None, "abc").unwrap();
        assert_eq!(dirs.len(), 3, "devices is not used");
        assert_eq!(
            dirs[0].path,
            root.join("memory/process_api/b63f/minictr/abc")
        );
        assert_eq!(dirs[1].path, root.join("cpu/minictr/abc"));
        for d in &dirs {
            std::fs::create_dir_all(&d.path).unwrap();
        }
        for f in [
            "memory/process_api/b63f/minictr/abc/memory.limit_in_bytes",
            "cpu/minictr/abc/cpu.cfs_quota_us",
            "cpu/minictr/abc/cpu.cfs_period_us",
            "pids/minictr/abc/pids.max",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let mut created = Vec::new();
        create(&dirs, &l, &mut created).unwrap();
        assert_eq!(created.len(), 3);
        let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(
            read("memory/process_api/b63f/minictr/abc/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read("cpu/minictr/abc/cpu.cfs_quota_us"), "20000");
        assert_eq!(read("pids/minictr/abc/pids.max"), "32");
        // No memsw file (no swap accounting): Docker's implicit swap default is skipped, silently.
        assert!(!root
            .join("memory/process_api/b63f/minictr/abc/memory.memsw.limit_in_bytes")
            .exists());
        // An explicit flag whose file is missing is an error naming the file.
        let l2 = Limits {
            blkio_weight: Some(500),
            ..Default::default()
        };
        let e = plan_dirs(&hs, &l2, None, "x").unwrap_err().to_string();
        assert!(e.contains("blkio controller"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn stats_from_a_fixture() {
        let root = tmp("stats");
        let mk = |c: &str| {
            let p = root.join(c).join("minictr/abc");
            std::fs::create_dir_all(&p).unwrap();
            Dir {
                controllers: vec![c.into()],
                mount: root.join(c),
                anchor: root.join(c),
                path: p,
            }
        };
        let dirs = vec![mk("cpuacct"), mk("memory"), mk("cpu")];
        let w = |f: &str, s: &str| std::fs::write(root.join(f), s).unwrap();
        w("cpuacct/minictr/abc/cpuacct.usage_user", "1500000000\n");
        w("cpuacct/minictr/abc/cpuacct.usage_sys", "20000000\n");
        w("memory/minictr/abc/memory.max_usage_in_bytes", "67108864\n");
        w(
            "memory/minictr/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        w(
            "cpu/minictr/abc/cpu.stat",
            "nr_periods 20\nnr_throttled 18\nthrottled_time 1600000000\n",
        );
        let s = stats(&dirs);
        assert_eq!(s.cpu_user_us, Ok(1_500_000));
        assert_eq!(s.cpu_system_us, Ok(20_000));
        assert_eq!(s.memory_peak, Ok(64 << 20));
        assert_eq!(s.oom_kills, Ok(1));
        assert_eq!(s.throttled_us, Ok(1_600_000));
        assert_eq!(s.throttled_periods, Ok(18));
        assert!(s.pids_peak.unwrap_err().contains("pids controller"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
