//! `-v HOST:CTR[:ro]` — bind mounts from the host into the container.

use super::safepath::Root;
use super::{make_readonly, mount_on};
use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A parsed `-v` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Canonical host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
    /// `:idmap` — map the volume's owners into the container's user namespace (chapter 3).
    pub idmap: bool,
    /// Whether the host path is a directory (else a file): known in the parent, which can see it.
    pub is_dir: bool,
}

// ANCHOR: parse_volume
/// Parse `HOST:CTR[:OPTS]`, OPTS a comma list of `ro`, `rw`, `idmap`. HOST must exist (no silent
/// creation on the host); CTR must be absolute and not `/`.
pub fn parse_volume(spec: &str) -> Result<Volume> {
    let usage = "use -v HOST_PATH:CONTAINER_PATH[:ro|rw][,idmap], e.g. -v /srv/data:/data:ro";
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, opts) = match parts.as_slice() {
        [h, t] => (*h, *t, ""),
        [h, t, o] => (*h, *t, *o),
        _ => bail!(crate::error::hint(
            format!("invalid volume {spec:?}"),
            usage
        )),
    };
    if host.is_empty() || target.is_empty() {
        bail!(crate::error::hint(
            format!("invalid volume {spec:?}: empty path"),
            usage
        ));
    }
    let target = container_path(spec, target, usage)?;
    let mut readonly = false;
    let mut idmap = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "idmap" => idmap = true,
            other => bail!(crate::error::hint(
                format!("invalid volume option {other:?} in {spec:?}"),
                usage
            )),
        }
    }
    let host_path = Path::new(host);
    if !host_path.is_absolute() {
        bail!(crate::error::hint(
            format!("invalid volume {spec:?}: the host path {host:?} is not absolute"),
            "give the full path, e.g. -v \"$PWD/data:/data\""
        ));
    }
    let host = host_path.canonicalize().map_err(|e| {
        crate::error::hint(
            format!("volume source {host:?} cannot be used: {e}"),
            "create it on the host first (minictr does not create host paths)",
        )
    })?;
    let is_dir = host.is_dir();
    Ok(Volume {
        host,
        target,
        readonly,
        idmap,
        is_dir,
    })
}
// ANCHOR_END: parse_volume

/// The container side of `-v`: absolute, and not the container's `/` itself.
fn container_path(spec: &str, target: &str, usage: &str) -> Result<PathBuf> {
    let target = PathBuf::from(target);
    if !target.is_absolute() {
        bail!(crate::error::hint(
            format!(
                "invalid volume {spec:?}: the container path {:?} is not absolute",
                target
            ),
            usage
        ));
    }
    if target.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir
                | std::path::Component::ParentDir
                | std::path::Component::CurDir
        )
    }) {
        bail!(crate::error::hint(
            format!("invalid volume {spec:?}: cannot mount over the container's /"),
            usage
        ));
    }
    Ok(target)
}

// ANCHOR: bind
/// Bind the host path onto its target, which is created and resolved *inside* the rootfs; `:ro`
/// makes the bind itself read-only (the host path stays writable for the host).
pub fn bind(root: &Root, v: &Volume) -> Result<()> {
    let target = target_in(root, v)?;
    let src = v
        .host
        .to_str()
        .context("volume source is not valid UTF-8")?;
    mount_on(
        src,
        target.as_fd(),
        &v.target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if v.readonly {
        // Re-resolve: the fd we mounted on points *under* the new mount; the bind is on top.
        let mounted = root.resolve(&v.target, OFlag::O_PATH)?;
        make_readonly(mounted.as_fd(), &v.target, true)?;
    }
    Ok(())
}
// ANCHOR_END: bind

// ANCHOR: attach
/// `:idmap`: attach the idmapped copy of the host path that the parent prepared (chapter 3) on the
/// target, created and resolved inside the rootfs like any other volume. `:ro` was applied by the
/// parent on the detached mount already.
pub fn attach(root: &Root, v: &Volume, prepared: OwnedFd) -> Result<()> {
    let target = target_in(root, v)?;
    crate::explain!(
        super::CHAPTER,
        "move_mount(fd {}, \"\", {:?}, \"\", MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH) — attach a prepared mount",
        prepared.as_raw_fd(),
        v.target
    );
    crate::mountapi::attach_at(prepared.as_fd(), target.as_fd()).with_context(|| {
        format!(
            "failed to attach the prepared mount on {}",
            v.target.display()
        )
    })
}
// ANCHOR_END: attach

/// The volume's mount point inside the rootfs: a directory or an empty file like the source.
fn target_in(root: &Root, v: &Volume) -> Result<OwnedFd> {
    if v.is_dir {
        root.mkdir_all(&v.target)
    } else {
        root.mkfile(&v.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rw_ro_and_idmap() {
        let v = parse_volume("/tmp:/data").unwrap();
        assert_eq!(v.target, PathBuf::from("/data"));
        assert!(!v.readonly && !v.idmap);
        assert!(parse_volume("/tmp:/data:ro").unwrap().readonly);
        let v = parse_volume("/tmp:/data:ro,idmap").unwrap();
        assert!(v.readonly && v.idmap);
    }

    #[test]
    fn refuses_bad_volumes() {
        for bad in [
            "/tmp",
            "/tmp:data",
            ":/data",
            "/tmp:",
            "/tmp:/",
            "/tmp:/data:rx",
            "relative:/data",
            "/nonexistent-minictr-src:/data",
            "/tmp:/a:ro:x",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad} should be refused");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::{clear, input};
    use proptest::prelude::*;

    /// Found by the property below: the container path was printed raw, newline and all.
    #[test]
    fn a_newline_in_a_path_stays_on_one_line() {
        clear(&parse_volume("/:t\n")).unwrap();
        clear(&parse_volume("rel\n:/x")).unwrap();
    }

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_volume_spec_is_parsed_or_clearly_refused(s in input(&["/", "/tmp", "tmp", "/etc", "/nonexistent", "..", ".", ":", ",", "ro", "rw", "idmap", "data"])) {
            clear(&parse_volume(&s))?;
        }
    }
}
