//! The cgroup's counters in one shape for v1 and v2 (`--stats` at exit; a later `minictr stats ID`
//! reads the same). A field the kernel does not offer says why instead of showing 0.

/// Each counter, or why it is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub version: &'static str,
    pub cpu_user_us: Result<u64, String>,
    pub cpu_system_us: Result<u64, String>,
    pub memory_peak: Result<u64, String>,
    pub pids_peak: Result<u64, String>,
    pub io_read: Result<u64, String>,
    pub io_write: Result<u64, String>,
    pub oom_kills: Result<u64, String>,
    pub throttled_us: Result<u64, String>,
    pub throttled_periods: Result<u64, String>,
}

/// `64.0 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn secs(us: u64) -> String {
    format!("{:.3} s", us as f64 / 1e6)
}

// ANCHOR: report
impl Stats {
    /// The `--stats` report: one `name  value` line per field, the same names on v1 and v2.
    pub fn report(&self) -> String {
        fn line<T>(
            out: &mut String,
            name: &str,
            v: &Result<T, String>,
            show: impl Fn(&T) -> String,
        ) {
            let val = match v {
                Ok(x) => show(x),
                Err(why) => format!("unavailable ({why})"),
            };
            out.push_str(&format!("  {name:<16} {val}\n"));
        }
        let mut s = format!("minictr: stats (cgroup {}):\n", self.version);
        line(&mut s, "cpu user", &self.cpu_user_us, |v| secs(*v));
        line(&mut s, "cpu system", &self.cpu_system_us, |v| secs(*v));
        line(&mut s, "memory peak", &self.memory_peak, |v| {
            human_bytes(*v)
        });
        line(&mut s, "pids peak", &self.pids_peak, |v| v.to_string());
        line(&mut s, "io read", &self.io_read, |v| human_bytes(*v));
        line(&mut s, "io written", &self.io_write, |v| human_bytes(*v));
        line(&mut s, "oom kills", &self.oom_kills, |v| v.to_string());
        let thr = match (&self.throttled_us, &self.throttled_periods) {
            (Ok(t), Ok(n)) => Ok(format!("{} ({n} periods)", secs(*t))),
            (Ok(t), Err(_)) => Ok(secs(*t)),
            (Err(e), _) => Err(e.clone()),
        };
        line(&mut s, "throttled", &thr, |v| v.clone());
        s
    }
}
// ANCHOR_END: report

/// `key N` lines (cpu.stat, memory.events, memory.oom_control): the value of `key`.
pub fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// v1 blkio: `8:0 Read 4096` lines; the sum over devices for `Read` or `Write`.
pub fn sum_blkio(text: &str, which: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == which).then(|| f[2].parse::<u64>().ok())?
        })
        .sum()
}

/// v2 io.stat: `8:0 rbytes=4096 wbytes=0 …` lines; the sum over devices of `key`.
pub fn sum_io_stat(text: &str, key: &str) -> u64 {
    text.lines()
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.parse::<u64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would() {
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn counter_files() {
        assert_eq!(
            key_value("usage_usec 10\nuser_usec 7\n", "user_usec"),
            Some(7)
        );
        assert_eq!(key_value("usage_usec 10\n", "nope"), None);
        let blk = "8:0 Read 4096\n8:0 Write 512\n8:16 Read 1\nTotal 4609\n";
        assert_eq!(sum_blkio(blk, "Read"), 4097);
        assert_eq!(sum_blkio(blk, "Write"), 512);
        let io = "8:0 rbytes=100 wbytes=5 rios=1 wios=1\n253:0 rbytes=1 wbytes=0\n";
        assert_eq!(sum_io_stat(io, "rbytes"), 101);
        assert_eq!(sum_io_stat(io, "wbytes"), 5);
    }

    #[test]
    fn unavailable_fields_say_why() {
        let s = Stats {
            version: "v1",
            cpu_user_us: Ok(1_500_000),
            cpu_system_us: Ok(0),
            memory_peak: Ok(1 << 20),
            pids_peak: Err("no pids.peak".into()),
            io_read: Ok(0),
            io_write: Ok(0),
            oom_kills: Ok(0),
            throttled_us: Ok(0),
            throttled_periods: Ok(0),
        };
        let r = s.report();
        assert!(r.contains("cpu user         1.500 s"), "{r}");
        assert!(
            r.contains("pids peak        unavailable (no pids.peak)"),
            "{r}"
        );
        assert!(r.contains("throttled        0.000 s (0 periods)"), "{r}");
    }
}
