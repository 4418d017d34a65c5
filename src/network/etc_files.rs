//! /etc/hosts, /etc/hostname and /etc/resolv.conf for the container.
//!
//! They are generated into the container's runtime directory (`/run/minictr/<id>/`) and bind-mounted
//! over the image's files by the child, before pivot_root: the image itself is never written.

use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;

/// The three files, as (file name in the runtime directory, path inside the container).
pub const FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
    ("resolv.conf", "/etc/resolv.conf"),
];

// ANCHOR: hosts
/// The names a container answers to on the bridge: its hostname, its `--name` and its id (each once),
/// as on a Docker user-defined network.
pub fn names(hostname: &str, name: Option<&str>, id: &str) -> String {
    let mut v: Vec<&str> = vec![hostname];
    for n in name.into_iter().chain([id]) {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v.join(" ")
}

/// The container's /etc/hosts: localhost, itself (by the `names` of [`names`]) and its `peers` —
/// the other running containers on the same bridge — by theirs.
pub fn hosts(own: Option<Ipv4Addr>, names: &str, peers: &[(Ipv4Addr, String)]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match own {
        Some(a) => s.push_str(&format!("{a}\t{names}\n")),
        // No address of its own (--network none|host): the names resolve to the loopback.
        None => s.push_str(&format!("127.0.1.1\t{names}\n")),
    }
    for (addr, name) in peers {
        s.push_str(&format!("{addr}\t{name}\n"));
    }
    s
}
// ANCHOR_END: hosts

// ANCHOR: resolv
/// The container's /etc/resolv.conf from the host's. A resolver on a loopback address (systemd-resolved's
/// 127.0.0.53, a local dnsmasq) is the *host's* loopback and unreachable from the container's own
/// network namespace: it is left out with a note, and `fallback` (systemd-resolved's list of the real
/// upstream servers, if any) is used instead. With the host's network (`keep_loopback`) nothing changes.
pub fn resolv_conf(host: &str, fallback: Option<&str>, keep_loopback: bool) -> String {
    let mut out = String::new();
    let mut dropped = Vec::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let server = words.next().unwrap_or("");
            let loopback = server
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if loopback && !keep_loopback {
                dropped.push(server.to_string());
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !dropped.is_empty() {
        let mut note = format!(
            "# minictr: left out {} (a resolver on the host's loopback is unreachable from the container)\n",
            dropped.join(", ")
        );
        if servers == 0 {
            if let Some(fb) = fallback {
                let upstream: Vec<&str> = fb
                    .lines()
                    .filter(|l| l.split_whitespace().next() == Some("nameserver"))
                    .filter(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                            .is_some_and(|a| !a.is_loopback())
                    })
                    .collect();
                if !upstream.is_empty() {
                    note.push_str("# minictr: using the upstream servers of /run/systemd/resolve/resolv.conf\n");
                    for l in upstream {
                        note.push_str(l);
                        note.push('\n');
                    }
                }
            }
        }
        out = note + &out;
    }
    out
}
// ANCHOR_END: resolv

/// Read the host's resolver configuration (missing files read as empty).
pub fn host_resolv_conf(keep_loopback: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let fallback = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    resolv_conf(&host, fallback.as_deref(), keep_loopback)
}

/// Write one of [`FILES`] (`which`: its name, e.g. "hosts") into the container's runtime
/// directory, owned by `owner` (the host uid/gid of the container's root).
pub fn write(rundir: &Path, which: &str, text: &str, owner: (u32, u32)) -> Result<()> {
    let target = FILES
        .iter()
        .find(|(name, _)| *name == which)
        .map_or(which, |(_, target)| *target);
    let p = rundir.join(which);
    crate::explain!(
        super::CHAPTER,
        "write({}) — the container's {target}, bind-mounted over the image's",
        p.display()
    );
    std::fs::write(&p, text).with_context(|| format!("failed to write {}", p.display()))?;
    std::os::unix::fs::chown(&p, Some(owner.0), Some(owner.1))
        .with_context(|| format!("failed to chown {} to {}:{}", p.display(), owner.0, owner.1))
}

/// Rewrite a running container's /etc/hosts in place (write + truncate to the new length on the
/// same inode: the container sees it through a bind mount of that inode, a rename would not reach
/// it). Not opened with O_TRUNC: that frees the file's block, and on a file system mounted with
/// `discard` every freed block is a synchronous discard — under the address table's lock.
pub fn rewrite_in_place(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.set_len(text.len() as u64))
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_container_and_its_peers() {
        let h = hosts(
            Some(Ipv4Addr::new(10, 213, 0, 2)),
            &names("web", None, "0123456789ab"),
            &[(Ipv4Addr::new(10, 213, 0, 3), "db".into())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.213.0.2\tweb 0123456789ab\n"));
        assert!(h.contains("10.213.0.3\tdb\n"));
        let h = hosts(None, &names("abc", None, "abc"), &[]);
        assert!(h.contains("127.0.1.1\tabc\n"));
        assert_eq!(names("h1", Some("web"), "0123"), "h1 web 0123");
        assert_eq!(names("web", Some("web"), "0123"), "web 0123");
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers_with_a_note() {
        let host =
            "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n";
        let fb = "nameserver 192.0.2.53\nnameserver 127.0.0.1\n";
        let r = resolv_conf(host, Some(fb), false);
        assert!(!r.contains("nameserver 127.0.0.53"), "{r}");
        assert!(r.contains("# minictr: left out 127.0.0.53"), "{r}");
        assert!(r.contains("nameserver 192.0.2.53\n"), "{r}");
        assert!(!r.contains("nameserver 127.0.0.1"), "{r}");
        assert!(r.contains("search example.org\n"));
        // No fallback: only the note.
        let r = resolv_conf(host, None, false);
        assert!(!r.lines().any(|l| l.starts_with("nameserver")), "{r}");
        // Real servers pass through unchanged; the host network keeps loopback servers.
        let host2 = "nameserver 198.51.100.1\nnameserver ::1\n";
        let r = resolv_conf(host2, Some(fb), false);
        assert!(
            r.contains("nameserver 198.51.100.1\n")
                && !r.contains("::1\n")
                && !r.contains("192.0.2.53")
        );
        assert_eq!(resolv_conf(host, None, true), host);
    }
}
