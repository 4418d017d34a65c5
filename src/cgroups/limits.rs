//! Docker's limit flags, parsed and checked (step 1) and converted to the numbers the kernel takes.

use super::CgroupsArgs;
use crate::error::hint;
use anyhow::{bail, Result};

/// The CFS period Docker uses for `--cpus`: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Docker's smallest memory limit: below it a container cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// `--memory-swap`: memory + swap together, or unlimited swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Total(u64),
    Unlimited,
}

/// The limits, in kernel units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes (`-m`).
    pub memory: Option<u64>,
    /// `--memory-swap` as given; `None` with `memory` set means Docker's default (swap = memory).
    pub memory_swap: Option<Swap>,
    /// `--cpus` as (quota, period) in microseconds.
    pub cpu: Option<(u64, u64)>,
    /// `--cpu-shares` (v1 units, 2..262144).
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`; `None` inside means unlimited ("max").
    pub pids: Option<Option<u64>>,
    /// `--cpuset-cpus`, e.g. "0-1,3".
    pub cpuset_cpus: Option<String>,
    /// `--blkio-weight` (10..1000).
    pub blkio_weight: Option<u64>,
}

// ANCHOR: parse
impl Limits {
    pub fn parse(o: &CgroupsArgs) -> Result<Limits> {
        let (memory, memory_swap) = parse_memory(o)?;
        let cpu = o.cpus.as_deref().map(parse_cpus).transpose()?;
        let cpu_shares = o
            .cpu_shares
            .as_deref()
            .map(|s| {
                parse_in_range(
                    "--cpu-shares",
                    s,
                    2..=262_144,
                    "(1024 is the default weight)",
                )
            })
            .transpose()?;
        let pids = match o.pids_limit.as_deref() {
            None => None,
            Some(s) => match s.trim().parse::<i64>() {
                Ok(n) if n > 0 => Some(Some(n as u64)),
                Ok(0) | Ok(-1) => Some(None),
                _ => bail!(hint(
                    format!("invalid --pids-limit value {s:?}"),
                    "give a positive number of processes, or 0 / -1 for no limit"
                )),
            },
        };
        let cpuset_cpus = o
            .cpuset_cpus
            .as_deref()
            .map(|s| parse_cpuset(s, &online_cpus()))
            .transpose()?;
        let blkio_weight = o
            .blkio_weight
            .as_deref()
            .map(|s| parse_in_range("--blkio-weight", s, 10..=1000, "(500 is the default)"))
            .transpose()?;
        Ok(Limits {
            memory,
            memory_swap,
            cpu,
            cpu_shares,
            pids,
            cpuset_cpus,
            blkio_weight,
        })
    }
    // ANCHOR_END: parse

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The flags that were given, for messages.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        let pairs = [
            (self.memory.is_some(), "--memory"),
            (self.memory_swap.is_some(), "--memory-swap"),
            (self.cpu.is_some(), "--cpus"),
            (self.cpu_shares.is_some(), "--cpu-shares"),
            (self.pids.is_some(), "--pids-limit"),
            (self.cpuset_cpus.is_some(), "--cpuset-cpus"),
            (self.blkio_weight.is_some(), "--blkio-weight"),
        ];
        for (on, name) in pairs {
            if on {
                f.push(name);
            }
        }
        f
    }
}

// ANCHOR: memory
/// `--memory` (at least 6 MiB) and `--memory-swap` (memory plus swap: not below `--memory`; -1 for
/// unlimited swap).
fn parse_memory(o: &CgroupsArgs) -> Result<(Option<u64>, Option<Swap>)> {
    let memory = o
        .memory
        .as_deref()
        .map(|s| parse_bytes("--memory", s))
        .transpose()?;
    if memory.is_some_and(|m| m < MIN_MEMORY) {
        bail!(hint(
            format!(
                "invalid --memory value {:?}: below the minimum of 6 MiB",
                o.memory.as_deref().unwrap_or("")
            ),
            "give at least 6M (a container cannot start with less)"
        ));
    }
    let swap = match o.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(Swap::Unlimited),
        Some(s) => {
            let v = parse_bytes("--memory-swap", s)?;
            match memory {
                None => bail!(hint(
                    "--memory-swap needs --memory",
                    "give both, e.g. -m 64M --memory-swap 128M (memory plus swap), or --memory-swap -1 for unlimited swap"
                )),
                Some(m) if v < m => bail!(hint(
                    format!("invalid --memory-swap value {s:?}: smaller than --memory"),
                    "--memory-swap is memory plus swap: give a value >= --memory (equal means no swap), or -1 for unlimited swap"
                )),
                _ => Some(Swap::Total(v)),
            }
        }
    };
    Ok((memory, swap))
}
// ANCHOR_END: memory

/// A whole number within `range` (a weight), or an error naming the flag and the range.
fn parse_in_range(
    flag: &str,
    s: &str,
    range: std::ops::RangeInclusive<u64>,
    default: &str,
) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => bail!(hint(
            format!("invalid {flag} value {s:?}"),
            format!(
                "give a whole number from {} to {} {default}",
                range.start(),
                range.end()
            )
        )),
    }
}

/// Docker's sizes: a number (decimals allowed) with an optional binary unit b, k, m, g, t (also kb,
/// kib, …, any case). `64M` = 67108864.
pub fn parse_bytes(flag: &str, s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => u64::MAX,
    };
    match num.parse::<f64>() {
        Ok(n) if mult != u64::MAX && n.is_finite() && n > 0.0 && n * (mult as f64) < 9.2e18 => {
            Ok((n * mult as f64) as u64)
        }
        _ => bail!(hint(
            format!("invalid {flag} value {s:?}"),
            "give a size like 64M, 512k, 1.5g or 1073741824 (units b, k, m, g, t are binary: 1k = 1024)"
        )),
    }
}

// ANCHOR: cpus
/// `--cpus 0.5` → (quota, period) = (50000, 100000) µs: half of one CPU per 100 ms period.
pub fn parse_cpus(s: &str) -> Result<(u64, u64)> {
    let n = online_cpus().len().max(1);
    match s.trim().parse::<f64>() {
        Ok(c) if c.is_finite() && c >= 0.01 && c <= n as f64 => {
            Ok((cpus_to_quota(c), CPU_PERIOD_US))
        }
        _ => bail!(hint(
            format!("invalid --cpus value {s:?}"),
            format!("give a number of CPUs from 0.01 to {n} (this host has {n}), e.g. --cpus 0.5")
        )),
    }
}

pub fn cpus_to_quota(cpus: f64) -> u64 {
    (cpus * CPU_PERIOD_US as f64).round() as u64
}

/// cgroup v2 has `cpu.weight` (1..10000, default 100) instead of v1's `cpu.shares` (2..262144,
/// default 1024). runc and crun map one range linearly onto the other:
/// 1 + (shares - 2) * 9999 / 262142 — so 2 → 1, 262144 → 10000, and the default 1024 → 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// `--blkio-weight` (10..1000) onto v2's io.weight (1..10000), as runc does:
/// 1 + (w - 10) * 9999 / 990.
pub fn blkio_to_io_weight(w: u64) -> u64 {
    1 + (w.clamp(10, 1000) - 10) * 9999 / 990
}
// ANCHOR_END: cpus

/// The CPUs the kernel has online (/sys/devices/system/cpu/online, e.g. "0-3").
pub fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| cpu_list(s.trim()))
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            (0..n).collect()
        })
}

/// "0-2,5" → [0, 1, 2, 5]; None if malformed.
fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                v.extend(a..=b);
            }
            None => v.push(part.parse().ok()?),
        }
    }
    Some(v)
}

/// `--cpuset-cpus`: a list the kernel accepts, naming only CPUs that are online.
pub fn parse_cpuset(s: &str, online: &[u32]) -> Result<String> {
    let list = cpu_list(s.trim()).filter(|l| !l.is_empty());
    let show = |o: &[u32]| {
        o.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match list {
        None => bail!(hint(
            format!("invalid --cpuset-cpus value {s:?}"),
            "give a list of CPU numbers and ranges, e.g. 0 or 0-1 or 0,2"
        )),
        Some(l) => {
            if let Some(bad) = l.iter().find(|c| !online.contains(c)) {
                bail!(hint(
                    format!("invalid --cpuset-cpus value {s:?}: CPU {bad} is not online"),
                    format!("use CPUs from {}", show(online))
                ));
            }
            Ok(s.trim().to_string())
        }
    }
}

/// `--cgroup-parent`: a cgroup path without `..` or empty components.
pub fn check_parent(p: &str) -> Result<()> {
    let ok = !p.trim_matches('/').is_empty()
        && p.trim_matches('/')
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if !ok {
        bail!(hint(
            format!("invalid --cgroup-parent {p:?}"),
            "give a cgroup path like /ci/jobs (from the hierarchy's root) or jobs (beneath minictr's own cgroup), without .."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("-m", "64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("-m", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("-m", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("-m", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("-m", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("-m", "1048576").unwrap(), 1 << 20);
        for bad in ["12Q", "", "-1", "M", "1.2.3m", "0", "99999999t"] {
            let e = parse_bytes("--memory", bad).unwrap_err().to_string();
            assert!(e.contains("64M"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpus_to_quota_and_period() {
        assert_eq!(cpus_to_quota(0.5), 50_000);
        assert_eq!(cpus_to_quota(0.2), 20_000);
        assert_eq!(cpus_to_quota(1.0), 100_000);
        assert_eq!(parse_cpus("0.5").unwrap(), (50_000, 100_000));
        for bad in ["-1", "0", "abc", "NaN", "inf", "100000"] {
            let e = parse_cpus(bad).unwrap_err().to_string();
            assert!(e.contains("from 0.01 to"), "{bad}: {e}");
        }
    }

    #[test]
    fn shares_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn cpusets() {
        let online = [0, 1, 2, 3];
        assert_eq!(parse_cpuset("0-1,3", &online).unwrap(), "0-1,3");
        assert!(parse_cpuset("4", &online)
            .unwrap_err()
            .to_string()
            .contains("not online"));
        for bad in ["", "a", "1-", "3-1", "0,,1"] {
            assert!(parse_cpuset(bad, &online).is_err(), "{bad}");
        }
    }

    fn opts() -> CgroupsArgs {
        CgroupsArgs::default()
    }

    #[test]
    fn limits_from_flags() {
        let mut o = opts();
        o.memory = Some("64M".into());
        o.pids_limit = Some("32".into());
        let l = Limits::parse(&o).unwrap();
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.pids, Some(Some(32)));
        assert_eq!(l.flags(), ["--memory", "--pids-limit"]);
        o.pids_limit = Some("-1".into());
        assert_eq!(Limits::parse(&o).unwrap().pids, Some(None));
        o.pids_limit = Some("-5".into());
        assert!(Limits::parse(&o).is_err());
        assert!(Limits::parse(&opts()).unwrap().is_empty());
    }

    #[test]
    fn swap_rules() {
        let mut o = opts();
        o.memory_swap = Some("128M".into());
        assert!(Limits::parse(&o)
            .unwrap_err()
            .to_string()
            .contains("needs --memory"));
        o.memory = Some("64M".into());
        assert_eq!(
            Limits::parse(&o).unwrap().memory_swap,
            Some(Swap::Total(128 << 20))
        );
        o.memory_swap = Some("32M".into());
        assert!(Limits::parse(&o).is_err());
        o.memory_swap = Some("-1".into());
        assert_eq!(
            Limits::parse(&o).unwrap().memory_swap,
            Some(Swap::Unlimited)
        );
        o.memory = Some("1M".into());
        assert!(Limits::parse(&o).unwrap_err().to_string().contains("6 MiB"));
    }

    #[test]
    fn parents() {
        assert!(check_parent("/ci/jobs").is_ok());
        assert!(check_parent("jobs").is_ok());
        for bad in ["/", "", "a/../b", "a//b", "/./x"] {
            assert!(check_parent(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::{clear, input};
    use proptest::prelude::*;

    const NUMBERS: &[&str] = &[
        "0",
        "1",
        "6",
        "64",
        "1.5",
        "0.5",
        "-1",
        "-",
        "+",
        ".",
        ",",
        " ",
        "k",
        "m",
        "M",
        "g",
        "b",
        "e",
        "18446744073709551615",
        "99999999999999999999",
        "262144",
        "1000",
        "/",
        "..",
        "0-1",
    ];

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_size_and_cpu_value_is_parsed_or_clearly_refused(s in input(NUMBERS)) {
            clear(&parse_bytes("--memory", &s))?;
            clear(&parse_cpus(&s))?;
            clear(&parse_cpuset(&s, &[0, 1, 2, 3]))?;
            clear(&check_parent(&s))?;
        }

        #[test]
        fn any_set_of_limit_flags_is_parsed_or_clearly_refused(
            v in proptest::collection::vec(proptest::option::of(input(NUMBERS)), 7)
        ) {
            let o = CgroupsArgs {
                memory: v[0].clone(),
                memory_swap: v[1].clone(),
                cpus: v[2].clone(),
                cpu_shares: v[3].clone(),
                pids_limit: v[4].clone(),
                cpuset_cpus: v[5].clone(),
                blkio_weight: v[6].clone(),
                ..CgroupsArgs::default()
            };
            clear(&Limits::parse(&o))?;
        }
    }
}
