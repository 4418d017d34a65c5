//! /sys/fs/cgroup inside the container (chapter 4), planned as data: this stage decides what is
//! mounted where, the root filesystem stage makes the mounts (the orchestrator hands one to the other).

use super::Inside;
use nix::mount::MsFlags;
use std::path::PathBuf;

/// One step of the container's /sys/fs/cgroup, a path inside the container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsStep {
    /// mount(source, target, fstype, flags, data); `fstype: None` with `MS_BIND` is a bind mount.
    Mount {
        source: String,
        target: PathBuf,
        fstype: Option<&'static str>,
        flags: MsFlags,
        data: Option<&'static str>,
    },
    /// Bind `source` onto a new directory `name` of the tmpfs that an earlier step mounted at `at`
    /// (empty and fresh, so `name` is created and opened inside it: no lookup from the root, no
    /// symlink to fear).
    BindInto {
        source: String,
        at: PathBuf,
        name: String,
    },
    /// Make the mount at this path (and everything under it) read-only.
    ReadOnly(PathBuf),
}

// ANCHOR: cgroupfs
/// ch04: /sys/fs/cgroup inside the container, read-only. v2: a cgroup2 mount, which in the cgroup
/// namespace shows the container's cgroup as its root. v1 (as runc does): a tmpfs holding one
/// directory per hierarchy, each with the container's own cgroup directory bound on it.
pub fn cgroupfs_plan(inside: &Inside, cgroupns: bool) -> Vec<FsStep> {
    let at = PathBuf::from("/sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let bind = |host: &PathBuf, target: PathBuf| FsStep::Mount {
        source: host.display().to_string(),
        target,
        fstype: None,
        flags: MsFlags::MS_BIND,
        data: None,
    };
    match inside {
        Inside::V2 { .. } if cgroupns => vec![FsStep::Mount {
            source: "cgroup2".into(),
            target: at,
            fstype: Some("cgroup2"),
            flags: flags | MsFlags::MS_RDONLY,
            data: None,
        }],
        Inside::V2 { host } => vec![bind(host, at.clone()), FsStep::ReadOnly(at)],
        Inside::V1 { hierarchies } => {
            let mut steps = vec![FsStep::Mount {
                source: "tmpfs".into(),
                target: at.clone(),
                fstype: Some("tmpfs"),
                flags,
                data: Some("mode=755"),
            }];
            for (name, host) in hierarchies {
                steps.push(FsStep::BindInto {
                    source: host.display().to_string(),
                    at: at.clone(),
                    name: name.clone(),
                });
            }
            steps.push(FsStep::ReadOnly(at));
            steps
        }
    }
}
// ANCHOR_END: cgroupfs

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_a_tmpfs_with_one_bind_per_hierarchy_then_read_only() {
        let inside = Inside::V1 {
            hierarchies: vec![
                (
                    "memory".into(),
                    PathBuf::from("/sys/fs/cgroup/memory/minictr/x"),
                ),
                (
                    "pids".into(),
                    PathBuf::from("/sys/fs/cgroup/pids/minictr/x"),
                ),
            ],
        };
        let steps = cgroupfs_plan(&inside, true);
        assert_eq!(steps.len(), 4);
        assert!(matches!(
            &steps[0],
            FsStep::Mount {
                fstype: Some("tmpfs"),
                ..
            }
        ));
        assert!(
            matches!(&steps[2], FsStep::BindInto { at, name, source } if at.ends_with("fs/cgroup") && name == "pids" && source.ends_with("minictr/x"))
        );
        assert_eq!(steps[3], FsStep::ReadOnly("/sys/fs/cgroup".into()));
    }

    #[test]
    fn v2_in_a_cgroup_namespace_is_one_read_only_cgroup2_mount() {
        let host = PathBuf::from("/sys/fs/cgroup/minictr/x");
        let steps = cgroupfs_plan(&Inside::V2 { host: host.clone() }, true);
        assert!(
            matches!(&steps[..], [FsStep::Mount { fstype: Some("cgroup2"), flags, .. }] if flags.contains(MsFlags::MS_RDONLY))
        );
        // Without one: the host's directory bound, then made read-only.
        let steps = cgroupfs_plan(&Inside::V2 { host }, false);
        assert!(matches!(&steps[1], FsStep::ReadOnly(_)));
    }
}
