//! Chapter 4's flags of `minictr run`: Docker's resource limit flags, as strings (parsed and checked
//! by [`super::plan`]).

/// Chapter 4's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Cgroups: resource limits (chapter 4)")]
pub struct CgroupsArgs {
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
