//! Chapter 2's flags of `minictr run`.

use std::path::PathBuf;

/// Chapter 2's flags of `minictr run`: what is bound into the root, and where the command starts.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Root filesystem (chapter 2)")]
pub struct RootfsArgs {
    /// Bind-mount a host path: HOST:CONTAINER[:ro][,idmap]; repeatable
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,

    /// Working directory inside the container (created if missing) [default: /]
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
}
