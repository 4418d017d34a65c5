//! Step 1 of `minictr run`: every input parsed and checked before anything is created, so an error
//! leaves nothing behind. Each stage turns its own flags into its own validated config; this module
//! only wires them (the network decides which /etc files are bound, the user namespace whether
//! volumes can be idmapped, …). Nothing here asks the system who we are: that comes in a [`Host`].

use crate::host::Host;
use crate::lifecycle::LifecycleArgs;
use crate::{
    cgroups, error, image, namespaces, network, overlay, process, rootfs, security, state, userns,
    RunArgs,
};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Everything `minictr run` will do, validated before anything is created (step 1).
pub struct Spec {
    pub id: String,
    pub host: Host,
    pub hostname: String,
    pub namespaces: namespaces::Namespaces,
    pub rootfs: rootfs::Config,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: process::UserSpec,
    pub userns: Option<userns::Plan>,
    /// ch04: the container's cgroup (planned; created in step 2) and `--stats`.
    pub cgroup: cgroups::Decision,
    pub stats: bool,
    /// `None` with `--no-overlay`: the rootfs itself is the container's root (chapter 2).
    pub overlay: Option<overlay::Config>,
    pub tmpfs: Vec<overlay::Tmpfs>,
    /// `-t`, `-i`, `--init`, `-d` (chapter 8).
    pub lifecycle: LifecycleArgs,
    /// ch06: --network, --subnet, -p.
    pub network: network::Config,
    /// Chapter 7: capabilities, no_new_privs, seccomp (compiled here, once), masks, rlimits.
    pub security: security::Config,
    /// ch09: the image ROOTFS named, when it named one: its layers are the overlay's lowers.
    pub image: Option<image::Image>,
}

// ANCHOR: validate
impl Spec {
    /// Step 1: parse and check every input, stage by stage. Nothing exists yet. `image`: what
    /// ROOTFS named when it was an image reference (chapter 9), found or pulled by the caller.
    pub fn from_args(args: &RunArgs, host: &Host, image: Option<image::Image>) -> Result<Spec> {
        let id = state::new_id();
        let hostname = hostname(&args.namespaces, &id, host)?;
        let config = image.as_ref().map(|i| &i.config);
        let ProcessArgs { command, env, user } = process_args(args, config)?;
        // ch06: MINICTR_NETWORK is the default when neither --network nor --no-net is given.
        let network = args.network.config(
            args.namespaces.no_net,
            host.network_default.as_deref(),
            host.is_root(),
        )?;
        let userns = userns_plan(&args.userns, host)?;
        let namespaces = namespaces(&args.namespaces, &userns, &network);
        // ch04: limits parsed and checked, layout detected, directories chosen — nothing created.
        let cgroup = cgroups::plan(&args.cgroups, &id, !host.is_root(), host.cgroup_layout)?;
        // ch09: an image's base layer is the root, its other layers are stacked above it.
        let (rootfs_path, image_layers) = match &image {
            Some(img) => (image_root(img, &args.overlay)?, &img.layers[1..]),
            None => (rootfs::check_rootfs(&args.rootfs)?, &[][..]),
        };
        // --read-only: the mount points of the network's /etc/hosts, /etc/hostname,
        // /etc/resolv.conf (ch06), of volumes (ch02) and of --tmpfs (ch05) are made in a writable
        // layer that is thrown away (never in the image), then "/" goes read-only.
        let mount_points = network.has_etc_files()
            || !args.root.volumes.is_empty()
            || !args.overlay.tmpfs.is_empty();
        let overlay = args
            .overlay
            .config(&rootfs_path, image_layers, mount_points)?;
        if args.overlay.read_only && overlay.is_none() {
            // No layer to make the /etc files' mount points in: the image must already have them.
            if let Some(missing) = network::missing_mount_points(&network, &rootfs_path) {
                bail!(error::hint(
                    format!("--read-only --no-overlay: the image has no {missing} for the network's file to be mounted on, and a read-only image cannot get one"),
                    "drop --no-overlay (the mount point is then made in a layer that is thrown away), or use --network none|host"
                ));
            }
        }
        let tmpfs = args
            .overlay
            .tmpfs
            .iter()
            .map(|t| overlay::parse_tmpfs(t))
            .collect::<Result<Vec<_>>>()?;
        let mut rootfs =
            rootfs_config(args, rootfs_path, &network, &userns, &namespaces, host, &id)?;
        // ch09: the image's WorkingDir, unless -w says otherwise.
        if let (None, Some(w)) = (
            &args.root.workdir,
            config.and_then(|c| c.working_dir.as_ref()),
        ) {
            if !w.is_empty() {
                rootfs.workdir = absolute_workdir(PathBuf::from(w))?;
            }
        }
        // ch07: every hardening option checked and the seccomp filter compiled before clone.
        let security = security::Config::from_options(&args.security.options())?;
        Ok(Spec {
            id,
            host: host.clone(),
            hostname,
            namespaces,
            rootfs,
            command,
            env,
            user,
            userns,
            cgroup,
            stats: args.cgroups.stats,
            overlay,
            tmpfs,
            lifecycle: args.lifecycle.clone(),
            network,
            security,
            image,
        })
    }
}
// ANCHOR_END: validate

/// ch09: the image's base layer, checked as a root filesystem. Its layers are shared by every
/// container and image using them: only the overlay can put a writable layer above them.
fn image_root(img: &image::Image, overlay: &overlay::OverlayArgs) -> Result<PathBuf> {
    if overlay.no_overlay {
        bail!(error::hint(
            format!(
                "--no-overlay cannot run the image {}: its layers are stacked by the overlay (chapter 5), and without one the container would write into layers other containers share",
                img.reference
            ),
            "drop --no-overlay, or give a root filesystem directory (e.g. `umoci unpack` the image into one)"
        ));
    }
    rootfs::check_rootfs(&img.layers[0])
}

// ANCHOR: namespaces
/// ch01: the namespaces the container gets. The network stage decides about the network namespace
/// (`--network host` shares minictr's), the user namespace stage about the user namespace.
fn namespaces(
    a: &namespaces::NamespacesArgs,
    userns: &Option<userns::Plan>,
    network: &network::Config,
) -> namespaces::Namespaces {
    namespaces::Namespaces {
        user: userns.is_some(),
        pid: !a.no_pid,
        net: network.own_netns(),
        uts: !a.no_uts,
        ipc: !a.no_ipc,
        cgroup: !a.no_cgroupns,
    }
}
// ANCHOR_END: namespaces

/// ch01: the hostname — `--hostname`, else the id; without a UTS namespace the host's own.
fn hostname(a: &namespaces::NamespacesArgs, id: &str, host: &Host) -> Result<String> {
    let name = match (&a.hostname, a.no_uts) {
        (Some(_), true) => bail!(error::hint(
            "--hostname needs the container's own UTS namespace, and --no-uts keeps the host's",
            "drop --no-uts, or drop --hostname"
        )),
        // No UTS namespace: the container shares the host's name, and $HOSTNAME says so.
        (None, true) => host.hostname.clone().unwrap_or_else(|| id.to_string()),
        (Some(h), false) => h.clone(),
        (None, false) => id.to_string(),
    };
    if !a.no_uts {
        namespaces::validate_hostname(&name)?;
    }
    Ok(name)
}

/// The process: the image's defaults (chapter 9) under `-e`, `-u`, `--entrypoint` and the command
/// line's own command, which must not be an empty string.
fn process_args(args: &RunArgs, image: Option<&image::ImageConfig>) -> Result<ProcessArgs> {
    // The image's Env first: a later -e of the same name wins (process::build_env).
    let mut env = image.map(image::run::env).unwrap_or_default();
    for e in &args.env {
        env.extend(process::parse_env(e)?);
    }
    let image_user = image
        .and_then(|c| c.user.as_deref())
        .filter(|u| !u.is_empty());
    let user = match args.user.as_deref().or(image_user) {
        Some(u) => process::parse_user(u)?,
        None => process::UserSpec::default(),
    };
    let command = image::run::command(image, args.image.entrypoint.as_deref(), &args.command)?;
    if command.first().is_some_and(|c| c.is_empty()) {
        bail!(error::hint(
            "the command is an empty string",
            "give the program to run inside the container, e.g. /bin/sh"
        ));
    }
    Ok(ProcessArgs { command, env, user })
}

/// The container's first process as the command line and the image say.
struct ProcessArgs {
    command: Vec<String>,
    env: Vec<(String, String)>,
    user: process::UserSpec,
}

/// ch03: the user namespace's maps, or `None` with `--userns=host` (root only).
fn userns_plan(a: &userns::UsernsArgs, host: &Host) -> Result<Option<userns::Plan>> {
    match a.userns.as_str() {
        "private" | "" => {
            let parse = |v: &[String]| {
                v.iter()
                    .map(|m| userns::IdMap::parse(m))
                    .collect::<Result<Vec<_>>>()
            };
            Ok(Some(userns::plan(&parse(&a.uidmap)?, &parse(&a.gidmap)?)?))
        }
        "host" => {
            if !a.uidmap.is_empty() || !a.gidmap.is_empty() {
                bail!(error::hint(
                    "--uidmap/--gidmap need a user namespace",
                    "drop --userns=host"
                ));
            }
            if !host.is_root() {
                bail!(error::hint(
                    "--userns=host needs root",
                    "run as root (sudo), or leave the user namespace on so your own uid becomes root inside"
                ));
            }
            Ok(None)
        }
        other => bail!(error::hint(
            format!("invalid --userns value {other:?}"),
            "use --userns=private or --userns=host"
        )),
    }
}

/// ch02: the root filesystem stage's config: the volumes (the network's /etc files first, so a
/// user's `-v` can still replace them), the working directory, which kernel filesystems to mount.
fn rootfs_config(
    args: &RunArgs,
    rootfs: PathBuf,
    network: &network::Config,
    userns: &Option<userns::Plan>,
    ns: &namespaces::Namespaces,
    host: &Host,
    id: &str,
) -> Result<rootfs::Config> {
    let rundir = host.run_dir.join(id);
    let mut volumes: Vec<rootfs::Volume> = network::etc_binds(network, &rundir)
        .into_iter()
        .map(|(host, target)| rootfs::Volume {
            host,
            target,
            readonly: false,
            idmap: false,
            is_dir: false,
        })
        .collect();
    for v in &args.root.volumes {
        volumes.push(rootfs::parse_volume(v)?);
    }
    check_idmap_volumes(&volumes, userns, host)?;
    let workdir = absolute_workdir(
        args.root
            .workdir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/")),
    )?;
    // As host root with a user namespace the child is an unprivileged host user that may not walk to
    // the image: its root goes on the runtime directory, which it can always reach (every volume,
    // the /etc files in that directory included, then comes as a prepared mount). Otherwise the
    // rootfs is its own mount point, as with runc: no directory to make and remove per start.
    let volumes_prepared = userns.is_some() && host.is_root();
    let mountpoint = if volumes_prepared {
        rundir
    } else {
        rootfs.clone()
    };
    Ok(rootfs::Config {
        rootfs,
        mountpoint,
        volumes_prepared,
        readonly: args.overlay.read_only,
        volumes,
        workdir,
        own_netns: ns.net,
        own_ipcns: ns.ipc,
        own_pidns: ns.pid,
    })
}

fn absolute_workdir(workdir: PathBuf) -> Result<PathBuf> {
    if !Path::new(&workdir).is_absolute() {
        bail!(error::hint(
            format!(
                "invalid working directory {}: not absolute",
                workdir.display()
            ),
            "give an absolute path inside the container, e.g. -w /tmp"
        ));
    }
    Ok(workdir)
}

/// ch03: an idmapped volume needs a user namespace to map into, and host root to make it.
fn check_idmap_volumes(
    volumes: &[rootfs::Volume],
    userns: &Option<userns::Plan>,
    host: &Host,
) -> Result<()> {
    let idmapped = volumes.iter().filter(|v| v.idmap).count();
    if idmapped == 0 {
        return Ok(());
    }
    if userns.is_none() {
        bail!(error::hint(
            "`:idmap` volumes need a user namespace",
            "drop --userns=host, or drop :idmap"
        ));
    }
    if !host.is_root() {
        bail!(error::hint(
            "`:idmap` volumes need root: the kernel lets only host root create idmapped mounts",
            "drop :idmap (rootless, files you own appear as root inside already)"
        ));
    }
    if idmapped > 16 {
        bail!(error::hint(
            "more than 16 `:idmap` volumes",
            "idmap a common parent directory instead"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn host(euid: u32, network: Option<&str>) -> Host {
        Host {
            euid,
            egid: euid,
            network_default: network.map(str::to_string),
            hostname: Some("the-host".into()),
            run_dir: std::env::temp_dir().join("minictr-spec-test"),
            cgroup_layout: v1_host,
            until: None,
        }
    }

    /// A cgroup v1 host: memory and pids hierarchies, minictr in their roots.
    fn v1_host() -> Result<cgroups::Layout> {
        Ok(cgroups::Layout::from_texts(
            "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             33 31 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
            "4:memory:/\n3:pids:/\n",
        ))
    }

    /// A directory that passes the rootfs check (no /proc, /sys, /dev symlinks): this repository.
    fn rootfs() -> String {
        env!("CARGO_MANIFEST_DIR").to_string()
    }

    fn spec(host: &Host, flags: &[&str]) -> Result<Spec> {
        let cg = flags
            .iter()
            .any(|f| f.starts_with("--memory") || *f == "--cgroups");
        let flags: Vec<&str> = flags
            .iter()
            .copied()
            .filter(|f| *f != "--cgroups")
            .collect();
        let root = rootfs();
        let mut argv = vec!["run"];
        if !cg {
            argv.push("--no-cgroup");
        }
        argv.extend(flags);
        argv.extend([root.as_str(), "/bin/true"]);
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        Spec::from_args(&cli.run, host, None)
    }

    fn err(host: &Host, flags: &[&str]) -> String {
        match spec(host, flags) {
            Ok(_) => panic!("{flags:?} was accepted"),
            Err(e) => error::one_line(&e),
        }
    }

    #[test]
    fn rootless_defaults_to_no_network_and_root_to_the_bridge() {
        let s = spec(&host(1000, None), &[]).unwrap();
        assert_eq!(s.network.mode, network::Mode::None);
        assert!(s.namespaces.net);
        let s = spec(&host(0, None), &["--userns=host"]).unwrap();
        assert_eq!(s.network.mode, network::Mode::Bridge);
    }

    #[test]
    fn minictr_network_is_the_default_and_flags_win() {
        let s = spec(&host(0, Some("none")), &["--userns=host"]).unwrap();
        assert_eq!(s.network.mode, network::Mode::None);
        let s = spec(&host(0, Some("none")), &["--userns=host", "--no-net"]).unwrap();
        assert_eq!(s.network.mode, network::Mode::Host);
        assert!(!s.namespaces.net);
        let s = spec(&host(0, Some("none")), &["--userns=host", "--network=host"]).unwrap();
        assert_eq!(s.network.mode, network::Mode::Host);
    }

    #[test]
    fn userns_host_is_refused_rootless() {
        assert!(err(&host(1000, None), &["--userns=host"]).contains("--userns=host needs root"));
        let s = spec(&host(0, Some("none")), &["--userns=host"]).unwrap();
        assert!(s.userns.is_none() && !s.namespaces.user);
        assert!(!s.rootfs.volumes_prepared);
    }

    #[test]
    fn disk_layer_reaches_the_overlay_stage() {
        let h = host(0, Some("none"));
        let ov = |flags: &[&str]| spec(&h, flags).unwrap().overlay.unwrap();
        assert!(!ov(&[]).disk_layer);
        let d = ov(&["--disk-layer"]);
        assert!(d.disk_layer && !d.keep);
    }

    #[test]
    fn stage_switch_conflicts_are_refused() {
        let h = host(0, Some("none"));
        assert!(err(&h, &["--no-overlay", "--keep"]).contains("need the overlay stage"));
        assert!(err(&h, &["--no-overlay", "--disk-layer"]).contains("need the overlay stage"));
        assert!(err(&h, &["--hostname", "x", "--no-uts"]).contains("--no-uts"));
        assert!(err(&h, &["--read-only", "--name", "x"]).contains("no writable layer"));
        assert!(err(&h, &["-w", "tmp"]).contains("not absolute"));
        assert!(err(&h, &["--userns=sideways"]).contains("invalid --userns"));
    }

    #[test]
    fn hostname_is_the_id_or_the_hosts_without_uts() {
        let h = host(0, Some("none"));
        let s = spec(&h, &["--userns=host"]).unwrap();
        assert_eq!(s.hostname, s.id);
        let s = spec(&h, &["--userns=host", "--no-uts"]).unwrap();
        assert_eq!(s.hostname, "the-host");
        assert!(!s.namespaces.uts);
    }

    #[test]
    fn idmap_volumes_need_root_and_a_user_namespace() {
        let v = ["-v", "/tmp:/mnt:idmap"];
        let rootless = err(&host(1000, None), &v);
        assert!(rootless.contains("need root"), "{rootless}");
        let no_userns = err(&host(0, Some("none")), &["--userns=host", v[0], v[1]]);
        assert!(no_userns.contains("need a user namespace"), "{no_userns}");
    }

    #[test]
    fn cgroup_v1_is_used_as_root_and_skipped_or_refused_rootless() {
        let s = spec(&host(0, Some("none")), &["--userns=host", "--cgroups"]).unwrap();
        let cgroups::Decision::Use(plan) = &s.cgroup else {
            panic!("root on v1 gets a cgroup: {:?}", s.cgroup);
        };
        assert!(plan.paths().0.iter().any(|p| p.ends_with(&s.id)));
        let s = spec(&host(1000, None), &["--cgroups"]).unwrap();
        assert!(matches!(&s.cgroup, cgroups::Decision::Skip(why) if why.contains("v1")));
        let e = err(&host(1000, None), &["--memory=64m"]);
        assert!(e.contains("cannot apply --memory"), "{e}");
    }

    /// `minictr run [flags] IMAGE [cmd]` on a fake pulled image: two "layers" of this repository.
    fn image_spec(config: &image::ImageConfig, flags: &[&str], cmd: &[&str]) -> Result<Spec> {
        let root = PathBuf::from(rootfs());
        let img = image::Image {
            reference: "localhost/t:1".into(),
            id: "sha256:0".into(),
            layers: vec![root.clone(), root.join("src")],
            config: config.clone(),
        };
        let mut argv = vec!["run", "--no-cgroup", "--userns=host"];
        argv.extend(flags);
        argv.push("localhost/t:1");
        argv.extend(cmd);
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        Spec::from_args(&cli.run, &host(0, Some("none")), Some(img))
    }

    #[test]
    fn an_image_gives_the_defaults_and_the_flags_override_them() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let config = image::ImageConfig {
            env: s(&["PATH=/img/bin", "A=1"]),
            working_dir: Some("/srv".into()),
            entrypoint: Vec::new(),
            cmd: s(&["/bin/app", "--serve"]),
            user: Some("1000:1000".into()),
        };
        let spec = image_spec(&config, &[], &[]).unwrap();
        assert_eq!(spec.command, s(&["/bin/app", "--serve"]));
        assert_eq!(
            spec.env[..2],
            [("PATH".into(), "/img/bin".into()), ("A".into(), "1".into())]
        );
        assert_eq!(spec.rootfs.workdir, PathBuf::from("/srv"));
        assert_eq!(spec.user, process::parse_user("1000:1000").unwrap());
        // The layers: the base is the root, the one above it lies on top (lowers are top first).
        let root = PathBuf::from(rootfs());
        assert_eq!(spec.rootfs.rootfs, root);
        assert_eq!(
            spec.overlay.unwrap().lowers,
            vec![root.join("src"), root.clone()]
        );

        let spec = image_spec(&config, &["-e", "A=2", "-w", "/tmp", "-u", "0"], &["sh"]).unwrap();
        assert_eq!(spec.command, s(&["sh"]));
        assert_eq!(
            spec.env.last(),
            Some(&("A".into(), "2".into())),
            "-e comes last and wins"
        );
        assert_eq!(spec.rootfs.workdir, PathBuf::from("/tmp"));
        assert_eq!(spec.user, process::parse_user("0").unwrap());

        let spec = image_spec(&config, &["--entrypoint", "/bin/echo"], &["hi"]).unwrap();
        assert_eq!(spec.command, s(&["/bin/echo", "hi"]));

        let err = |config: &image::ImageConfig, flags: &[&str]| match image_spec(config, flags, &[])
        {
            Ok(_) => panic!("{flags:?} was accepted"),
            Err(e) => error::one_line(&e),
        };
        assert!(err(&config, &["--no-overlay"]).contains("--no-overlay cannot run the image"));
        let bare = image::ImageConfig::default();
        assert!(err(&bare, &[]).contains("no command: the image has no Cmd/Entrypoint"));
    }

    #[test]
    fn the_runtime_directory_comes_from_the_host() {
        let h = host(0, Some("none"));
        let s = spec(&h, &["--userns=host"]).unwrap();
        assert_eq!(s.rootfs.mountpoint, s.rootfs.rootfs);
        assert!(!s.rootfs.volumes_prepared);
    }

    #[test]
    fn with_a_user_namespace_root_mounts_on_the_runtime_directory() {
        let h = host(0, Some("none"));
        let s = spec(&h, &[]).unwrap();
        assert!(s.userns.is_some() && s.rootfs.volumes_prepared);
        assert_eq!(s.rootfs.mountpoint, h.run_dir.join(&s.id));
    }
}
