//! The image store beneath the data directory:
//!
//! ```text
//! blobs/sha256/<hex>            manifests, configs, compressed layers — named by their sha256
//! layers/sha256/<diff_id hex>/  each layer unpacked once (named by the sha256 of its tar)
//! images/<name>:<tag>.json      one record per reference: manifest, config and layer digests
//! images/.lock                  flock(2) held by every command that changes the store
//! ```
//!
//! Nothing is ever visible under its final name before it is complete: downloads and unpacks go to
//! `.tmp-*` names and are renamed into place (rename(2) is atomic); leftovers of a killed pull are
//! removed by the next command that takes the lock.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// One pulled image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Canonical reference, e.g. `docker.io/library/alpine:3.20`.
    pub reference: String,
    /// The platform's manifest.
    pub manifest_digest: String,
    /// The index the reference named, when it named one (not stored: a pull by this digest
    /// fetches it again and picks the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub config_digest: String,
    pub platform: String,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
    pub pulled: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The compressed blob as the registry serves it.
    pub digest: String,
    /// The sha256 of the uncompressed tar: names the unpacked directory.
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
    pub unpacked_size: u64,
}

pub struct Store {
    pub root: PathBuf,
}

/// What a garbage collection did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gc {
    /// Layer ids removed.
    pub removed: Vec<String>,
    /// Layer ids no image needs that stayed because a container runs on them: (layer, container id).
    pub kept: Vec<(String, String)>,
}

/// The exclusive store lock; released when dropped (or when the process dies).
pub struct Locked {
    _lock: Flock<File>,
}

/// Removes a temporary file or directory when dropped, unless [`TempPath::keep`] was called.
pub struct TempPath {
    pub path: PathBuf,
    armed: bool,
}

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path, armed: true }
    }
    /// Rename into place and disarm.
    pub fn persist(mut self, to: &Path) -> Result<()> {
        std::fs::rename(&self.path, to).with_context(|| {
            format!(
                "failed to rename {} to {}",
                self.path.display(),
                to.display()
            )
        })?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            remove_tree(&self.path);
        }
    }
}

/// Remove a file or a tree, also one with read-only directories (a rootless layer).
pub fn remove_tree(p: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    if !meta.is_dir() {
        let _ = std::fs::remove_file(p);
        return;
    }
    if std::fs::remove_dir_all(p).is_ok() {
        return;
    }
    make_writable(p);
    let _ = std::fs::remove_dir_all(p);
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    pub fn new(data_dir: &Path) -> Store {
        Store {
            root: data_dir.to_path_buf(),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        // Digests are validated (sha256: + 64 hex) before they get here.
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn layer_path(&self, diff_id: &str) -> PathBuf {
        self.root
            .join("layers/sha256")
            .join(diff_id.trim_start_matches("sha256:"))
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `docker.io/library/alpine:3.20` → `images/docker.io+library+alpine:3.20.json`.
    pub fn record_path(&self, reference: &str) -> PathBuf {
        self.images_dir()
            .join(format!("{}.json", reference.replace('/', "+")))
    }

    // ANCHOR: lock
    /// Take the store lock (waiting for another pull or rmi), then remove what a killed command
    /// left half-done: only a lock holder writes, so every `.tmp-*` now is garbage.
    pub fn lock(&self) -> Result<Locked> {
        for d in ["blobs/sha256", "layers/sha256", "images"] {
            let p = self.root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| {
                crate::error::hint(
                    format!("failed to create {}: {e}", p.display()),
                    "images go to /var/lib/minictr (root) or ~/.local/share/minictr: set MINICTR_DATA_DIR to a directory you can write",
                )
            })?;
        }
        let path = self.images_dir().join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        crate::explain!(
            super::CHAPTER,
            "flock({path:?}, LOCK_EX) — one writer of the image store at a time"
        );
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("failed to lock {}", path.display()))?;
        for d in ["blobs/sha256", "layers/sha256", "images"] {
            if let Ok(rd) = std::fs::read_dir(self.root.join(d)) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(".tmp-") {
                        remove_tree(&e.path());
                    }
                }
            }
        }
        Ok(Locked { _lock: lock })
    }
    // ANCHOR_END: lock

    /// A temporary name beside `final_path`, removed on drop.
    pub fn temp_for(&self, final_path: &Path) -> TempPath {
        let name = final_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = final_path.parent().unwrap_or(Path::new("."));
        TempPath::new(dir.join(format!(".tmp-{}-{name}", std::process::id())))
    }

    pub fn records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.images_dir()) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let data = std::fs::read(e.path())
                .with_context(|| format!("failed to read {}", e.path().display()))?;
            let r: Record = serde_json::from_slice(&data).with_context(|| {
                format!(
                    "{} is corrupt: remove it and pull again",
                    e.path().display()
                )
            })?;
            out.push(r);
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    pub fn load(&self, reference: &str) -> Result<Option<Record>> {
        let p = self.record_path(reference);
        match std::fs::read(&p) {
            Ok(data) => Ok(Some(serde_json::from_slice(&data).with_context(|| {
                format!("{} is corrupt: remove it and pull again", p.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", p.display())),
        }
    }

    /// Write a record (temporary name, then rename): the image exists only once all its layers do.
    pub fn save(&self, _lock: &Locked, record: &Record) -> Result<()> {
        let p = self.record_path(&record.reference);
        let tmp = self.temp_for(&p);
        let data =
            serde_json::to_vec_pretty(record).context("failed to serialise the image record")?;
        std::fs::write(&tmp.path, data)
            .with_context(|| format!("failed to write {}", tmp.path.display()))?;
        tmp.persist(&p)
    }

    pub fn remove_record(&self, _lock: &Locked, reference: &str) -> Result<()> {
        let p = self.record_path(reference);
        std::fs::remove_file(&p).with_context(|| format!("failed to remove {}", p.display()))
    }

    /// The store lock shared: no pull, rmi or garbage collection runs while it is held.
    pub fn lock_shared(&self) -> Result<Option<Locked>> {
        self.open_lock(FlockArg::LockShared)
    }

    /// The exclusive lock if nobody holds the store now (`None` when busy or never created).
    pub fn try_lock(&self) -> Result<Option<Locked>> {
        self.open_lock(FlockArg::LockExclusiveNonblock)
    }

    fn open_lock(&self, how: FlockArg) -> Result<Option<Locked>> {
        let path = self.images_dir().join(".lock");
        let f = match File::options().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", path.display())),
        };
        match Flock::lock(f, how) {
            Ok(lock) => Ok(Some(Locked { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
        }
    }

    // ANCHOR: gc
    /// Remove every blob and unpacked layer no image record needs any more — unless a kept
    /// container uses it as a lower layer, or a container that still exists runs on it (`in_use`:
    /// container id and image, from the runtime state). Reports what went and what stayed.
    pub fn gc(&self, _lock: &Locked, in_use: &[(String, super::run::Use)]) -> Result<Gc> {
        let records = self.records()?;
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for r in &records {
            blobs.insert(r.manifest_digest.trim_start_matches("sha256:").to_string());
            blobs.insert(r.config_digest.trim_start_matches("sha256:").to_string());
            for l in &r.layers {
                blobs.insert(l.digest.trim_start_matches("sha256:").to_string());
                layers.insert(l.diff_id.trim_start_matches("sha256:").to_string());
            }
        }
        // Kept containers record their lower layers (chapter 5): their layers stay, as do those of
        // the containers in `in_use`.
        let kept = self.kept_lowers();
        let mut out = Gc::default();
        // ANCHOR_END: gc
        // ANCHOR: gc_remove
        if let Ok(rd) = std::fs::read_dir(self.root.join("layers/sha256")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_hex64(&name) || layers.contains(&name) {
                    continue;
                }
                // A container uses it: it stays until the container is gone.
                let user = kept
                    .iter()
                    .find(|(_, lowers)| lowers.iter().any(|k| k.starts_with(e.path())))
                    .map(|(id, _)| id)
                    .or_else(|| {
                        in_use
                            .iter()
                            .find(|(_, u)| u.layers.iter().any(|l| l == &e.path()))
                            .map(|(id, _)| id)
                    });
                if let Some(id) = user {
                    out.kept.push((format!("sha256:{name}"), id.clone()));
                    continue;
                }
                // Renamed first: a layer is either whole under its name or gone.
                let doomed = self
                    .root
                    .join("layers/sha256")
                    .join(format!(".tmp-rm-{name}"));
                crate::explain!(
                    super::CHAPTER,
                    "rm -r {:?} — no image uses this layer any more",
                    e.path()
                );
                std::fs::rename(e.path(), &doomed)
                    .with_context(|| format!("failed to remove {}", e.path().display()))?;
                remove_tree(&doomed);
                out.removed.push(format!("sha256:{name}"));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("blobs/sha256")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_hex64(&name) && !blobs.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // The blobs of a layer that stayed are not needed to run it: a later pull fetches them.
        Ok(out)
    }
    // ANCHOR_END: gc_remove

    /// Kept containers (chapter 5's container.json): id and lower layers.
    fn kept_lowers(&self) -> Vec<(String, Vec<PathBuf>)> {
        #[derive(Deserialize)]
        struct Kept {
            #[serde(default)]
            id: String,
            #[serde(default)]
            lowers: Vec<PathBuf>,
        }
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("containers")) {
            for e in rd.flatten() {
                if let Ok(data) = std::fs::read(e.path().join("container.json")) {
                    if let Ok(k) = serde_json::from_slice::<Kept>(&data) {
                        out.push((k.id, k.lowers));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> LayerRecord {
        LayerRecord {
            digest: format!("sha256:{}", format!("{:02x}", n + 100).repeat(32)),
            diff_id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            media_type: String::new(),
            size: 1,
            unpacked_size: 1,
        }
    }

    #[test]
    fn gc_keeps_what_a_record_or_a_kept_container_uses() {
        let d = std::env::temp_dir().join(format!("minictr-gc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let store = Store::new(&d);
        let lock = store.lock().unwrap();
        for n in 1..=4 {
            std::fs::create_dir_all(store.layer_path(&layer(n).diff_id).join("etc")).unwrap();
            std::fs::write(store.blob_path(&layer(n).digest), "x").unwrap();
        }
        let rec = |name: &str, layers: Vec<LayerRecord>| Record {
            reference: format!("localhost/{name}:1"),
            manifest_digest: format!("sha256:{}", "e".repeat(64)),
            config_digest: format!("sha256:{}", "f".repeat(64)),
            index_digest: None,
            platform: "linux/amd64".into(),
            layers,
            pulled: 0,
        };
        store
            .save(&lock, &rec("a", vec![layer(1), layer(2)]))
            .unwrap();
        store
            .save(&lock, &rec("b", vec![layer(1), layer(3)]))
            .unwrap();
        // A kept container started on layer 4.
        let c = d.join("containers/abc");
        std::fs::create_dir_all(&c).unwrap();
        let kept =
            serde_json::json!({"id": "abc", "lowers": [store.layer_path(&layer(4).diff_id)]});
        std::fs::write(c.join("container.json"), kept.to_string()).unwrap();

        let gc = store.gc(&lock, &[]).unwrap();
        assert_eq!(gc.removed, Vec::<String>::new());
        assert_eq!(gc.kept, vec![(layer(4).diff_id, "abc".to_string())]);
        store.remove_record(&lock, "localhost/a:1").unwrap();
        // A container still runs on a's layers: layer 2 stays, and says why.
        let running = super::super::run::Use {
            reference: "localhost/a:1".into(),
            id: String::new(),
            layers: vec![
                store.layer_path(&layer(1).diff_id),
                store.layer_path(&layer(2).diff_id),
            ],
        };
        let gc = store.gc(&lock, &[("c0ffee".to_string(), running)]).unwrap();
        assert_eq!(gc.removed, Vec::<String>::new());
        assert!(gc.kept.contains(&(layer(2).diff_id, "c0ffee".to_string())));
        assert!(store.layer_path(&layer(2).diff_id).is_dir());
        // The container is gone: the layer goes.
        assert_eq!(
            store.gc(&lock, &[]).unwrap().removed,
            vec![layer(2).diff_id]
        );
        assert!(
            store.layer_path(&layer(1).diff_id).is_dir(),
            "b still uses layer 1"
        );
        assert!(!store.blob_path(&layer(2).digest).exists());
        std::fs::remove_dir_all(&c).unwrap();
        store.remove_record(&lock, "localhost/b:1").unwrap();
        let mut gone = store.gc(&lock, &[]).unwrap().removed;
        gone.sort();
        assert_eq!(
            gone,
            vec![layer(1).diff_id, layer(3).diff_id, layer(4).diff_id]
        );
        drop(lock);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
