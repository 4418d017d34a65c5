//! minictr — an educational container runtime. `minictr run ROOTFS CMD…` runs CMD isolated the way
//! Docker isolates it; each stage of the start sequence is one module and one chapter of the book in
//! `chapters/`. This file is only the command line: the start sequence lives in `run.rs`.

mod bundle;
mod cgroups;
mod clone3;
mod doctor;
mod error;
mod explain;
mod fds;
mod host;
mod image;
mod lifecycle;
mod manage;
mod mountapi;
mod namespaces;
mod network;
mod overlay;
mod probe;
mod process;
mod rootfs;
mod run;
mod security;
mod selftest;
mod spec;
mod state;
mod sync;
mod userns;
mod workshop;

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

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

/// `defer`: a subcommand's options are added to the parser only when that subcommand is the one
/// used (or for help, completions, man pages): `minictr run` does not build the other commands'.
/// The options of a variant like `Run(Box<RunArgs>)` are then added after the variant's help text,
/// and the doc comments of `RunArgs` and of the structs it flattens would replace that text:
/// `cli_command` adds them with `deferred_args` instead.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Run a command in a new container (foreground; removed when it exits, like `docker run --rm`)
    #[command(after_help = "Examples:\n  \
        sudo minictr run ./rootfs /bin/sh\n  \
        sudo minictr run --hostname box -e GREETING=hi ./rootfs sh -c 'echo $GREETING from $(hostname)'\n  \
        sudo minictr run -v \"$PWD\":/work:ro -w /work ./rootfs ls -l\n  \
        sudo minictr run --explain ./rootfs /bin/true        # narrate every kernel call\n  \
        sudo minictr run --no-net --no-pid ./rootfs ps       # switch stages off to see what they add\n  \
        sudo minictr run alpine:3.20                         # an image: pulled if missing, its Cmd\n\n\
        ROOTFS|IMAGE: an existing path (or one starting with / or .) is a root filesystem directory;\n\
        anything else is an image reference, from the local store or pulled like `minictr pull` (ch09).\n\n\
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

    /// List containers: running ones, or all with -a (exited, kept and named ones too)
    #[command(
        after_help = "Examples:\n  sudo minictr ps -a\n  sudo minictr rm $(sudo minictr ps -aq)   # remove every container"
    )]
    Ps {
        /// Also show exited containers and kept ones (--name, --keep)
        #[arg(short, long)]
        all: bool,
        /// Print the ids only
        #[arg(short, long)]
        quiet: bool,
    },

    /// Print a container's record as JSON (its state; for a kept container, its layer's record)
    #[command(
        after_help = "Examples:\n  sudo minictr inspect web\n  sudo minictr inspect web | jq .resources"
    )]
    Inspect {
        #[arg(value_name = "ID|NAME")]
        container: String,
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

    /// Check this host: one line per requirement of `minictr run`, OK, WARN or FAIL with the fix
    #[command(
        after_help = "Exit status: 0 when `minictr run` with its defaults works here, 1 otherwise. Changes nothing on the host."
    )]
    Doctor(doctor::DoctorArgs),

    /// Print a shell completion script (bash, zsh or fish)
    #[command(
        after_help = "Examples:\n  minictr completions bash > /etc/bash_completion.d/minictr\n  minictr completions fish > ~/.config/fish/completions/minictr.fish"
    )]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff), or write one page per command into DIR
    #[command(
        after_help = "Examples:\n  minictr man > minictr.1 && man ./minictr.1\n  sudo minictr man /usr/local/share/man/man1   # minictr.1, minictr-run.1, …"
    )]
    Man {
        /// Write minictr.1 and minictr-COMMAND.1 for every command into this directory
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },

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
    #[command(
        after_help = "An image a container uses (running, or exited and not yet removed) is refused; with -f it is\n\
        untagged anyway and the layers it needs stay until that container is gone."
    )]
    Rmi {
        /// Untag an image even while a container uses it
        #[arg(short, long)]
        force: bool,
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

/// Options of `minictr run`: the image, the command and its process settings here; every other flag
/// belongs to the stage (and chapter) that uses it.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The root filesystem: a directory holding the container's /bin, /etc, … (build one with
    /// rootfs-scripts/busybox.sh), or an image. A path that exists, or starts with / or ., is a
    /// directory; anything else is an image reference, pulled first when not in the local store (ch09)
    #[arg(value_name = "ROOTFS|IMAGE")]
    pub rootfs: PathBuf,

    /// The command to run inside, and its arguments (passed on verbatim, also words starting with '-');
    /// optional with an image that has a Cmd or Entrypoint
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub command: Vec<String>,

    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value); repeatable
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Run as this user: UID[:GID] (numbers, or names from the container's /etc/passwd)
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,

    /// Narrate each kernel call of the start sequence on stderr, with its chapter
    #[arg(long)]
    pub explain: bool,

    #[command(flatten)]
    pub namespaces: namespaces::NamespacesArgs,
    #[command(flatten)]
    pub root: rootfs::RootfsArgs,
    #[command(flatten)]
    pub userns: userns::UsernsArgs,
    #[command(flatten)]
    pub cgroups: cgroups::CgroupsArgs,
    #[command(flatten)]
    pub overlay: overlay::OverlayArgs,
    #[command(flatten)]
    pub network: network::NetworkArgs,
    #[command(flatten)]
    pub security: security::SecurityArgs,
    #[command(flatten)]
    pub lifecycle: lifecycle::LifecycleArgs,
    #[command(flatten)]
    pub image: image::ImageArgs,
    #[command(flatten)]
    pub workshop: workshop::WorkshopArgs,
}

/// The options of `T`, added to the subcommand `cmd` when it is built (clap's `defer`), with the
/// subcommand's own help text kept: `T`'s doc comment (and those of the structs it flattens) would
/// otherwise replace it, being added last.
pub fn deferred_args<T: clap::Args>(cmd: clap::Command) -> clap::Command {
    use clap::builder::Resettable;
    let text = |t: Option<&clap::builder::StyledStr>| {
        t.cloned().map_or(Resettable::Reset, Resettable::Value)
    };
    let (about, long_about) = (text(cmd.get_about()), text(cmd.get_long_about()));
    T::augment_args(cmd).about(about).long_about(long_about)
}

/// The command line above, as clap's parser, help, completions and man pages see it.
fn cli_command() -> clap::Command {
    let mut cli = Cli::command();
    // In place: `mut_subcommand` would move each to the end, and completions list them in order.
    for sub in cli.get_subcommands_mut() {
        let args: fn(clap::Command) -> clap::Command = match sub.get_name() {
            "run" => deferred_args::<RunArgs>,
            "selftest" => deferred_args::<selftest::SelftestArgs>,
            "doctor" => deferred_args::<doctor::DoctorArgs>,
            _ => continue,
        };
        *sub = std::mem::take(sub).defer(args);
    }
    cli
}

/// Undo what crashed runs left behind, before any command that reads or creates containers
/// (`kill` and `logs` only read one container's own files; `doctor`, `completions` and `man` change
/// nothing).
fn cleans_stale(c: &Command) -> bool {
    !matches!(
        c,
        Command::Kill { .. }
            | Command::Logs { .. }
            | Command::Selftest(_)
            | Command::Doctor(_)
            | Command::Completions { .. }
            | Command::Man { .. }
    )
}

/// `minictr completions SHELL`: the script clap_complete generates from the command line above.
fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    clap_complete::generate(shell, &mut cli_command(), "minictr", &mut std::io::stdout());
    Ok(0)
}

/// `minictr man [DIR]`: the manual pages clap_mangen renders from the command line above.
fn print_man(dir: Option<&std::path::Path>) -> anyhow::Result<i32> {
    use anyhow::Context;
    match dir {
        Some(d) => clap_mangen::generate_to(cli_command(), d).map_err(|e| {
            error::hint(
                format!("failed to write the manual pages into {}: {e}", d.display()),
                "give an existing directory you can write",
            )
        })?,
        None => clap_mangen::Man::new(cli_command())
            .render(&mut std::io::stdout())
            .context("failed to write the manual page")?,
    }
    Ok(0)
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
    let mut cmd = bundle::with_bundle_arg(cli_command());
    let matches = cmd
        .try_get_matches_from_mut(&argv)
        .unwrap_or_else(|e| exit_clap(e));
    match bundle::words_for(&matches, &cmd, &argv) {
        Ok(Some(words)) => Cli::try_parse_from(words).unwrap_or_else(|e| exit_clap(e)),
        Ok(None) => Cli::from_arg_matches(&matches).unwrap_or_else(|e| exit_clap(e)),
        Err(e) => exit_error(e),
    }
}

fn main() {
    let cli = parse_cli();
    // --explain narrates the stale cleanup too.
    if matches!(&cli.command, Command::Run(a) if a.explain)
        || matches!(&cli.command, Command::Exec { explain: true, .. })
    {
        explain::enable();
    }
    let host = host::Host::detect();
    if cleans_stale(&cli.command) {
        state::cleanup_stale(&run::Stages(&host));
    }
    let result = match cli.command {
        Command::Run(args) => run::run(*args, &host),
        Command::Diff { container } => manage::diff(&container),
        Command::Rm { force, containers } => manage::rm(&containers, force).inspect(|_| {
            // ch09: layers an `rmi -f` left to these containers go with them.
            image::run::collect_after(&overlay::data_dir(), &|| run::images_in_use(&host))
        }),
        Command::Ps { all, quiet } => manage::ps(all, quiet),
        Command::Inspect { container } => manage::inspect(&container),
        Command::Logs { follow, container } => lifecycle::commands::logs(&container, follow),
        Command::Exec {
            tty,
            interactive,
            env,
            workdir,
            user,
            explain: _,
            container,
            command,
        } => manage::exec(manage::ExecOptions {
            container,
            command,
            tty,
            interactive,
            env,
            workdir,
            user,
        }),
        Command::Stop { time, containers } => containers
            .iter()
            .try_for_each(|c| lifecycle::commands::stop(c, time).map(|_| ()))
            .map(|_| 0),
        Command::Stats {
            no_stream,
            containers,
        } => manage::stats(&containers, no_stream),
        Command::Kill { signal, container } => lifecycle::commands::kill_cmd(&container, &signal),
        Command::Network(NetworkCommand::Rm) => run::network_rm(&host),
        Command::Selftest(args) => selftest::run(args),
        Command::Pull {
            reference,
            insecure_registry,
            explain,
        } => {
            if explain {
                explain::enable();
            }
            image::pull(
                &overlay::data_dir(),
                &reference,
                &insecure_registry,
                &|| run::images_in_use(&host),
            )
        }
        Command::Images { reference } => image::list(&overlay::data_dir(), reference.as_deref()),
        Command::Rmi { force, references } => {
            image::remove(&overlay::data_dir(), &references, force, &|| {
                run::images_in_use(&host)
            })
        }
        Command::Doctor(args) => doctor::run(args),
        Command::Completions { shell } => print_completions(shell),
        Command::Man { dir } => print_man(dir.as_deref()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's help line is the variant's doc comment, also once its deferred options
    /// are built (a doc comment on a variant's Args struct would replace it then).
    #[test]
    fn deferred_options_keep_the_help_lines() {
        for cmd in [cli_command(), bundle::with_bundle_arg(cli_command())] {
            help_lines_kept(cmd);
        }
    }

    fn help_lines_kept(mut cmd: clap::Command) {
        let before: Vec<(String, Option<String>, Option<String>)> = cmd
            .get_subcommands()
            .map(|s| {
                let text = |t: Option<&clap::builder::StyledStr>| t.map(ToString::to_string);
                (
                    s.get_name().to_string(),
                    text(s.get_about()),
                    text(s.get_long_about()),
                )
            })
            .collect();
        assert!(before
            .iter()
            .any(|(n, about, _)| n == "run" && about.is_some()));
        cmd.build();
        for (name, about, long_about) in before {
            let s = cmd.find_subcommand(&name).unwrap();
            assert!(
                s.get_arguments().next().is_some() || name == "network",
                "{name}: not built"
            );
            assert_eq!(s.get_about().map(ToString::to_string), about, "{name}");
            assert_eq!(
                s.get_long_about().map(ToString::to_string),
                long_about,
                "{name}"
            );
        }
    }
}
