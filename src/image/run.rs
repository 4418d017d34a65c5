//! `minictr run IMAGE`: what this stage gives the start sequence — which argument is an image, its
//! layers (pulled first when missing, as `docker run` does), the command its config says to run,
//! and the record a container keeps of the image it uses, so `rmi` never pulls the layers out
//! from under it.

use super::{reference, resolve, store::Store, Image};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `--pull`: when `minictr run IMAGE` downloads the image.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when it is not in the local store (Docker's default)
    #[default]
    Missing,
    /// Never: an image that is not in the store is an error
    Never,
    /// Every time (a tag may have moved)
    Always,
}

/// Chapter 9's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Images (chapter 9)")]
pub struct ImageArgs {
    /// Replace the image's Entrypoint; "" clears it. As in Docker, the image's Cmd is then dropped too
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// When to pull IMAGE from its registry
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
}

/// What a container records (in its state.json) about the image it runs: while the record exists
/// the store's garbage collection leaves these layers alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    /// The reference as pulled, e.g. `docker.io/library/alpine:3.20`.
    pub reference: String,
    /// The config digest (the image id).
    pub id: String,
    /// The layer directories, bottom first.
    pub layers: Vec<PathBuf>,
}

impl Use {
    pub fn of(image: &Image) -> Use {
        Use {
            reference: image.reference.clone(),
            id: image.id.clone(),
            layers: image.layers.clone(),
        }
    }
}

/// The containers that use an image, as (container id, what it recorded). The orchestrator reads
/// them from the runtime state; this stage only asks.
pub type InUse<'a> = &'a dyn Fn() -> Vec<(String, Use)>;

// ANCHOR: path_or_image
/// Whether `minictr run`'s first argument names a root filesystem directory (chapter 2) or an image:
/// a path that exists, or that starts with `/` or `.`, is a directory; anything else is an image
/// reference (which can never start with `/` or `.`).
pub fn is_image(arg: &Path) -> bool {
    let Some(s) = arg.to_str() else {
        return false;
    };
    !(s.starts_with(['/', '.']) || std::fs::symlink_metadata(arg).is_ok())
}
// ANCHOR_END: path_or_image

// ANCHOR: for_run
/// `minictr run IMAGE`: the image from the local store — pulled first when it is not there (or
/// always, or never, as `--pull` says), with the same progress lines as `minictr pull`, on stderr.
pub fn for_run(
    data_dir: &Path,
    arg: &Path,
    pull: PullPolicy,
    in_use: InUse<'_>,
) -> Result<Option<Image>> {
    if !is_image(arg) {
        return Ok(None);
    }
    let input = arg.to_string_lossy();
    let r = reference::parse(&input).map_err(|e| {
        crate::error::hint(
            format!(
                "{input} is neither a directory nor an image reference: {}",
                crate::error::one_line(&e)
            ),
            "give an existing root filesystem directory, or an image such as alpine:3.20 or localhost:5000/busybox",
        )
    })?;
    let present = Store::new(data_dir).load(&r.to_string())?.is_some();
    crate::explain!(
        super::CHAPTER,
        "{input} is no path: the image {r}, {} the local store",
        if present { "found in" } else { "not in" }
    );
    let fetch = || {
        super::pull_to(data_dir, &input, &[], in_use, &mut std::io::stderr()).map_err(|e| {
            // A bare word may have been meant as a directory: say which rule applied.
            if input.contains('/') {
                return e;
            }
            e.context(crate::error::hint(
                format!("{input} is no directory here, so it is the image {r}"),
                format!("a directory must exist (or be written ./{input}); an image from Docker Hub needs the internet"),
            ))
        })
    };
    match pull {
        PullPolicy::Never if !present => bail!(crate::error::hint(
            format!("no such image: {r} (and --pull never)"),
            format!("pull it with `minictr pull {input}`, or drop --pull never")
        )),
        PullPolicy::Missing if !present => {
            eprintln!("Unable to find image '{r}' locally");
            fetch()?;
        }
        PullPolicy::Always => {
            fetch()?;
        }
        _ => {}
    }
    let image = resolve(data_dir, &input)?;
    if image.layers.is_empty() {
        bail!(crate::error::hint(
            format!("{r} has no layers: there is no file to run"),
            "run an image with at least one layer"
        ));
    }
    Ok(Some(image))
}
// ANCHOR_END: for_run

// ANCHOR: command
/// The command a container of `config` runs, Docker's way: Entrypoint + Cmd, where the arguments
/// after IMAGE replace Cmd and `--entrypoint` replaces Entrypoint (and drops Cmd; "" clears it).
/// `config` is `None` for a root filesystem directory: only the command line counts.
pub fn command(
    config: Option<&super::ImageConfig>,
    entrypoint: Option<&str>,
    args: &[String],
) -> Result<Vec<String>> {
    let (entry, cmd): (Vec<String>, &[String]) = match (entrypoint, config) {
        (Some(""), _) => (Vec::new(), args),
        (Some(e), _) => (vec![e.to_string()], args),
        (None, Some(c)) if args.is_empty() => (c.entrypoint.clone(), &c.cmd),
        (None, Some(c)) => (c.entrypoint.clone(), args),
        (None, None) => (Vec::new(), args),
    };
    let command: Vec<String> = entry.into_iter().chain(cmd.iter().cloned()).collect();
    if command.is_empty() {
        bail!(match config {
            Some(_) => crate::error::hint(
                "no command: the image has no Cmd/Entrypoint and none was given",
                "name the program after the image, e.g. `minictr run IMAGE /bin/sh`",
            ),
            None => crate::error::hint(
                "no command: a root filesystem directory has no default command",
                "name the program after the directory, e.g. `minictr run ./rootfs /bin/sh`",
            ),
        });
    }
    Ok(command)
}
// ANCHOR_END: command

/// The image's environment as KEY=VALUE pairs (entries without `=` say nothing and are skipped).
pub fn env(config: &super::ImageConfig) -> Vec<(String, String)> {
    config
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ANCHOR: still_there
/// After the container recorded its [`Use`]: wait for a garbage collection that may be running
/// (the store lock, shared) and check that the layers are still there. Any later `rmi` or `pull`
/// sees the record and leaves them alone.
pub fn check_still_there(data_dir: &Path, image: &Image) -> Result<()> {
    crate::explain!(
        super::CHAPTER,
        "flock(images/.lock, LOCK_SH): state.json names {}, its layers stay; are they all there?",
        image.reference
    );
    let _shared = Store::new(data_dir).lock_shared()?;
    if let Some(gone) = image.layers.iter().find(|l| !l.is_dir()) {
        bail!(crate::error::hint(
            format!(
                "the image {} was removed while the container started (layer {} is gone)",
                image.reference,
                gone.display()
            ),
            format!("pull it again: `minictr pull {}`", image.reference)
        ));
    }
    Ok(())
}
// ANCHOR_END: still_there

/// After a container on an image ended: remove what an `rmi` or a moved tag left to it, if nobody
/// else holds the store (never waits: a running pull or rmi collects at its own end).
pub fn collect_after(data_dir: &Path, in_use: InUse<'_>) {
    let store = Store::new(data_dir);
    if let Ok(Some(lock)) = store.try_lock() {
        match store.gc(&lock, &in_use()) {
            Ok(gc) => {
                for id in gc.removed {
                    crate::explain!(
                        super::CHAPTER,
                        "layer {id} removed: its image was untagged while this container ran"
                    );
                }
            }
            Err(e) => eprintln!("minictr: warning: {}", crate::error::one_line(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn cfg(entry: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: s(entry),
            cmd: s(cmd),
            ..Default::default()
        }
    }

    #[test]
    fn docker_rules_for_entrypoint_and_cmd() {
        let c = cfg(&["/entry", "-x"], &["default"]);
        assert_eq!(
            command(Some(&c), None, &[]).unwrap(),
            s(&["/entry", "-x", "default"])
        );
        assert_eq!(
            command(Some(&c), None, &s(&["mine"])).unwrap(),
            s(&["/entry", "-x", "mine"])
        );
        // --entrypoint replaces Entrypoint and drops the image's Cmd.
        assert_eq!(
            command(Some(&c), Some("/bin/sh"), &[]).unwrap(),
            s(&["/bin/sh"])
        );
        assert_eq!(
            command(Some(&c), Some("/bin/sh"), &s(&["-c", "id"])).unwrap(),
            s(&["/bin/sh", "-c", "id"])
        );
        assert_eq!(
            command(Some(&c), Some(""), &s(&["ls"])).unwrap(),
            s(&["ls"])
        );
        let only_cmd = cfg(&[], &["/bin/sh"]);
        assert_eq!(
            command(Some(&only_cmd), None, &s(&["echo", "hi"])).unwrap(),
            s(&["echo", "hi"])
        );
        // A directory: the command line alone.
        assert_eq!(
            command(None, Some("/bin/sh"), &s(&["-c", "true"])).unwrap(),
            s(&["/bin/sh", "-c", "true"])
        );
    }

    #[test]
    fn no_command_at_all_is_a_clear_error() {
        let e = command(Some(&cfg(&[], &[])), None, &[]).unwrap_err();
        assert!(crate::error::one_line(&e).contains("the image has no Cmd/Entrypoint"));
        let e = command(Some(&cfg(&["/x"], &["y"])), Some(""), &[]).unwrap_err();
        assert!(crate::error::one_line(&e).contains("no command"));
        let e = command(None, None, &[]).unwrap_err();
        assert!(crate::error::one_line(&e).contains("directory has no default command"));
    }

    #[test]
    fn paths_are_directories_and_everything_else_an_image() {
        assert!(!is_image(Path::new("/does/not/exist")));
        assert!(!is_image(Path::new("./rootfs")));
        assert!(!is_image(Path::new("../x")));
        assert!(!is_image(Path::new(env!("CARGO_MANIFEST_DIR"))));
        assert!(is_image(Path::new("alpine")));
        assert!(is_image(Path::new("localhost:5000/busybox:latest")));
    }

    #[test]
    fn a_layer_removed_before_the_use_was_recorded_is_an_error() {
        let d = std::env::temp_dir().join(format!("minictr-still-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let store = Store::new(&d);
        drop(store.lock().unwrap());
        let layer = d.join("layers/sha256/ab");
        std::fs::create_dir_all(&layer).unwrap();
        let img = Image {
            reference: "localhost/t:1".into(),
            id: String::new(),
            layers: vec![layer.clone()],
            config: Default::default(),
        };
        assert!(check_still_there(&d, &img).is_ok());
        std::fs::remove_dir(&layer).unwrap();
        let e = check_still_there(&d, &img).unwrap_err();
        assert!(crate::error::one_line(&e).contains("was removed while the container started"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn image_env_pairs() {
        let c = ImageConfig {
            env: s(&["PATH=/usr/bin", "A=b=c", "NOVALUE", "=x"]),
            ..Default::default()
        };
        assert_eq!(
            env(&c),
            vec![
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("A".to_string(), "b=c".to_string())
            ]
        );
    }
}
