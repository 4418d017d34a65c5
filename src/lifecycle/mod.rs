//! Chapter 8 — Lifecycle: terminals, init, detached containers and the commands that manage them,
//! and state that survives crashes.

pub mod commands;
pub mod detach;
pub mod init;
pub mod pty;
pub mod supervise;

/// Chapter 8's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Lifecycle (chapter 8)")]
pub struct LifecycleArgs {
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
}
