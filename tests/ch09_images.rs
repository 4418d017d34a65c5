//! Chapter 9 — images: pulled from a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on 127.0.0.1, never from the internet. Two images are built from the busybox rootfs
//! with `umoci` and pushed with `skopeo`: `busybox` (one layer) and `app` (the same base layer plus
//! one that deletes /bin/ls — a whiteout — and adds /etc/app.conf), and `conf` (the base layer with
//! a config that sets Cmd, Env, WorkingDir and User, for `minictr run IMAGE`).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn run_tool(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install docker-registry umoci skopeo)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The OCI layout with the tags `base` and `app`, built once per test binary.
fn layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = tmp().join("ch09-oci");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let oci = dir.join("oci");
        let img = |tag: &str| format!("{}:{tag}", oci.display());
        run_tool(Command::new("umoci").arg("init").arg("--layout").arg(&oci));
        run_tool(Command::new("umoci").args(["new", "--image", &img("base")]));
        run_tool(
            Command::new("umoci")
                .args(["insert", "--image", &img("base")])
                .arg(common::rootfs())
                .arg("/"),
        );
        run_tool(Command::new("umoci").args([
            "config",
            "--image",
            &img("base"),
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "GREETING=hello",
        ]));
        // The second image: unpack, delete a file of the base, add one, repack as a new layer.
        let bundle = dir.join("bundle");
        run_tool(
            Command::new("umoci")
                .args(["unpack", "--image", &img("base")])
                .arg(&bundle),
        );
        std::fs::remove_file(bundle.join("rootfs/bin/ls")).unwrap();
        std::fs::write(bundle.join("rootfs/etc/app.conf"), "from the app layer\n").unwrap();
        run_tool(
            Command::new("umoci")
                .args(["repack", "--image", &img("app")])
                .arg(&bundle),
        );
        // The base layer with a config `minictr run IMAGE` takes its defaults from.
        run_tool(Command::new("umoci").args([
            "config",
            "--image",
            &img("base"),
            "--tag",
            "conf",
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo \"$WHO $(id -u):$(id -g) $(pwd)\"",
            "--config.env",
            "WHO=image",
            "--config.workingdir",
            "/etc",
            "--config.user",
            "1000:1000",
        ]));
        // Two indexes over the base manifest: `multi` (arm64 and amd64), `armonly` (arm64 only).
        add_index(&oci, "multi", &["arm64", "amd64"]);
        add_index(&oci, "armonly", &["arm64"]);
        dir
    })
}

/// Add a tag to the layout that names an OCI index pointing at the `base` manifest once per
/// architecture in `archs` (umoci builds single-platform images only).
fn add_index(oci: &Path, tag: &str, archs: &[&str]) {
    use sha2::Digest;
    let index_json = oci.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_json).unwrap()).unwrap();
    let name = |m: &serde_json::Value| {
        m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_string)
    };
    let base = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| name(m).as_deref() == Some("base"))
        .unwrap()
        .clone();
    let entries: Vec<serde_json::Value> = archs
        .iter()
        .map(|a| {
            serde_json::json!({"mediaType": base["mediaType"], "digest": base["digest"], "size": base["size"],
                "platform": {"architecture": a, "os": "linux"}})
        })
        .collect();
    let doc = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}))
    .unwrap();
    let hex = format!("{:x}", sha2::Sha256::digest(&doc));
    std::fs::write(oci.join("blobs/sha256").join(&hex), &doc).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"),
        "size": doc.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}));
    std::fs::write(&index_json, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A distribution registry on a free loopback port with its storage in a temp dir; killed on drop.
struct Registry {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(name: &str) -> Registry {
        let dir = common::scratch(&format!("ch09-registry-{name}"));
        let mut r = Registry {
            dir,
            port: free_port(),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let config = self.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{}\n",
                self.dir.join("storage").display(),
                self.port
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/docker-registry (apt-get install docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn push(&self, tag: &str, repo: &str) {
        run_tool(Command::new("skopeo").args([
            "copy",
            "--all",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout().join("oci").display()),
            &format!("docker://{}/{repo}", self.host()),
        ]));
    }

    /// The registry's copy of a blob (distribution's filesystem driver layout).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `minictr` with its image store in `data`.
fn minictr(data: &Path, args: &[&str]) -> Output {
    common::minictr()
        .env("MINICTR_DATA_DIR", data)
        .args(args)
        .output()
        .expect("failed to start minictr")
}

#[derive(serde::Deserialize)]
struct Image {
    layers: Vec<PathBuf>,
    config: serde_json::Value,
}

fn inspect(data: &Path, reference: &str) -> Image {
    let out = minictr(data, &["images", reference]);
    common::assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Names in `dir` (sorted), without the lock.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|n| n != ".lock");
    v.sort();
    v
}

/// A consistent store: nothing half-made (no `.tmp-*`), every image record's layers and blobs present.
fn assert_consistent(data: &Path) {
    for d in ["blobs/sha256", "layers/sha256", "images"] {
        for n in names(&data.join(d)) {
            assert!(!n.starts_with(".tmp-"), "leftover {d}/{n}");
        }
    }
    for rec in names(&data.join("images")) {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("images").join(&rec)).unwrap())
                .unwrap();
        for l in v["layers"].as_array().unwrap() {
            let id = l["diff_id"].as_str().unwrap().trim_start_matches("sha256:");
            assert!(
                data.join("layers/sha256").join(id).is_dir(),
                "{rec}: layer {id} missing"
            );
        }
    }
}

#[test]
fn pull_shares_layers_and_rmi_keeps_them_until_the_last_image_goes() {
    if !common::need_root("pull_shares_layers_and_rmi_keeps_them_until_the_last_image_goes") {
        return;
    }
    let reg = Registry::start("share");
    reg.push("base", "busybox:latest");
    reg.push("app", "app:1");
    let data = common::scratch("ch09-share");
    let (busybox, app) = (
        format!("{}/busybox", reg.host()),
        format!("{}/app:1", reg.host()),
    );

    let out = minictr(&data, &["pull", &busybox]);
    common::assert_ok(&out);
    assert!(
        common::stdout(&out).contains("Digest: sha256:"),
        "{}",
        common::stdout(&out)
    );
    let out = minictr(&data, &["pull", &app]);
    common::assert_ok(&out);
    assert!(
        common::stderr(&out).contains("Already exists"),
        "the base layer was downloaded again: {}",
        common::stderr(&out)
    );

    let (b, a) = (inspect(&data, &busybox), inspect(&data, &app));
    assert_eq!(b.layers.len(), 1);
    assert_eq!(a.layers.len(), 2);
    assert_eq!(
        a.layers[0], b.layers[0],
        "the shared base layer is one directory"
    );
    assert_eq!(
        names(&data.join("layers/sha256")).len(),
        2,
        "two distinct layers on disk"
    );
    assert_eq!(a.config["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(a.config["Env"], serde_json::json!(["GREETING=hello"]));
    // Ownership as in the image (root), the content byte for byte.
    let bb = a.layers[0].join("bin/busybox");
    assert_eq!(std::fs::metadata(&bb).unwrap().uid(), 0);
    assert_eq!(
        std::fs::read(&bb).unwrap(),
        std::fs::read(common::rootfs().join("bin/busybox")).unwrap()
    );

    let list = minictr(&data, &["images"]);
    common::assert_ok(&list);
    let list = common::stdout(&list);
    assert!(
        list.contains(&format!("{}/busybox", reg.host())) && list.contains("latest"),
        "{list}"
    );
    assert!(list.contains(&format!("{}/app", reg.host())), "{list}");

    // busybox goes; its layer stays, app still uses it.
    let out = minictr(&data, &["rmi", &busybox]);
    common::assert_ok(&out);
    assert!(
        a.layers[0].is_dir(),
        "the shared layer went with the first image"
    );
    assert!(minictr(&data, &["images", &busybox]).status.code() == Some(125));
    common::assert_ok(&minictr(&data, &["images", &app]));
    // app goes: nothing is left.
    common::assert_ok(&minictr(&data, &["rmi", &app]));
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs/sha256")), Vec::<String>::new());
    assert_eq!(names(&data.join("images")), Vec::<String>::new());

    // By digest: the manifest is pinned; a wrong digest is refused.
    let out = minictr(&data, &["pull", &busybox]);
    let digest = common::stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Digest: ").map(str::to_string))
        .unwrap();
    common::assert_ok(&minictr(&data, &["pull", &format!("{busybox}@{digest}")]));
    let wrong = format!("{busybox}@sha256:{}", "0".repeat(64));
    assert_eq!(minictr(&data, &["pull", &wrong]).status.code(), Some(125));
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_whiteout_hides_the_lower_file_in_a_running_container() {
    if !common::need_root("a_whiteout_hides_the_lower_file_in_a_running_container") {
        return;
    }
    let reg = Registry::start("whiteout");
    reg.push("app", "app:1");
    let data = common::scratch("ch09-whiteout");
    let app = format!("{}/app:1", reg.host());
    common::assert_ok(&minictr(&data, &["pull", &app]));
    let img = inspect(&data, &app);
    // On disk: the OCI whiteout `.wh.ls` became overlayfs's whiteout, a character device 0/0.
    let wh = std::fs::symlink_metadata(img.layers[1].join("bin/ls")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");
    assert!(!img.layers[1].join("bin/.wh.ls").exists());
    assert!(
        std::fs::symlink_metadata(img.layers[0].join("bin/ls")).is_ok(),
        "the base layer keeps its ls"
    );
    // In a container on the two layers (ROOTFS = the base, --layer = the one above it): ls is gone,
    // app.conf is there, busybox is owned by root inside (idmapped lower layers).
    let out = common::minictr()
        .env("MINICTR_DATA_DIR", &data)
        .arg("run")
        .arg("--layer")
        .arg(&img.layers[1])
        .arg(&img.layers[0])
        .args([
            "sh",
            "-c",
            "test ! -e /bin/ls && echo no-ls; cat /etc/app.conf; stat -c %u:%g /bin/busybox",
        ])
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "no-ls\nfrom the app layer\n0:0\n");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_corrupted_blob_is_rejected_and_nothing_is_stored() {
    if !common::need_root("a_corrupted_blob_is_rejected_and_nothing_is_stored") {
        return;
    }
    let reg = Registry::start("corrupt");
    reg.push("base", "busybox:latest");
    let data = common::scratch("ch09-corrupt");
    let busybox = format!("{}/busybox", reg.host());
    // Find the layer blob through the registry's own manifest, then flip one byte of its copy.
    let manifest = std::fs::read_dir(layout().join("oci/blobs/sha256"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok()
        })
        .find(|v| v["layers"].as_array().is_some_and(|l| l.len() == 1))
        .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let out = minictr(&data, &["pull", &busybox]);
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("{layer} from")) && err.contains("does not match its digest"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("minictr:")).count(),
        1,
        "{err}"
    );
    assert!(!data
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"))
        .exists());
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

/// A loopback proxy in front of the registry that stops the registry (and drops the connection)
/// once `limit` bytes of responses went through one connection: the registry dies mid-layer.
fn dying_proxy(upstream: u16, limit: u64, registry_pid: u32) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            let f = f.clone();
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let sent = AtomicU64::new(0);
                let mut buf = [0u8; 16384];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > limit {
                        // The registry we started dies (by its pid), the half-sent blob breaks off.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(registry_pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        f.store(true, Ordering::Relaxed);
                        break;
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, fired)
}

#[test]
fn the_registry_stopped_mid_pull_is_a_clear_error_and_the_store_stays_consistent() {
    if !common::need_root(
        "the_registry_stopped_mid_pull_is_a_clear_error_and_the_store_stays_consistent",
    ) {
        return;
    }
    let mut reg = Registry::start("midpull");
    reg.push("base", "busybox:latest");
    let data = common::scratch("ch09-midpull");
    let pid = reg.child.as_ref().unwrap().id();
    let (port, fired) = dying_proxy(reg.port, 200_000, pid);
    // What a SIGKILLed earlier pull could have left: removed by the next command holding the lock.
    std::fs::create_dir_all(data.join("layers/sha256/.tmp-1-abc/bin")).unwrap();

    let out = minictr(&data, &["pull", &format!("127.0.0.1:{port}/busybox")]);
    assert!(
        fired.load(Ordering::Relaxed),
        "the proxy never cut the download"
    );
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("broke off") || err.contains("cannot reach"),
        "{err}"
    );
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_consistent(&data);

    // Nobody listening at all.
    let _ = reg.child.take().map(|mut c| c.wait());
    let out = minictr(&data, &["pull", &format!("127.0.0.1:{}/busybox", reg.port)]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        common::stderr(&out).contains("cannot reach the registry"),
        "{}",
        common::stderr(&out)
    );

    // The registry back: the same pull completes from the consistent store.
    reg.spawn();
    common::assert_ok(&minictr(
        &data,
        &["pull", &format!("{}/busybox", reg.host())],
    ));
    assert_eq!(
        inspect(&data, &format!("{}/busybox", reg.host()))
            .layers
            .len(),
        1
    );
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn unknown_images_and_bad_references_are_125_with_a_hint() {
    if !common::need_root("unknown_images_and_bad_references_are_125_with_a_hint") {
        return;
    }
    let reg = Registry::start("unknown");
    let data = common::scratch("ch09-unknown");
    for (args, want) in [
        (
            vec!["pull".to_string(), format!("{}/nope:1", reg.host())],
            "image not found",
        ),
        (
            vec!["rmi".to_string(), "nope".to_string()],
            "no such image: docker.io/library/nope:latest",
        ),
        (
            vec!["images".to_string(), "nope".to_string()],
            "minictr pull nope",
        ),
        (
            vec!["pull".to_string(), "Not/Valid".to_string()],
            "invalid image reference",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::assert_refused(&minictr(&data, &args), want, &args);
    }
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn rootless_pull_owns_the_layers_and_rmi_removes_read_only_directories() {
    if !common::need_root("rootless_pull_owns_the_layers_and_rmi_removes_read_only_directories") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let reg = Registry::start("rootless");
    reg.push("app", "app:1");
    let data = common::scratch("ch09-rootless");
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| {
        common::minictr()
            .uid(65534)
            .gid(65534)
            .env("HOME", &data)
            .env("MINICTR_DATA_DIR", &data)
            .env("MINICTR_RUN_DIR", data.join("run"))
            .args(args)
            .output()
            .unwrap()
    };
    let app = format!("{}/app:1", reg.host());
    let out = as_nobody(&["pull", &app]);
    common::assert_ok(&out);
    let img: Image = serde_json::from_slice(&as_nobody(&["images", &app]).stdout).unwrap();
    // Owned by the user who pulled (root inside a rootless container); the whiteout is still 0/0.
    let bb = std::fs::metadata(img.layers[0].join("bin/busybox")).unwrap();
    assert_eq!((bb.uid(), bb.gid()), (65534, 65534));
    let wh = std::fs::symlink_metadata(img.layers[1].join("bin/ls")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    // A rootless container on the image: the user's layers are root's files inside, the whiteout
    // hides the base's ls, the writable layer lies in the user's data directory.
    let out = as_nobody(&[
        "run",
        &app,
        "sh",
        "-c",
        "test ! -e /bin/ls && echo no-ls; cat /etc/app.conf; id -u; stat -c %u /bin/busybox; echo $GREETING",
    ]);
    common::assert_ok(&out);
    assert_eq!(
        common::stdout(&out),
        "no-ls\nfrom the app layer\n0\n0\nhello\n"
    );
    assert_eq!(names(&data.join("containers")), Vec::<String>::new());
    // A directory without write permission in the image must not stop rmi.
    std::fs::set_permissions(
        img.layers[1].join("etc"),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    common::assert_ok(&as_nobody(&["rmi", &app]));
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

/// A small tmpfs mounted for one test; unmounted on drop (also when the test fails).
struct SmallDisk(PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_store_stays_consistent() {
    if !common::need_root("a_full_disk_is_a_clear_error_and_the_store_stays_consistent") {
        return;
    }
    let reg = Registry::start("full");
    reg.push("base", "busybox:latest");
    let busybox = format!("{}/busybox", reg.host());
    // 400k: the download itself fails; 1400k: the compressed layer fits, unpacking it does not.
    for size in ["400k", "1400k"] {
        let disk = SmallDisk(common::scratch(&format!("ch09-full-{size}")));
        nix::mount::mount(
            Some("tmpfs"),
            &disk.0,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        let out = minictr(&disk.0, &["pull", &busybox]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{size}: {}",
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert!(
            err.contains("is full (hint:") && err.contains("No space left"),
            "{size}: {err}"
        );
        assert_eq!(names(&disk.0.join("images")), Vec::<String>::new());
        assert_eq!(names(&disk.0.join("layers/sha256")), Vec::<String>::new());
        assert_consistent(&disk.0);
    }
}

#[test]
fn an_index_is_resolved_to_this_platform_and_refused_without_it() {
    if !common::need_root("an_index_is_resolved_to_this_platform_and_refused_without_it") {
        return;
    }
    let reg = Registry::start("index");
    reg.push("multi", "multi:1");
    reg.push("armonly", "armonly:1");
    let data = common::scratch("ch09-index");
    let out = minictr(&data, &["pull", &format!("{}/multi:1", reg.host())]);
    common::assert_ok(&out);
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join(format!("images/{}+multi:1.json", reg.host()))).unwrap(),
    )
    .unwrap();
    // The record names the platform's manifest and the index; `Digest:` is the index's, as Docker prints it.
    let index = rec["index_digest"].as_str().unwrap().to_string();
    assert_ne!(rec["manifest_digest"].as_str().unwrap(), index);
    assert!(
        common::stdout(&out).contains(&format!("Digest: {index}")),
        "{}",
        common::stdout(&out)
    );
    assert_eq!(rec["platform"], "linux/amd64");
    assert_eq!(
        inspect(&data, &format!("{}/multi:1", reg.host()))
            .layers
            .len(),
        1
    );

    let out = minictr(&data, &["pull", &format!("{}/armonly:1", reg.host())]);
    assert_eq!(out.status.code(), Some(125));
    let err = common::stderr(&out);
    assert!(
        err.contains("no manifest for linux/amd64 (it offers: linux/arm64)"),
        "{err}"
    );
    assert!(!data
        .join(format!("images/{}+armonly:1.json", reg.host()))
        .exists());
    assert_consistent(&data);
    let _ = std::fs::remove_dir_all(&data);
}

/// `minictr run` on the test registry's images, with the store in `data`.
fn run_image(data: &Path, opts: &[&str]) -> Output {
    minictr(data, &[&["run"][..], opts].concat())
}

#[test]
fn run_image_takes_its_config_and_the_flags_override_it() {
    if !common::need_root("run_image_takes_its_config_and_the_flags_override_it") {
        return;
    }
    let reg = Registry::start("runconf");
    reg.push("conf", "conf:1");
    reg.push("app", "app:1");
    let data = common::scratch("ch09-runconf");
    let (conf, app) = (
        format!("{}/conf:1", reg.host()),
        format!("{}/app:1", reg.host()),
    );
    common::assert_ok(&minictr(&data, &["pull", &conf]));

    config_and_overrides(&data, &conf);
    auto_pull_and_layers(&data, &app);
    kept_container_keeps_layers(&data, &app);
    unknown_images(&data, &reg);
    assert_consistent(&data);
    // Nothing of the runs is left in the runtime directory.
    let left: Vec<String> = names(&common::run_dir())
        .into_iter()
        .filter(|n| n.len() == 12 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|n| {
            std::fs::read_to_string(common::run_dir().join(n).join("state.json"))
                .is_ok_and(|s| s.contains(&reg.host()))
        })
        .collect();
    assert_eq!(left, Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&data);
}

/// The image's Cmd, Env, WorkingDir and User, and the flags that override them.
fn config_and_overrides(data: &Path, conf: &str) {
    let data = data.to_path_buf();
    // The image's Cmd, Env, WorkingDir and User.
    let out = run_image(&data, &[conf]);
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "image 1000:1000 /etc\n");
    // -e, -u, -w override them; the Cmd stays.
    let out = run_image(&data, &["-e", "WHO=flags", "-u", "0:0", "-w", "/tmp", conf]);
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "flags 0:0 /tmp\n");
    // Arguments after the image replace its Cmd; the image's Env is still there.
    let out = run_image(&data, &[conf, "sh", "-c", "echo $WHO; id -u"]);
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "image\n1000\n");
    // --entrypoint replaces the Entrypoint and drops the Cmd, as in Docker.
    let out = run_image(&data, &["--entrypoint", "/bin/echo", conf, "a", "b"]);
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "a b\n");
    let out = run_image(&data, &["--entrypoint", "", conf]);
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("no command: the image has no Cmd/Entrypoint"),
        "{}",
        common::stderr(&out)
    );
    // The layers need the overlay.
    let out = run_image(&data, &["--no-overlay", conf, "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = common::stderr(&out);
    assert!(
        err.contains("--no-overlay cannot run the image") && err.contains("hint:"),
        "{err}"
    );
}

/// Auto-pull, the layers stacked (a whiteout hides a base file), --pull, --read-only.
fn auto_pull_and_layers(data: &Path, app: &str) {
    let data = data.to_path_buf();
    // Not in the store: pulled first (progress on stderr, stdout is the container's), then run
    // with its two layers stacked — the whiteout in the upper layer hides the base's /bin/ls.
    let out = run_image(
        &data,
        &[
            app,
            "sh",
            "-c",
            "test ! -e /bin/ls && echo no-ls; cat /etc/app.conf; stat -c %u /bin/busybox",
        ],
    );
    common::assert_ok(&out);
    assert_eq!(
        common::stdout(&out),
        "no-ls\nfrom the app layer\n0\n",
        "{}",
        common::stderr(&out)
    );
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("Unable to find image '{app}' locally"))
            && err.contains("Pull complete")
            && err.contains("Status: Downloaded"),
        "{err}"
    );
    // In the store now: no second pull.
    let out = run_image(&data, &[app, "true"]);
    common::assert_ok(&out);
    assert!(
        !common::stderr(&out).contains("Pulling"),
        "{}",
        common::stderr(&out)
    );
    // --pull always: asks the registry again; the layers are there already.
    let out = run_image(&data, &["--pull", "always", app, "true"]);
    common::assert_ok(&out);
    assert!(
        common::stderr(&out).contains("Already exists"),
        "{}",
        common::stderr(&out)
    );
    // --read-only: the two layers stacked without a writable layer.
    let out = run_image(
        &data,
        &[
            "--read-only",
            app,
            "sh",
            "-c",
            "cat /etc/app.conf; touch /x 2>/dev/null || echo ro",
        ],
    );
    common::assert_ok(&out);
    assert_eq!(common::stdout(&out), "from the app layer\nro\n");
}

/// A kept container's `diff` against the image; its layers stay through `rmi` until `rm`.
fn kept_container_keeps_layers(data: &Path, app: &str) {
    let data = data.to_path_buf();
    // A kept container on the image: `diff` sees its change against the image's layers, and the
    // layers stay (kept) when the image is untagged, until the container is removed.
    let name = common::unique("kept");
    let out = run_image(&data, &["--name", &name, app, "rm", "/etc/app.conf"]);
    common::assert_ok(&out);
    let out = minictr(&data, &["diff", &name]);
    common::assert_ok(&out);
    assert!(
        common::stdout(&out).contains("D /etc/app.conf"),
        "{}",
        common::stdout(&out)
    );
    let img = inspect(&data, app);
    let out = minictr(&data, &["rmi", app]);
    common::assert_ok(&out);
    // The base layer is conf's too; the app's own layer stays for the kept container.
    assert_eq!(
        common::stdout(&out).matches("Kept: sha256:").count(),
        1,
        "{}",
        common::stdout(&out)
    );
    assert!(img.layers.iter().all(|l| l.is_dir()));
    common::assert_ok(&minictr(&data, &["rm", &name]));
    assert!(!img.layers[1].exists() && img.layers[0].is_dir());
    // Pulled again for what follows.
    common::assert_ok(&minictr(&data, &["pull", app]));
}

/// Unknown images (auto-pull fails, --pull never) and bad references: 125 with a hint.
fn unknown_images(data: &Path, reg: &Registry) {
    let data = data.to_path_buf();
    // Unknown: in the registry (auto-pull fails) and with --pull never; bad references.
    let nope = format!("{}/nope:1", reg.host());
    for (opts, want) in [
        (vec![nope.as_str(), "true"], "image not found"),
        (
            vec!["--pull", "never", nope.as_str(), "true"],
            "no such image",
        ),
        (
            vec!["Not/Valid", "true"],
            "neither a directory nor an image reference",
        ),
        (vec!["./no-such-dir", "true"], "cannot be used"),
    ] {
        let out = run_image(&data, &opts);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{opts:?}: {}",
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert!(
            err.contains(want) && err.contains("hint:"),
            "{opts:?}: {err}"
        );
    }
}

#[test]
fn rmi_of_an_image_a_container_runs_on_is_refused_and_forced_layers_stay_until_it_ends() {
    if !common::need_root(
        "rmi_of_an_image_a_container_runs_on_is_refused_and_forced_layers_stay_until_it_ends",
    ) {
        return;
    }
    let reg = Registry::start("rmiuse");
    reg.push("app", "app:1");
    let data = common::scratch("ch09-rmiuse");
    let app = format!("{}/app:1", reg.host());
    common::assert_ok(&minictr(&data, &["pull", &app]));
    let img = inspect(&data, &app);
    let host = common::unique("rmiuse");
    let mut c = common::Running(
        common::minictr()
            .env("MINICTR_DATA_DIR", &data)
            .args(["run", "-i", "--hostname", &host, &app])
            .args(["sh", "-c", "echo up; read x; cat /etc/app.conf"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(common::read_line(&mut c), "up");
    // The container records what it runs on.
    let state = std::fs::read_dir(common::run_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("state.json")).ok())
        .find(|s| s.contains(&host))
        .expect("the container's state.json");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let id = state["id"].as_str().unwrap().to_string();
    assert_eq!(state["resources"]["image"]["reference"], app.as_str());

    let out = minictr(&data, &["rmi", &app]);
    assert_eq!(out.status.code(), Some(125));
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("cannot remove {app}: container {id} uses it"))
            && err.contains("rmi -f"),
        "{err}"
    );
    common::assert_ok(&inspect_out(&data, &app));
    // Forced: untagged now, the layers stay while the container runs.
    let out = minictr(&data, &["rmi", "-f", &app]);
    common::assert_ok(&out);
    let said = common::stdout(&out);
    assert!(said.contains(&format!("Untagged: {app}")), "{said}");
    assert_eq!(said.matches("Kept: sha256:").count(), 2, "{said}");
    assert!(said.contains(&format!("container {id} uses it")), "{said}");
    assert!(img.layers.iter().all(|l| l.is_dir()));
    assert_eq!(minictr(&data, &["images", &app]).status.code(), Some(125));

    // The container still reads its files, ends, and its layers go with it.
    c.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(common::wait_bounded(&mut c, 30).success());
    let mut rest = String::new();
    c.stdout.take().unwrap().read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "from the app layer\n");
    assert!(
        img.layers.iter().all(|l| !l.exists()),
        "layers left: {:?}",
        img.layers
    );
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_consistent(&data);
    common::assert_no_leftovers(&host);
    let _ = std::fs::remove_dir_all(&data);
}

fn inspect_out(data: &Path, reference: &str) -> Output {
    minictr(data, &["images", reference])
}
