//! Capabilities (chapter 7): root's power cut into ~41 pieces. The container keeps Docker's 14; the
//! names, the set arithmetic of `--cap-add`/`--cap-drop`, and the raw `prctl`/`capset` calls.

use anyhow::{bail, Context, Result};

/// Every capability the kernel knows, by number (`include/uapi/linux/capability.h`).
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

// ANCHOR: default_caps
/// Docker's default 14: enough to act as root on the container's own files and processes, nothing
/// that reaches the kernel or the host (no SYS_ADMIN, SYS_PTRACE, SYS_MODULE, NET_ADMIN, …).
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];
// ANCHOR_END: default_caps

/// A set of capabilities as the kernel stores it: bit N is capability N (`CapBnd` in
/// /proc/self/status prints exactly this number in hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    pub fn all() -> CapSet {
        CapSet((1u64 << NAMES.len()) - 1)
    }

    pub fn docker_default() -> CapSet {
        let mut s = CapSet(0);
        for n in DOCKER_DEFAULT {
            if let Some(i) = index(n) {
                s.0 |= 1 << i;
            }
        }
        s
    }

    pub fn has(&self, cap: usize) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    pub fn has_name(&self, name: &str) -> bool {
        index(name).is_some_and(|i| self.has(i))
    }

    /// `CAP_CHOWN,CAP_KILL`-style list, for `--explain`.
    pub fn names(&self) -> String {
        let v: Vec<String> = (0..NAMES.len())
            .filter(|i| self.has(*i))
            .map(|i| format!("CAP_{}", NAMES[i]))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(",")
        }
    }
}

/// The number of a capability name: `SYS_ADMIN`, `CAP_SYS_ADMIN`, `cap_sys_admin` all give 21.
pub fn index(name: &str) -> Option<usize> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    NAMES.iter().position(|n| *n == bare)
}

// ANCHOR: cap_math
/// The set the container gets: Docker's default, then every `--cap-drop` removed, then every
/// `--cap-add` added (Docker applies them in that order, so `--cap-drop ALL --cap-add CHOWN` keeps
/// exactly CHOWN). Unknown names are refused here, before anything is created.
pub fn configured(add: &[String], drop: &[String]) -> Result<CapSet> {
    let parse = |name: &str, flag: &str| -> Result<CapSet> {
        if name.trim().eq_ignore_ascii_case("ALL") {
            return Ok(CapSet::all());
        }
        match index(name) {
            Some(i) => Ok(CapSet(1 << i)),
            None => bail!(crate::error::hint(
                format!("unknown capability {name:?} in --{flag}"),
                "use a name from capabilities(7), with or without CAP_ (e.g. --cap-add NET_ADMIN), or ALL"
            )),
        }
    };
    let mut set = CapSet::docker_default();
    for d in drop {
        set.0 &= !parse(d, "cap-drop")?.0;
    }
    for a in add {
        set.0 |= parse(a, "cap-add")?.0;
    }
    Ok(set)
}
// ANCHOR_END: cap_math

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capget(2): (effective, permitted, inheritable) of this process.
pub fn current() -> Result<(CapSet, CapSet, CapSet)> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData structs (version 3 layout) into `data`, which is large enough.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context("capget failed");
    }
    let join = |f: fn(&CapData) -> u32| CapSet(f(&data[0]) as u64 | (f(&data[1]) as u64) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

// ANCHOR: drop_bounding
/// Remove every capability not in `keep` from the bounding set: no later execve (not even of a
/// setuid-root or file-capability binary) can get them back. Needs CAP_SETPCAP, so this runs while
/// the process is still root with every capability.
pub fn drop_bounding(keep: CapSet) -> Result<()> {
    // EXERCISE(ch07, "drop the bounding set", hint = "prctl(PR_CAPBSET_DROP, cap) for every cap not kept; EINVAL = past the last cap this kernel knows")
    for cap in (0..64usize).filter(|c| !keep.has(*c)) {
        // SAFETY: prctl with plain integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
            return Err(err)
                .with_context(|| format!("prctl(PR_CAPBSET_DROP, {}) failed", cap_name(cap)));
        }
    }
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: drop_bounding

// ANCHOR: set_caps
/// Set permitted and effective to `keep` ∩ what the process still has (a non-root user has nothing
/// left after setuid, and that is right), inheritable to empty, and clear the ambient set: the
/// command starts with exactly these and can pass none of them on through exec except as root.
pub fn set_process_caps(keep: CapSet) -> Result<CapSet> {
    // EXERCISE(ch07, "set the capability sets", hint = "capset: permitted = effective = keep & current permitted, inheritable 0; then PR_CAP_AMBIENT_CLEAR_ALL")
    let (_, permitted, _) = current()?;
    let want = CapSet(keep.0 & permitted.0);
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |s: CapSet, hi: bool| if hi { (s.0 >> 32) as u32 } else { s.0 as u32 };
    let data = [false, true].map(|hi| CapData {
        effective: half(want, hi),
        permitted: half(want, hi),
        inheritable: 0,
    });
    // SAFETY: capset reads the header and two CapData structs, both valid for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context("capset failed");
    }
    // SAFETY: prctl with plain integer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error())
            .context("prctl(PR_CAP_AMBIENT_CLEAR_ALL) failed");
    }
    Ok(want)
    // EXERCISE_END
}
// ANCHOR_END: set_caps

fn cap_name(cap: usize) -> String {
    NAMES
        .get(cap)
        .map(|n| format!("CAP_{n}"))
        .unwrap_or_else(|| format!("capability {cap}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_is_a80425fb() {
        assert_eq!(CapSet::docker_default().0, 0xa80425fb);
        assert_eq!(
            format!("{:016x}", CapSet::docker_default().0),
            "00000000a80425fb"
        );
        assert!(!CapSet::docker_default().has_name("SYS_ADMIN"));
    }

    #[test]
    fn names_with_or_without_cap_any_case() {
        assert_eq!(index("SYS_ADMIN"), Some(21));
        assert_eq!(index("cap_sys_admin"), Some(21));
        assert_eq!(index("Cap_Net_Admin"), Some(12));
        assert_eq!(index("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(index("SYS_ADMINX"), None);
        assert_eq!(index(""), None);
    }

    #[test]
    fn add_and_drop() {
        let s = |a: &[&str], d: &[&str]| {
            configured(
                &a.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                &d.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(s(&[], &[]).unwrap(), CapSet::docker_default());
        let admin = s(&["sys_admin"], &[]).unwrap();
        assert_eq!(admin.0, 0xa80425fb | 1 << 21);
        assert_eq!(s(&[], &["ALL"]).unwrap().0, 0);
        assert_eq!(s(&["CHOWN"], &["all"]).unwrap().0, 1);
        assert_eq!(
            s(&[], &["CAP_NET_RAW", "mknod"]).unwrap().0,
            0xa80425fb & !(1 << 13) & !(1 << 27)
        );
        assert_eq!(s(&["ALL"], &[]).unwrap(), CapSet::all());
        let e = s(&["NOPE"], &[]).unwrap_err();
        assert!(format!("{e:#}").contains("unknown capability \"NOPE\" in --cap-add"));
        assert!(s(&[], &["CAP_"]).is_err());
    }

    #[test]
    fn names_render() {
        assert_eq!(CapSet(1 | 1 << 21).names(), "CAP_CHOWN,CAP_SYS_ADMIN");
        assert_eq!(CapSet(0).names(), "none");
    }
}
