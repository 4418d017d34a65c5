//! Chapter 9 — Images: `minictr pull` fetches an image from an OCI registry — a manifest naming a
//! config and a stack of layer tarballs, every piece addressed by its sha256 — verifies each byte,
//! and unpacks each layer once into its own directory, ready to be an overlay lower layer
//! (chapter 5). `minictr images` lists what was pulled, `minictr rmi` removes it.

pub mod manifest;
mod progress;
pub mod reference;
pub mod registry;
pub mod run;
pub mod store;
pub mod unpack;

use anyhow::{bail, Context, Result};
pub use manifest::ImageConfig;
use manifest::{ConfigBlob, Descriptor, Document};
use progress::Progress;
pub use run::{for_run, ImageArgs, InUse, Use};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use store::{LayerRecord, Locked, Record, Store};

pub const CHAPTER: &str = "ch09 images";

// ANCHOR: image
/// A pulled image, ready to run: what the orchestrator needs from this stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Image {
    /// Canonical reference, e.g. `docker.io/library/alpine:3.20`.
    pub reference: String,
    /// The config digest — Docker's "IMAGE ID".
    pub id: String,
    /// The unpacked layer directories, bottom first: `layers[0]` is the base (the overlay's lowest
    /// lower layer), the last one lies on top.
    pub layers: Vec<PathBuf>,
    /// Env, WorkingDir, Entrypoint, Cmd, User from the image config.
    pub config: ImageConfig,
}

/// Find a pulled image by reference (no network): its layer directories and its config. Errors
/// with a hint to `minictr pull` when it is not in the store.
pub fn resolve(data_dir: &Path, reference: &str) -> Result<Image> {
    let r = reference::parse(reference)?;
    let store = Store::new(data_dir);
    let Some(rec) = store.load(&r.to_string())? else {
        bail!(crate::error::hint(
            format!("no such image: {r}"),
            format!("pull it first with `minictr pull {reference}` (`minictr images` lists the pulled ones)")
        ));
    };
    let mut layers = Vec::with_capacity(rec.layers.len());
    for l in &rec.layers {
        let dir = store.layer_path(&l.diff_id);
        if !dir.is_dir() {
            bail!(crate::error::hint(
                format!(
                    "layer {} of {r} is missing from {}",
                    l.diff_id,
                    dir.display()
                ),
                format!("pull the image again: `minictr pull {reference}`")
            ));
        }
        layers.push(dir);
    }
    let cfg = read_config(&store, &rec.config_digest)?;
    Ok(Image {
        reference: rec.reference,
        id: rec.config_digest,
        layers,
        config: cfg.config,
    })
}
// ANCHOR_END: image

fn read_config(store: &Store, digest: &str) -> Result<ConfigBlob> {
    let p = store.blob_path(digest);
    let data = std::fs::read(&p)
        .with_context(|| format!("failed to read the image config {}", p.display()))?;
    serde_json::from_slice(&data)
        .with_context(|| format!("the image config {} is malformed", p.display()))
}

fn privilege() -> unpack::Privilege {
    if nix::unistd::geteuid().is_root() {
        unpack::Privilege::Root
    } else {
        unpack::Privilege::Rootless
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

// ANCHOR: fetch_blob
/// Make sure blob `d` is in the store: download it to a temporary file (verified while streaming,
/// see [`registry::Registry::blob`]) and rename it into place only once it matched its digest.
fn fetch_blob(
    store: &Store,
    reg: &mut registry::Registry,
    d: &Descriptor,
    progress: &Progress,
) -> Result<PathBuf> {
    reference::validate_digest(&d.digest)?;
    let path = store.blob_path(&d.digest);
    if path.exists() {
        return Ok(path);
    }
    let tmp = store.temp_for(&path);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp.path)
            .with_context(|| format!("failed to create {}", tmp.path.display()))?,
    );
    progress.status("downloading");
    crate::explain!(
        CHAPTER,
        "GET /v2/…/blobs/{} → {:?}, sha256 checked while streaming",
        d.digest,
        tmp.path
    );
    reg.blob(&d.digest, d.size, &mut f, &|n| progress.set(n))?;
    let f = f
        .into_inner()
        .map_err(|e| e.into_error())
        .context("failed to write the download")?;
    f.sync_all()
        .context("failed to flush the download to disk")?;
    tmp.persist(&path)?;
    Ok(path)
}
// ANCHOR_END: fetch_blob

/// A reader that hashes what passes through it: the diff_id of a layer is the sha256 of the tar
/// after decompression.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

// ANCHOR: unpack_layer
/// Unpack a verified layer blob into `layers/sha256/<diff_id>/` unless it is there already (shared
/// with another image). Unpacked under a temporary name and renamed: a killed pull never leaves a
/// half-unpacked layer under the real name. The tar's sha256 must be the config's diff_id.
fn unpack_layer(
    store: &Store,
    blob: &Path,
    d: &Descriptor,
    diff_id: &str,
    progress: &Progress,
) -> Result<u64> {
    reference::validate_digest(diff_id).context("the image config lists a bad diff_id")?;
    let dest = store.layer_path(diff_id);
    if dest.is_dir() {
        return Ok(0);
    }
    let compression = manifest::layer_compression(&d.media_type)?;
    let tmp = store.temp_for(&dest);
    std::fs::create_dir(&tmp.path)
        .with_context(|| format!("failed to create {}", tmp.path.display()))?;
    progress.status("unpacking");
    crate::explain!(
        CHAPTER,
        "unpack {} into {:?} (whiteouts → overlayfs whiteouts), then rename to {:?}",
        short(&d.digest),
        tmp.path,
        dest
    );
    let file = std::io::BufReader::new(
        std::fs::File::open(blob).with_context(|| format!("failed to open {}", blob.display()))?,
    );
    let stream: Box<dyn Read> = match compression {
        manifest::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        manifest::Compression::None => Box::new(file),
    };
    let mut hashing = Hashing {
        inner: stream,
        hasher: Sha256::new(),
    };
    let report = unpack::unpack(&mut hashing, &tmp.path, privilege())
        .with_context(|| format!("failed to unpack layer {}", d.digest))?;
    // The tar ends with padding the unpacker need not read: hash it too.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .context("failed to read the layer to its end")?;
    let got = format!("sha256:{:x}", hashing.hasher.finalize());
    if got != diff_id {
        bail!(crate::error::hint(
            format!(
                "layer {} unpacks to {got}, the image config says {diff_id}",
                d.digest
            ),
            "the image is inconsistent; nothing was stored"
        ));
    }
    if report.devices_skipped + report.foreign_owners + report.xattrs_skipped > 0 {
        eprintln!(
            "minictr: rootless: layer {}: {} device node(s) skipped, {} file capabilities dropped, {} entries owned by other users than root now owned by you (root in the container)",
            short(&d.digest),
            report.devices_skipped,
            report.xattrs_skipped,
            report.foreign_owners
        );
    }
    tmp.persist(&dest)?;
    Ok(report.bytes)
}
// ANCHOR_END: unpack_layer

// ANCHOR: pull
/// `minictr pull REF`: manifest (resolving an index to this platform), config, then each layer:
/// downloaded once, verified, unpacked once. The record that makes the image exist is written last.
pub fn pull(data_dir: &Path, input: &str, insecure: &[String], in_use: InUse<'_>) -> Result<i32> {
    pull_to(data_dir, input, insecure, in_use, &mut std::io::stdout())
}

/// [`pull`] with its status lines going to `out` (stderr for `minictr run IMAGE`: stdout is the
/// container's).
pub fn pull_to(
    data_dir: &Path,
    input: &str,
    insecure: &[String],
    in_use: InUse<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let r = reference::parse(input)?;
    pull_into(data_dir, &r, insecure, in_use, out).map_err(|e| {
        let e = if disk_full(&e) {
            e.context(crate::error::hint(
                format!("the disk holding {} is full", data_dir.display()),
                "free some space (`minictr rmi` unused images) or set MINICTR_DATA_DIR to a larger disk; nothing half-written was kept",
            ))
        } else {
            e
        };
        e.context(format!("failed to pull {r}"))
    })
}

/// ENOSPC anywhere in the chain (std or nix errors).
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC))
            || c.downcast_ref::<nix::errno::Errno>() == Some(&nix::errno::Errno::ENOSPC)
    })
}
// ANCHOR_END: pull

// ANCHOR: pull_into
fn pull_into(
    data_dir: &Path,
    r: &reference::Reference,
    insecure: &[String],
    in_use: InUse<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let store = Store::new(data_dir);
    let mut reg = registry::Registry::new(r, insecure);
    let lock = store.lock()?;
    let _ = writeln!(
        out,
        "{}: Pulling from {}",
        r.tag.as_deref().unwrap_or(r.manifest_ref()),
        r.name()
    );

    crate::explain!(
        CHAPTER,
        "GET /v2/{}/manifests/{} (Accept: OCI index/manifest, Docker list/manifest v2)",
        r.repository,
        r.manifest_ref()
    );
    let (m, body, digest, named_digest) = resolve_manifest(&mut reg, r)?;
    let want = manifest::host_platform();
    // The manifest itself is a blob too (kept so the store holds the whole image).
    let mpath = store.blob_path(&digest);
    if !mpath.exists() {
        let tmp = store.temp_for(&mpath);
        std::fs::write(&tmp.path, &body)
            .with_context(|| format!("failed to write {}", tmp.path.display()))?;
        tmp.persist(&mpath)?;
    }
    // ANCHOR_END: pull_into

    // ANCHOR: pull_layers
    fetch_blob(&store, &mut reg, &m.config, &Progress::quiet())?;
    let cfg = read_config(&store, &m.config.digest)?;
    check_config(r, &cfg, &m, &want)?;
    let mut layers = Vec::new();
    for (d, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
        let progress = Progress::new(short(&d.digest).to_string(), d.size);
        if store.layer_path(diff_id).is_dir() && store.blob_path(&d.digest).exists() {
            progress.finish("Already exists");
        } else {
            let blob = fetch_blob(&store, &mut reg, d, &progress)?;
            unpack_layer(&store, &blob, d, diff_id, &progress)?;
            progress.finish("Pull complete");
        }
        layers.push(LayerRecord {
            digest: d.digest.clone(),
            diff_id: diff_id.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
            unpacked_size: dir_size(&store.layer_path(diff_id)),
        });
    }
    let record = Record {
        reference: r.to_string(),
        manifest_digest: digest.clone(),
        index_digest: (named_digest != digest).then(|| named_digest.clone()),
        config_digest: m.config.digest.clone(),
        platform: want.to_string(),
        layers,
        pulled: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    store.save(&lock, &record)?;
    // A tag that moved leaves its old layers behind: collect them (not while a container runs on them).
    store.gc(&lock, &in_use())?;
    let _ = writeln!(out, "Digest: {named_digest}");
    let _ = writeln!(out, "Status: Downloaded {r}");
    Ok(0)
}
// ANCHOR_END: pull_layers

// ANCHOR: pull_manifest
/// The manifest the reference names, for this platform: an index is resolved to the host's
/// entry. Returns the manifest, its bytes, its digest and the digest the reference named.
fn resolve_manifest(
    reg: &mut registry::Registry,
    r: &reference::Reference,
) -> Result<(manifest::Manifest, Vec<u8>, String, String)> {
    let (mut body, mut ct, mut digest) = reg.manifest(r.manifest_ref())?;
    // What the reference names: an index (Docker prints its digest) or the manifest itself.
    let named_digest = digest.clone();
    let want = manifest::host_platform();
    let m = loop {
        match manifest::parse_document(&ct, &body)? {
            Document::Manifest(m) => break m,
            Document::Index(index) => {
                let d = manifest::select_platform(&index, &want)?;
                reference::validate_digest(&d.digest)?;
                crate::explain!(CHAPTER, "index: {want} → manifest {}", d.digest);
                let (b, c, dg) = reg.manifest(&d.digest)?;
                if matches!(manifest::parse_document(&c, &b)?, Document::Index(_)) {
                    bail!("the registry sent an index inside an index for {r}");
                }
                (body, ct, digest) = (b, c, dg);
            }
        }
    };
    Ok((m, body, digest, named_digest))
}

/// The config must be for this platform and list one diff_id per layer.
fn check_config(
    r: &reference::Reference,
    cfg: &ConfigBlob,
    m: &manifest::Manifest,
    want: &manifest::Platform,
) -> Result<()> {
    if (!cfg.architecture.is_empty() && cfg.architecture != want.architecture)
        || (!cfg.os.is_empty() && cfg.os != want.os)
    {
        bail!(crate::error::hint(
            format!(
                "{r} is built for {}/{}, this machine is {want}",
                cfg.os, cfg.architecture
            ),
            "pull a tag built for this platform (or a multi-platform image)"
        ));
    }
    if cfg.rootfs.diff_ids.len() != m.layers.len() {
        bail!(
            "{r}: the manifest has {} layers, the config lists {} diff_ids",
            m.layers.len(),
            cfg.rootfs.diff_ids.len()
        );
    }

    Ok(())
}
// ANCHOR_END: pull_manifest

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn human(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return if unit == "B" {
                format!("{n}B")
            } else {
                format!("{v:.1}{unit}")
            };
        }
        v /= 1000.0;
    }
    format!("{v:.1}TB")
}

/// `minictr images`: REPOSITORY TAG IMAGE ID LAYERS SIZE, like `docker images`; `minictr images
/// REF`: what [`resolve`] returns, as JSON.
pub fn list(data_dir: &Path, reference: Option<&str>) -> Result<i32> {
    if let Some(r) = reference {
        let image = resolve(data_dir, r)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&image).context("failed to serialise the image")?
        );
        return Ok(0);
    }
    let store = Store::new(data_dir);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<40} {:<12} {:<14} {:<7} SIZE",
        "REPOSITORY", "TAG", "IMAGE ID", "LAYERS"
    );
    for r in store.records()? {
        let (name, tag) = match r.reference.split_once('@') {
            Some((n, _)) => (n.to_string(), "<none>".to_string()),
            None => {
                let slash = r.reference.rfind('/').unwrap_or(0);
                match r.reference[slash..].rfind(':') {
                    Some(i) => (
                        r.reference[..slash + i].to_string(),
                        r.reference[slash + i + 1..].to_string(),
                    ),
                    None => (r.reference.clone(), "<none>".to_string()),
                }
            }
        };
        let size: u64 = r.layers.iter().map(|l| l.unpacked_size).sum();
        let _ = writeln!(
            out,
            "{:<40} {:<12} {:<14} {:<7} {}",
            name,
            tag,
            short(&r.config_digest),
            r.layers.len(),
            human(size)
        );
    }
    Ok(0)
}

// ANCHOR: rmi
/// `minictr rmi REF…`: forget the references, then remove every layer and blob no remaining image
/// uses (a layer shared with another image stays). An image a container uses is refused, as
/// Docker does; `--force` untags it anyway and its layers stay until the last such container is gone.
pub fn remove(data_dir: &Path, inputs: &[String], force: bool, in_use: InUse<'_>) -> Result<i32> {
    let store = Store::new(data_dir);
    let lock: Locked = store.lock()?;
    let users = in_use();
    for input in inputs {
        let r = reference::parse(input)?;
        if store.load(&r.to_string())?.is_none() {
            bail!(crate::error::hint(
                format!("no such image: {r}"),
                "`minictr images` lists the pulled images"
            ));
        }
        if let Some((id, _)) = users.iter().find(|(_, u)| u.reference == r.to_string()) {
            if !force {
                bail!(crate::error::hint(
                    format!("cannot remove {r}: container {id} uses it"),
                    format!("stop and remove the container first (`minictr stop {id}`, `minictr rm {id}`), or untag the image now with `minictr rmi -f` (its layers stay until the container is gone)")
                ));
            }
        }
        store.remove_record(&lock, &r.to_string())?;
        println!("Untagged: {r}");
    }
    let gc = store.gc(&lock, &users)?;
    for id in gc.removed {
        println!("Deleted: {id}");
    }
    for (layer, container) in gc.kept {
        println!(
            "Kept: {layer} (container {container} uses it; removed once the container is gone)"
        );
    }
    Ok(0)
}
// ANCHOR_END: rmi
