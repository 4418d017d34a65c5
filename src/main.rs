//! minictr — an educational container runtime. `minictr run ROOTFS CMD…` runs CMD isolated the way
//! Docker isolates it; each stage of the start sequence is one module and one chapter of the book in
//! `chapters/`. This file is only the command line: the start sequence lives in `run.rs`.

mod bundle;
mod cgroups;
mod error;
mod explain;
mod image;
mod lifecycle;
mod manage;
mod mountapi;
mod namespaces;
mod network;
mod overlay;
mod process;
mod rootfs;
mod run;
mod security;
mod selftest;
mod state;
mod sync;
mod userns;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "minictr",
    version,
    about = "An educational container runtime: build your own Docker",
    after_help = "Example:\n  sudo minictr run ./rootfs /bin/sh\n\nEach stage of a container start is one chapter of the book in chapters/; \
                  `minictr run --explain …` names every kernel call as it happens."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container (foreground; removed when it exits, like `docker run --rm`)
    #[command(after_help = "Examples:\n  \
        sudo minictr run ./rootfs /bin/sh\n  \
        sudo minictr run --hostname box -e GREETING=hi ./rootfs sh -c 'echo $GREETING from $(hostname)'\n  \
        sudo minictr run -v \"$PWD\":/work:ro -w /work ./rootfs ls -l\n  \
        sudo minictr run --explain ./rootfs /bin/true        # narrate every kernel call\n  \
        sudo minictr run --no-net --no-pid ./rootfs ps       # switch stages off to see what they add\n\n\
        Exit status: the command's; 128+N if it was killed by signal N; 125 if minictr failed;\n\
        126 if the command cannot be executed; 127 if it was not found.")]
    Run(Box<RunArgs>),

    /// List what a kept container changed in its writable layer (A added, C changed, D deleted)
    #[command(
        after_help = "Example:\n  sudo minictr run --name demo ./rootfs sh -c 'rm /bin/ls; echo hi > /etc/motd'\n  sudo minictr diff demo"
    )]
    Diff {
        /// Container id (or a unique prefix) or name
        #[arg(value_name = "ID|NAME")]
        container: String,
    },

    /// Remove stopped or kept containers (state, log, writable layer, name)
    #[command(
        after_help = "Examples:\n  sudo minictr rm demo\n  sudo minictr rm -f web      # kill it first if it runs"
    )]
    Rm {
        /// Kill a running container first
        #[arg(short, long)]
        force: bool,
        /// Container ids (or unique prefixes) or names
        #[arg(value_name = "ID|NAME", required = true)]
        containers: Vec<String>,
    },

    /// List containers: running ones, or all with -a
    #[command(after_help = "Example:\n  sudo minictr ps -a")]
    Ps {
        /// Also show exited containers
        #[arg(short, long)]
        all: bool,
    },

    /// Show the output of a detached container
    #[command(
        after_help = "Example:\n  id=$(sudo minictr run -d ./rootfs sh -c 'while true; do date; sleep 1; done')\n  sudo minictr logs -f $id"
    )]
    Logs {
        /// Keep printing new output until the container exits
        #[arg(short, long)]
        follow: bool,
        #[arg(value_name = "ID|NAME")]
        container: String,
    },

    /// Run another command in a running container (all its namespaces, its user and environment)
    #[command(
        after_help = "Examples:\n  sudo minictr exec web ps\n  sudo minictr exec -it web /bin/sh"
    )]
    Exec {
        /// Allocate a pseudo-terminal
        #[arg(short = 't', long)]
        tty: bool,
        /// Keep stdin open
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Set an environment variable (KEY=VALUE); repeatable
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Working directory inside the container
        #[arg(short = 'w', long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// User: UID[:GID] or names
        #[arg(short = 'u', long, value_name = "UID[:GID]")]
        user: Option<String>,
        /// Narrate each kernel call
        #[arg(long)]
        explain: bool,
        #[arg(value_name = "ID|NAME")]
        container: String,
        #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        command: Vec<String>,
    },

    /// Stop a running container: SIGTERM, then SIGKILL after a grace period
    #[command(after_help = "Example:\n  sudo minictr stop -t 2 web")]
    Stop {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(value_name = "ID|NAME", required = true)]
        containers: Vec<String>,
    },

    /// Live resource usage of running containers, from their cgroups (refreshing; --no-stream prints once)
    #[command(
        after_help = "Examples:\n  sudo minictr stats\n  sudo minictr stats --no-stream web"
    )]
    Stats {
        /// Print once instead of refreshing every second
        #[arg(long)]
        no_stream: bool,
        /// Containers (default: every running one)
        #[arg(value_name = "ID|NAME")]
        containers: Vec<String>,
    },

    /// Send a signal to a container's first process
    #[command(after_help = "Example:\n  sudo minictr kill -s HUP web")]
    Kill {
        /// Signal name or number
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(value_name = "ID|NAME")]
        container: String,
    },

    /// Start containers on ROOTFS and check, from inside, every wall the book describes (PASS/FAIL per check)
    #[command(
        after_help = "Without ROOTFS, ./rootfs is used when it exists. Build one with:\n  \
        rootfs-scripts/busybox.sh ./rootfs\n\nExit status: 0 when every check passes, 1 when one fails, 125 if minictr itself failed."
    )]
    Selftest(selftest::SelftestArgs),

    /// Manage the bridge network of the network namespace minictr runs in (chapter 6)
    #[command(subcommand)]
    Network(NetworkCommand),

    // ---- chapter 9: images ----
    /// Download an image from a registry and unpack its layers (chapter 9)
    #[command(after_help = "Examples:\n  sudo minictr pull alpine:3.20\n  \
        sudo minictr pull localhost:5000/busybox:latest\n  \
        sudo minictr pull --insecure-registry reg.lan:5000 reg.lan:5000/app:1.0\n\n\
        Plain HTTP is used for localhost and 127.0.0.0/8, and for hosts named with --insecure-registry.")]
    Pull {
        /// NAME[:TAG][@sha256:DIGEST]; Docker Hub when NAME has no registry part
        #[arg(value_name = "REF")]
        reference: String,
        /// Talk plain HTTP to this registry (HOST or HOST:PORT); repeatable
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registry: Vec<String>,
        /// Narrate each request and store step on stderr
        #[arg(long)]
        explain: bool,
    },
    /// List pulled images; with REF, show one as JSON: its layer directories (bottom first) and config (chapter 9)
    Images {
        #[arg(value_name = "REF")]
        reference: Option<String>,
    },
    /// Remove images; a layer goes when no image uses it any more (chapter 9)
    Rmi {
        #[arg(value_name = "REF", required = true)]
        references: Vec<String>,
    },
}

/// `minictr network …` (ch06).
#[derive(Subcommand)]
enum NetworkCommand {
    /// Delete the bridge minictr0 and its nftables table (refused while containers use them)
    Rm,
}

/// Options of `minictr run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The root filesystem: a directory holding the container's /bin, /etc, … (build one with rootfs-scripts/busybox.sh)
    #[arg(value_name = "ROOTFS")]
    pub rootfs: PathBuf,

    /// The command to run inside, and its arguments (passed on verbatim, also words starting with '-')
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub command: Vec<String>,

    /// The container's hostname [default: the container id]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value); repeatable
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Bind-mount a host path: HOST:CONTAINER[:ro][,idmap]; repeatable
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,

    /// Working directory inside the container (created if missing) [default: /]
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Run as this user: UID[:GID] (numbers, or names from the container's /etc/passwd)
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,

    /// Narrate each kernel call of the start sequence on stderr, with its chapter
    #[arg(long)]
    pub explain: bool,

    /// User namespace: "private" (default: container root is an unprivileged host user) or "host" (off)
    #[arg(long, value_name = "MODE", default_value = "private")]
    pub userns: String,

    /// Map container uids to host uids: CTR:HOST:LEN; repeatable (default: from /etc/subuid)
    #[arg(long, value_name = "CTR:HOST:LEN")]
    pub uidmap: Vec<String>,

    /// Map container gids to host gids: CTR:HOST:LEN; repeatable (default: from /etc/subgid)
    #[arg(long, value_name = "CTR:HOST:LEN")]
    pub gidmap: Vec<String>,

    /// Allocate a pseudo-terminal for the container (its own /dev/pts/0)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Keep stdin open and forward it (with -t: into the container's terminal)
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Run in the background: print the container id and exit; output goes to `minictr logs`
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Run a tiny init as PID 1 that forwards signals and reaps zombies (minictr itself)
    #[arg(long)]
    pub init: bool,

    /// Extra read-only layer stacked above ROOTFS (repeatable; a later --layer lies above an earlier one)
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,

    /// Keep the writable layer after exit (see `minictr diff`, `minictr rm`)
    #[arg(long)]
    pub keep: bool,

    /// Name the container (unique; implies --keep)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Mount the container's root read-only (no writable layer)
    #[arg(long)]
    pub read_only: bool,

    /// Mount a tmpfs: PATH[:size=64m,mode=1777,exec,…] (default nosuid,nodev,noexec); repeatable
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,

    /// Stage switch (ch05): no overlay — the rootfs itself is the container's root, writes go to the image
    #[arg(long)]
    pub no_overlay: bool,

    /// Stage switch (ch01): keep the host's PID namespace
    #[arg(long)]
    pub no_pid: bool,
    /// Stage switch (ch01): keep the host's network namespace (same as --network host)
    #[arg(long)]
    pub no_net: bool,
    /// Stage switch (ch01): keep the host's UTS namespace (hostname)
    #[arg(long)]
    pub no_uts: bool,
    /// Stage switch (ch01): keep the host's IPC namespace
    #[arg(long)]
    pub no_ipc: bool,
    /// Stage switch (ch01): keep the host's cgroup namespace
    #[arg(long)]
    pub no_cgroupns: bool,

    // --- ch06 network ---
    /// Network: bridge (own address on the bridge minictr0; default as root), none (only lo; default
    /// rootless) or host (the host's network, like --no-net)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// The bridge's subnet when minictr creates it [default: 10.213.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Publish a container port: [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|/udp]; repeatable (bridge only)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    pub publish: Vec<String>,

    // ---- chapter 7: hardening ----
    /// Add a capability to Docker's default 14 (CAP_ prefix optional, any case, or ALL); repeatable
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (or ALL); repeatable
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// no-new-privileges[=true|false] (default true), seccomp=unconfined, seccomp=PROFILE.json (Docker format); repeatable
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (default nofile=1024:1024); repeatable
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Stage switch (ch07): no hardening at all (all capabilities, no seccomp, no masks, no no_new_privs)
    #[arg(long)]
    pub no_security: bool,
    /// Stage switch (ch07): keep every capability of the container's root
    #[arg(long)]
    pub no_caps: bool,
    /// Stage switch (ch07): no seccomp filter (same as --security-opt seccomp=unconfined)
    #[arg(long)]
    pub no_seccomp: bool,
    /// Stage switch (ch07): do not mask /proc/kcore, … nor make /proc/sys, … read-only
    #[arg(long)]
    pub no_masks: bool,
    // --- ch04 cgroups: Docker's resource limit flags ---
    /// Memory limit (ch04), e.g. 64M, 512k, 1g; the kernel's OOM killer enforces it
    #[arg(short = 'm', long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap (ch04); equal to --memory means no swap, -1 unlimited [default: twice --memory]
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU time limit in CPUs (ch04), e.g. 0.5 = half of one CPU (CFS quota per 100 ms period)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Relative CPU weight (ch04), 2..262144, default 1024 (v2: converted to cpu.weight)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpu_shares: Option<String>,
    /// Maximum number of processes (ch04); 0 or -1 for no limit
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// CPUs the container may run on (ch04), e.g. 0-1 or 0,2
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub cpuset_cpus: Option<String>,
    /// Relative block I/O weight (ch04), 10..1000
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub blkio_weight: Option<String>,
    /// Parent cgroup (ch04): /PATH from the hierarchy's root, or PATH beneath minictr's own cgroup [default: <own>/minictr]
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Print the container's resource usage from its cgroup at exit (ch04)
    #[arg(long)]
    pub stats: bool,
    /// Stage switch (ch04): no cgroup (no limits, no accounting)
    #[arg(long)]
    pub no_cgroup: bool,
}

/// A command-line error from clap: printed as clap formats it, exit 0 for help and version.
fn exit_clap(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let code = match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ => error::EXIT_RUNTIME,
    };
    let _ = e.print();
    std::process::exit(code);
}

fn exit_error(e: anyhow::Error) -> ! {
    eprintln!("minictr: {}", error::one_line(&e));
    std::process::exit(error::exit_code(&e));
}

/// ch09: `run --bundle DIR` is parsed as the `run` command line its config.json stands for.
fn parse_cli() -> Cli {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = bundle::with_bundle_arg(Cli::command());
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| exit_clap(e));
    let store = state::base_dir().join("bundle-seccomp");
    match bundle::words_for(&matches, &cmd, &argv, &store) {
        Ok(Some(words)) => Cli::try_parse_from(words).unwrap_or_else(|e| exit_clap(e)),
        Ok(None) => Cli::from_arg_matches(&matches).unwrap_or_else(|e| exit_clap(e)),
        Err(e) => exit_error(e),
    }
}

fn main() {
    let cli = parse_cli();
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Diff { container } => manage::diff(&container),
        Command::Rm { force, containers } => manage::rm(&containers, force),
        Command::Ps { all } => {
            run::cleanup_stale();
            lifecycle::commands::ps(all)
        }
        Command::Logs { follow, container } => lifecycle::commands::logs(&container, follow),
        Command::Exec {
            tty,
            interactive,
            env,
            workdir,
            user,
            explain,
            container,
            command,
        } => {
            if explain {
                explain::enable();
            }
            manage::exec(manage::ExecOptions {
                container,
                command,
                tty,
                interactive,
                env,
                workdir,
                user,
            })
        }
        Command::Stop { time, containers } => {
            run::cleanup_stale();
            containers
                .iter()
                .try_for_each(|c| lifecycle::commands::stop(c, time).map(|_| ()))
                .map(|_| 0)
        }
        Command::Stats {
            no_stream,
            containers,
        } => {
            run::cleanup_stale();
            manage::stats(&containers, no_stream)
        }
        Command::Kill { signal, container } => lifecycle::commands::kill_cmd(&container, &signal),
        Command::Network(NetworkCommand::Rm) => run::network_rm(),
        Command::Selftest(args) => selftest::run(args),
        Command::Pull {
            reference,
            insecure_registry,
            explain,
        } => {
            if explain {
                explain::enable();
            }
            image::pull(&overlay::data_dir(), &reference, &insecure_registry)
        }
        Command::Images { reference } => image::list(&overlay::data_dir(), reference.as_deref()),
        Command::Rmi { references } => image::remove(&overlay::data_dir(), &references),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_error(e),
    }
}
