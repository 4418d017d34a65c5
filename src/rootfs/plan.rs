//! Chapter 2's mount sequence as data: [`plan`] is a pure function of the stage's [`Config`] (unit
//! tests check its order without root), [`apply`] a short loop that performs it in the child.

use super::safepath::Root;
use super::{dev, volumes, Config};
use anyhow::{bail, Context, Result};
use std::os::fd::OwnedFd;
use std::path::Path;

// ANCHOR: steps
/// One step of the root filesystem, in the order [`plan`] puts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountStep {
    /// `mount(NULL, "/", MS_REC|MS_PRIVATE)`: nothing mounted from here on reaches the host.
    Private,
    /// The container's "/" as a mount point (prepared by the parent, by another stage, or a bind).
    Root,
    /// A fresh procfs (own PID namespace), else the host's /proc bound.
    Proc {
        fresh: bool,
    },
    /// A fresh read-only sysfs (own network namespace), else the host's /sys bound read-only.
    Sys {
        fresh: bool,
    },
    /// A tmpfs on /dev with the default devices bound from the host.
    Dev,
    Devpts,
    Shm,
    /// Required with an IPC namespace of our own; skipped if refused without one.
    Mqueue {
        required: bool,
    },
    /// /dev/ptmx, /dev/fd, /dev/stdin, … as symlinks.
    DevLinks,
    /// `-v`: the volume at this index of `Config::volumes`.
    Volume(usize),
    /// `--read-only`: the root mount itself, after everything is mounted in it.
    ReadOnlyRoot,
    /// The working directory, created if missing (`chdir` comes after pivot_root).
    Workdir,
    /// A place where another stage mounts; the orchestrator, which knows both, does it.
    Other(Other),
    /// `pivot_root`: the host's files out of reach. Always last.
    Pivot,
}

/// What other stages put into the new root, at the places [`plan`] leaves for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    /// Chapter 4: /sys/fs/cgroup (after /sys).
    Cgroupfs,
    /// Chapter 5: `--tmpfs` mounts (after the volumes, before the root turns read-only).
    Tmpfs,
    /// Chapter 7: masked and read-only paths under /proc and /sys (after every mount, before pivot).
    Masks,
}
// ANCHOR_END: steps

// ANCHOR: plan
/// The mounts of the container's root, in order. Pure: the same config always gives the same plan.
pub fn plan(cfg: &Config) -> Vec<MountStep> {
    use MountStep::*;
    let mut steps = vec![
        Private,
        Root,
        Proc {
            fresh: cfg.own_pidns,
        },
        Sys {
            fresh: cfg.own_netns,
        },
        Dev,
        Devpts,
        Shm,
        Mqueue {
            required: cfg.own_ipcns,
        },
        DevLinks,
        Other(self::Other::Cgroupfs),
    ];
    steps.extend((0..cfg.volumes.len()).map(Volume));
    steps.push(Other(self::Other::Tmpfs));
    if cfg.readonly {
        steps.push(ReadOnlyRoot);
    }
    steps.extend([Workdir, Other(self::Other::Masks), Pivot]);
    steps
}
// ANCHOR_END: plan

/// Mounts the root on the path it is given.
pub type MountFn<'a> = Box<dyn FnOnce(&Path) -> Result<()> + 'a>;

/// Where the container's "/" comes from: the parent decided, the child learns it with "go".
pub enum RootSource<'a> {
    /// A detached mount the parent prepared (the overlay, an idmapped bind): attached.
    Prepared(OwnedFd),
    /// Mounted on the mountpoint by another stage, here in the child (rootless overlay, ch05).
    MountedBy(MountFn<'a>),
    /// Chapter 2's own way: the rootfs bound onto the mountpoint.
    Bind,
}

/// The parent's fds sent with "go": one prepared mount per volume (chapter 3, host root with a user
/// namespace), then the prepared root if any.
pub fn split_prepared(cfg: &Config, mut fds: Vec<OwnedFd>) -> (Vec<OwnedFd>, Option<OwnedFd>) {
    let n = if cfg.volumes_prepared {
        cfg.volumes.len().min(fds.len())
    } else {
        0
    };
    let volumes = fds.drain(..n).collect();
    (volumes, fds.pop())
}

// ANCHOR: apply
/// Perform the plan. `volumes` holds the parent's prepared volume mounts (none: each is bound
/// here); `other` does what other stages mount, when the plan reaches their place.
pub fn apply(
    plan: &[MountStep],
    cfg: &Config,
    source: RootSource<'_>,
    volumes: Vec<OwnedFd>,
    other: &mut dyn FnMut(Other, &Root) -> Result<()>,
) -> Result<()> {
    let mut source = Some(source);
    let mut prepared = prepared_volumes(cfg, volumes)?;
    let mut root: Option<Root> = None;
    for step in plan {
        let r = match (step, root.as_ref()) {
            (MountStep::Private, _) => {
                super::make_private()?;
                continue;
            }
            (MountStep::Root, _) => {
                let source = source.take().context("the mount plan has two roots")?;
                root = Some(mount_root(cfg, source)?);
                continue;
            }
            (_, Some(r)) => r,
            (_, None) => bail!("the mount plan reaches {step:?} before the root"),
        };
        match step {
            MountStep::Proc { fresh } => super::mount_proc(r, *fresh)?,
            MountStep::Sys { fresh } => super::mount_sys(r, *fresh)?,
            MountStep::Dev => dev::mount_dev(r)?,
            MountStep::Devpts => dev::mount_devpts(r)?,
            MountStep::Shm => dev::mount_shm(r)?,
            MountStep::Mqueue { required } => dev::mount_mqueue(r, *required)?,
            MountStep::DevLinks => dev::links(r)?,
            MountStep::Volume(i) => mount_volume(r, cfg, *i, prepared[*i].take())?,
            MountStep::ReadOnlyRoot => super::make_root_readonly(r)?,
            MountStep::Workdir => super::prepare_workdir(r, &cfg.workdir)?,
            MountStep::Other(o) => other(*o, r)?,
            MountStep::Pivot => return super::pivot(root.take().context("no root to pivot into")?),
            MountStep::Private | MountStep::Root => {}
        }
    }
    bail!("the mount plan ends without pivot_root")
}
// ANCHOR_END: apply

fn mount_root(cfg: &Config, source: RootSource<'_>) -> Result<Root> {
    match source {
        RootSource::Prepared(fd) => super::mount_root(cfg, Some(fd)),
        RootSource::Bind => super::mount_root(cfg, None),
        RootSource::MountedBy(mount) => {
            mount(&cfg.mountpoint)?;
            Root::open(&cfg.mountpoint)
        }
    }
}

/// One slot per volume: the parent's prepared mount, or `None` to bind it here.
fn prepared_volumes(cfg: &Config, fds: Vec<OwnedFd>) -> Result<Vec<Option<OwnedFd>>> {
    if fds.is_empty() {
        return Ok(cfg.volumes.iter().map(|_| None).collect());
    }
    if fds.len() != cfg.volumes.len() {
        bail!(
            "expected {} prepared volumes, got {}",
            cfg.volumes.len(),
            fds.len()
        );
    }
    Ok(fds.into_iter().map(Some).collect())
}

fn mount_volume(root: &Root, cfg: &Config, i: usize, fd: Option<OwnedFd>) -> Result<()> {
    let v = cfg
        .volumes
        .get(i)
        .context("the mount plan names a missing volume")?;
    match fd {
        Some(fd) => volumes::attach(root, v, fd),
        None => volumes::bind(root, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(volumes: &[&str], readonly: bool, own: bool) -> Config {
        Config {
            rootfs: "/images/busybox".into(),
            mountpoint: "/run/minictr/c1/root".into(),
            volumes_prepared: false,
            volumes: volumes
                .iter()
                .map(|t| super::super::Volume {
                    host: "/srv".into(),
                    target: PathBuf::from(t),
                    readonly: false,
                    idmap: false,
                    is_dir: true,
                })
                .collect(),
            workdir: "/".into(),
            readonly,
            own_netns: own,
            own_ipcns: own,
            own_pidns: own,
        }
    }

    impl MountStep {
        /// The path inside the container this step mounts on, for the steps that create a mount.
        fn mounts_on<'a>(&self, cfg: &'a Config) -> Option<&'a Path> {
            let p = |s: &'static str| Some(Path::new(s));
            match self {
                MountStep::Root => p("/"),
                MountStep::Proc { .. } => p("/proc"),
                MountStep::Sys { .. } => p("/sys"),
                MountStep::Dev => p("/dev"),
                MountStep::Devpts => p("/dev/pts"),
                MountStep::Shm => p("/dev/shm"),
                MountStep::Mqueue { .. } => p("/dev/mqueue"),
                MountStep::Other(Other::Cgroupfs) => p("/sys/fs/cgroup"),
                MountStep::Volume(i) => cfg.volumes.get(*i).map(|v| v.target.as_path()),
                _ => None,
            }
        }
    }

    fn all_configs() -> Vec<Config> {
        let mut v = Vec::new();
        for vols in [&[][..], &["/data"], &["/data", "/dev/extra", "/proc/x"]] {
            for ro in [false, true] {
                for own in [false, true] {
                    v.push(config(vols, ro, own));
                }
            }
        }
        v
    }

    fn pos(plan: &[MountStep], f: impl Fn(&MountStep) -> bool) -> Vec<usize> {
        plan.iter()
            .enumerate()
            .filter(|(_, s)| f(s))
            .map(|(i, _)| i)
            .collect()
    }

    fn first(plan: &[MountStep], f: impl Fn(&MountStep) -> bool) -> usize {
        pos(plan, f)[0]
    }

    #[test]
    fn private_first_root_second_pivot_last() {
        for cfg in all_configs() {
            let p = plan(&cfg);
            assert_eq!(p[0], MountStep::Private, "{p:?}");
            assert_eq!(p[1], MountStep::Root, "{p:?}");
            assert_eq!(p.last(), Some(&MountStep::Pivot), "{p:?}");
            assert_eq!(pos(&p, |s| *s == MountStep::Pivot).len(), 1);
            assert_eq!(pos(&p, |s| *s == MountStep::Root).len(), 1);
        }
    }

    #[test]
    fn a_mount_comes_after_the_mounts_above_it() {
        // Mounting /dev/pts before /dev would hide it under /dev's tmpfs; the same for a volume
        // under /proc, and for everything under the root.
        for cfg in all_configs() {
            let p = plan(&cfg);
            for (i, a) in p.iter().enumerate() {
                for (j, b) in p.iter().enumerate() {
                    let (Some(pa), Some(pb)) = (a.mounts_on(&cfg), b.mounts_on(&cfg)) else {
                        continue;
                    };
                    if pa != pb && pb.starts_with(pa) {
                        assert!(i < j, "{a:?} on {pa:?} must come before {b:?} on {pb:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn chapter_two_order() {
        for cfg in all_configs() {
            let p = plan(&cfg);
            let proc = first(&p, |s| matches!(s, MountStep::Proc { .. }));
            let dev = first(&p, |s| *s == MountStep::Dev);
            let masks = first(&p, |s| *s == MountStep::Other(Other::Masks));
            let cgroupfs = first(&p, |s| *s == MountStep::Other(Other::Cgroupfs));
            let tmpfs = first(&p, |s| *s == MountStep::Other(Other::Tmpfs));
            let kernel = pos(&p, |s| {
                matches!(
                    s,
                    MountStep::Proc { .. }
                        | MountStep::Sys { .. }
                        | MountStep::Dev
                        | MountStep::Devpts
                        | MountStep::Shm
                        | MountStep::Mqueue { .. }
                        | MountStep::Other(Other::Cgroupfs)
                )
            });
            let vols = pos(&p, |s| matches!(s, MountStep::Volume(_)));
            assert_eq!(vols.len(), cfg.volumes.len());
            assert!(proc < masks, "/proc before its masks: {p:?}");
            for sub in [MountStep::Devpts, MountStep::Shm, MountStep::DevLinks] {
                assert!(dev < first(&p, |s| *s == sub), "/dev before {sub:?}");
            }
            assert!(dev < first(&p, |s| matches!(s, MountStep::Mqueue { .. })));
            let last_kernel = *kernel.iter().max().unwrap();
            assert!(
                vols.iter().all(|v| *v > last_kernel),
                "volumes after /proc, /sys, /dev: {p:?}"
            );
            assert!(cgroupfs > first(&p, |s| matches!(s, MountStep::Sys { .. })));
            let last_mount = vols.iter().copied().chain([tmpfs]).max().unwrap();
            // Masks go on top of every mount (a volume on /proc/x included), before pivot_root.
            assert!(masks > last_mount && masks + 1 == p.len() - 1, "{p:?}");
            match pos(&p, |s| *s == MountStep::ReadOnlyRoot).as_slice() {
                [] => assert!(!cfg.readonly),
                [ro] => assert!(
                    cfg.readonly && *ro > last_mount,
                    "read-only after the volumes: {p:?}"
                ),
                _ => panic!("two read-only remounts: {p:?}"),
            }
        }
    }

    #[test]
    fn the_namespaces_decide_fresh_or_bound() {
        let p = plan(&config(&[], false, false));
        assert!(p.contains(&MountStep::Proc { fresh: false }));
        assert!(p.contains(&MountStep::Sys { fresh: false }));
        assert!(p.contains(&MountStep::Mqueue { required: false }));
        let p = plan(&config(&[], false, true));
        assert!(p.contains(&MountStep::Proc { fresh: true }));
        assert!(p.contains(&MountStep::Sys { fresh: true }));
        assert!(p.contains(&MountStep::Mqueue { required: true }));
    }

    #[test]
    fn prepared_fds_split_into_volumes_and_root() {
        let fd = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let mut cfg = config(&["/a", "/b"], false, true);
        let (v, r) = split_prepared(&cfg, vec![fd(), fd(), fd()]);
        assert_eq!((v.len(), r.is_some()), (0, true));
        cfg.volumes_prepared = true;
        let (v, r) = split_prepared(&cfg, vec![fd(), fd(), fd()]);
        assert_eq!((v.len(), r.is_some()), (2, true));
        let (v, r) = split_prepared(&cfg, vec![fd(), fd()]);
        assert_eq!((v.len(), r.is_some()), (2, false));
        assert!(prepared_volumes(&cfg, vec![fd()]).is_err());
        assert_eq!(prepared_volumes(&cfg, vec![]).unwrap().len(), 2);
    }
}
