//! Chapter 6 — networking, proven on real containers. Every test runs inside network namespaces it
//! creates itself: a "host" namespace (where minictr runs and makes its bridge, NAT rules and
//! veths) and, for NAT, an "outside" namespace linked to it by a veth with TEST-NET-1 addresses
//! (192.0.2.0/24). No packet leaves the machine and the machine's own network is never touched.
//! A Drop guard deletes the namespaces even when an assert fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// minictr's runtime directory for these tests (allocations live in run_dir()/network): beside the
/// suite's own (MINICTR_RUN_DIR), so that test runs of several checkouts on one machine stay apart.
fn run_dir() -> String {
    format!("{}-ch06-tests", common::run_dir().display())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn capture(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace owned by the test; `ip netns del` on drop (after killing what runs in it).
struct Netns {
    name: String,
}

/// How many test "hosts" exist right now: the last one to go removes run_dir() (no state left behind).
static HOSTS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl Netns {
    fn new(tag: &str) -> Netns {
        *HOSTS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("mct-{tag}-{}-{:x}", std::process::id(), n);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `minictr ARGS…` started inside this namespace (`nsenter --net=/run/netns/NAME`: setns
    /// between fork and exec; unlike `ip netns exec` nothing is remounted) with an empty PATH:
    /// nothing on minictr's path may run another program (no `nft`, no `ip`).
    fn minictr_cmd(&self, args: &[&str]) -> Command {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        let mut c = Command::new(common::bin());
        c.args(args)
            .env("MINICTR_RUN_DIR", run_dir())
            .env("PATH", "/nonexistent")
            .env_remove("MINICTR_NETWORK") // the default: bridge, as root
            .stdin(Stdio::null());
        // SAFETY: setns is async-signal-safe; `ns` is kept alive by the closure until exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// `minictr run OPTS ROOTFS CMD…` inside this namespace.
    fn minictr(&self, opts: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.minictr_cmd(&["run"]);
        c.args(opts).arg(common::rootfs()).args(cmd);
        c
    }

    fn run(&self, opts: &[&str], cmd: &[&str]) -> Output {
        self.minictr(opts, cmd).output().expect("start minictr")
    }

    fn exec(&self, args: &[&str]) -> String {
        capture(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// Run `f` on a fresh thread that has entered this namespace (setns is per thread).
    fn on_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Host ends of veth pairs (`mc…`) in this namespace.
    fn mc_links(&self) -> Vec<String> {
        self.exec(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap().to_string())
            })
            .filter(|n| n.starts_with("mc"))
            .collect()
    }

    fn publish_elements(&self) -> String {
        self.exec(&["nft", "list", "table", "ip", "minictr"])
            .lines()
            .filter(|l| l.contains("elements"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Nothing of the test's containers is left: no veth, no allocation, no published port.
    fn assert_clean(&self, hostnames: &[&str]) {
        // The host end is deleted by a helper process while minictr exits: allow it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.mc_links().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            self.mc_links(),
            Vec::<String>::new(),
            "veth host ends left in {}",
            self.name
        );
        let alloc = std::fs::read_to_string(format!("{}/network/allocations", run_dir()))
            .unwrap_or_default();
        for h in hostnames {
            assert!(
                !alloc.contains(&format!("\t{h}\t")),
                "address of {h} still allocated:\n{alloc}"
            );
        }
        assert_eq!(
            self.publish_elements(),
            "",
            "published ports left in {}",
            self.name
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in
            capture(Command::new("ip").args(["netns", "pids", &self.name])).split_whitespace()
        {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let mut hosts = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        *hosts -= 1;
        if *hosts == 0 {
            // Only the address table is left once every namespace (and its containers) is gone.
            let _ = std::fs::remove_dir_all(run_dir());
        }
    }
}

fn ok(out: &Output) -> String {
    common::assert_ok(out);
    common::stdout(out)
}

/// The IPv4 address in `ip -4 -o addr show eth0` output.
fn eth0_addr(text: &str) -> Ipv4Addr {
    let w: Vec<&str> = text.split_whitespace().collect();
    let i = w
        .iter()
        .position(|x| *x == "inet")
        .unwrap_or_else(|| panic!("no inet in {text:?}"));
    w[i + 1].split('/').next().unwrap().parse().unwrap()
}

/// Read the first line a container prints (with a generous deadline); the rest of its output keeps
/// being read (so the container never writes into a closed pipe) and arrives on the returned channel.
fn first_line(child: &mut Child) -> (String, std::sync::mpsc::Receiver<String>) {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("container printed nothing within 30 s");
    (first, rx)
}

fn wait_bounded(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("minictr did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_lo_and_eth0_inside_with_an_address_and_the_bridge_answers() {
    if !common::need_root("only_lo_and_eth0_inside_with_an_address_and_the_bridge_answers") {
        return;
    }
    let host = Netns::new("eth0");
    let name = common::unique("eth0");
    let out = host.run(
        &["--hostname", &name],
        &["sh", "-c", "ls /sys/class/net; ip -4 -o addr show eth0; cat /sys/class/net/eth0/mtu; ip route; ping -c1 -W5 10.213.0.1 >/dev/null && echo bridge-answers; cat /etc/hostname; grep -c \"$(hostname)\" /etc/hosts; echo '10.9.9.9 extra' >> /etc/hosts && echo root-may-edit-hosts"],
    );
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..2], &["eth0", "lo"], "{text}");
    let addr = eth0_addr(lines[2]);
    assert!(lines[2].contains("/16"), "{text}");
    assert_eq!(addr.octets()[..2], [10, 213], "{text}");
    assert_ne!(addr, Ipv4Addr::new(10, 213, 0, 1));
    assert_eq!(
        lines[3], "1500",
        "no default route in the test host: MTU 1500"
    );
    assert!(text.contains("default via 10.213.0.1 dev eth0"), "{text}");
    assert!(text.contains("bridge-answers"), "{text}");
    assert!(
        text.contains(&format!("{name}\n1\n")),
        "/etc/hostname and /etc/hosts name the container: {text}"
    );
    // The image was not written: its /etc/hostname still says minictr.
    assert_eq!(
        std::fs::read_to_string(common::rootfs().join("etc/hostname")).unwrap(),
        "minictr\n"
    );
    // The table was made over netlink (minictr ran with an empty PATH); `nft`, a test tool only,
    // shows its rules when it is installed.
    if Path::new("/usr/sbin/nft").exists() || Path::new("/sbin/nft").exists() {
        let table = host.exec(&["nft", "list", "table", "ip", "minictr"]);
        for want in [
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip saddr 10.213.0.0/16 oifname != \"minictr0\" masquerade",
            "oifname \"minictr0\" ip saddr 127.0.0.0/8 masquerade",
            "fib daddr type local jump publish",
            "dnat ip to meta l4proto . th dport map @publish_any",
        ] {
            assert!(table.contains(want), "{want:?} missing in\n{table}");
        }
    }
    // The bridge has its address; the host end is gone.
    assert!(host
        .exec(&["ip", "-4", "-o", "addr", "show", "minictr0"])
        .contains("10.213.0.1/16"));
    host.assert_clean(&[&name]);
}

#[test]
fn two_containers_reach_each_other_by_address_and_by_name() {
    if !common::need_root("two_containers_reach_each_other_by_address_and_by_name") {
        return;
    }
    let host = Netns::new("pair");
    let a = common::unique("a");
    let b = common::unique("b");
    // A prints its address, waits until B appears in its /etc/hosts (rewritten in place when B
    // starts) and pings B by name.
    let script_a = format!(
        "ip -4 -o addr show eth0; i=0; while ! grep -q {b} /etc/hosts; do sleep 0.1; i=$((i+1)); [ $i -gt 300 ] && exit 3; done; cat /etc/hosts; ping -c1 -W5 {b} && echo a-reached-b"
    );
    let mut ca = host
        .minictr(&["--hostname", &a], &["sh", "-c", &script_a])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, rest_a) = first_line(&mut ca);
    let addr_a = eth0_addr(&first);
    let script_b = format!(
        "ping -c1 -W5 {addr_a} >/dev/null && echo b-reached-a-by-address; ping -c1 -W5 {a} >/dev/null && echo b-reached-a-by-name; sleep 3"
    );
    let out_b = host.run(&["--hostname", &b], &["sh", "-c", &script_b]);
    let text_b = ok(&out_b);
    assert!(text_b.contains("b-reached-a-by-address"), "{text_b}");
    assert!(text_b.contains("b-reached-a-by-name"), "{text_b}");
    let status = wait_bounded(&mut ca, 60);
    let rest = rest_a
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    assert!(status.success(), "container A failed: {status:?}: {rest}");
    assert!(rest.contains("a-reached-b"), "{rest}");
    host.assert_clean(&[&a, &b]);
}

/// host 192.0.2.1 <-veth-> 192.0.2.2 outside: a second host on a link of the test's own (the
/// outside has no route to the containers' subnet).
fn link_outside(host: &Netns, outside: &Netns) {
    let (h, o) = (host.name.as_str(), outside.name.as_str());
    ip(&[
        "-n", h, "link", "add", "vout", "type", "veth", "peer", "name", "vin", "netns", o,
    ]);
    ip(&["-n", h, "addr", "add", "192.0.2.1/24", "dev", "vout"]);
    ip(&["-n", h, "link", "set", "vout", "up"]);
    ip(&["-n", o, "addr", "add", "192.0.2.2/24", "dev", "vin"]);
    ip(&["-n", o, "link", "set", "vin", "up"]);
}

#[test]
fn nat_masquerades_the_container_behind_the_hosts_address() {
    if !common::need_root("nat_masquerades_the_container_behind_the_hosts_address") {
        return;
    }
    let host = Netns::new("nat");
    let outside = Netns::new("out");
    // host 192.0.2.1 <-veth-> 192.0.2.2 outside; the outside has no route to 10.213.0.0/16.
    link_outside(&host, &outside);
    let listener = outside.on_thread(|| {
        let l = TcpListener::bind("192.0.2.2:9000").expect("bind in the outside namespace");
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut msg = String::new();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let _ = s.read_to_string(&mut msg);
                    return Some((peer.ip(), msg));
                }
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return None,
            }
        }
    });
    let name = common::unique("nat");
    let out = host.run(
        &["--hostname", &name],
        &[
            "sh",
            "-c",
            "echo hello-from-$(hostname) | nc -w 10 192.0.2.2 9000 && echo sent",
        ],
    );
    let text = ok(&out);
    assert!(text.contains("sent"), "{text}");
    let (peer, msg) = listener
        .join()
        .unwrap()
        .expect("the outside host got no connection");
    assert_eq!(
        peer.to_string(),
        "192.0.2.1",
        "the outside host must see the test host's address (masquerade)"
    );
    assert_eq!(msg.trim(), format!("hello-from-{name}"));
    host.assert_clean(&[&name]);
}

#[test]
fn published_port_answers_on_localhost_and_from_another_host() {
    if !common::need_root("published_port_answers_on_localhost_and_from_another_host") {
        return;
    }
    let host = Netns::new("pub");
    let outside = Netns::new("pubout");
    link_outside(&host, &outside);
    let name = common::unique("pub");
    let mut c = host
        .minictr(&["--hostname", &name, "-p", "8080:80"], &["sh", "-c", "trap 'kill $!; exit 143' TERM; nc -ll -p 80 -e echo hello-from-the-container & wait"])
        .spawn()
        .unwrap();
    let fetch = |addr: &'static str| {
        move || {
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(mut s) =
                    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
                {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut got = String::new();
                    let _ = s.read_to_string(&mut got);
                    if !got.is_empty() {
                        return got;
                    }
                }
                if Instant::now() > end {
                    return String::new();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let local = host.on_thread(fetch("127.0.0.1:8080")).join().unwrap();
    let remote = outside.on_thread(fetch("192.0.2.1:8080")).join().unwrap();
    assert!(
        host.publish_elements().contains(": 10.213."),
        "the publish map holds the port while it runs"
    );
    let _ = Command::new("kill").arg(c.id().to_string()).status(); // SIGTERM, forwarded to nc
    let status = wait_bounded(&mut c, 30);
    assert_eq!(
        local.trim(),
        "hello-from-the-container",
        "127.0.0.1:8080 in the test host"
    );
    assert_eq!(
        remote.trim(),
        "hello-from-the-container",
        "192.0.2.1:8080 from the outside host"
    );
    assert_eq!(
        status.code(),
        Some(143),
        "the container's shell got the forwarded SIGTERM"
    );
    host.assert_clean(&[&name]);
}

#[test]
fn fifty_containers_started_at_once_get_fifty_addresses() {
    if !common::need_root("fifty_containers_started_at_once_get_fifty_addresses") {
        return;
    }
    let host = Netns::new("fifty");
    let names: Vec<String> = (0..50).map(|i| common::unique(&format!("f{i}"))).collect();
    // Every container runs until all fifty have printed their address (the file `stop` in a shared
    // volume): on a slow machine the first would otherwise be gone, its address free again, before
    // the last one starts.
    let data = common::scratch("ch06-fifty");
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let vol = format!("{}:/x", data.display());
    let mut children: Vec<Child> = names
        .iter()
        .map(|n| {
            host.minictr(
                &["--hostname", n, "-v", &vol],
                &["sh", "-c", "ip -4 -o addr show eth0; i=0; while [ ! -e /x/stop ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut addrs = Vec::new();
    let mut rests = Vec::new();
    for c in &mut children {
        let (first, rest) = first_line(c);
        if first.is_empty() {
            let mut err = String::new();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("a container failed: {err}");
        }
        addrs.push(eth0_addr(&first));
        rests.push(rest);
    }
    std::fs::write(data.join("stop"), "").unwrap();
    for mut c in children {
        let status = wait_bounded(&mut c, 180);
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "a container failed: {err}");
    }
    let _ = std::fs::remove_dir_all(&data);
    let mut distinct = addrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 50, "addresses: {addrs:?}");
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    host.assert_clean(&refs);
}

#[test]
fn nothing_is_left_after_kill_9_of_the_container_or_of_minictr() {
    if !common::need_root("nothing_is_left_after_kill_9_of_the_container_or_of_minictr") {
        return;
    }
    let host = Netns::new("kill");
    // 1. kill -9 of the container's process: minictr sees 137 and tears down.
    let name = common::unique("k1");
    let mut c = host
        .minictr(
            &["--hostname", &name, "-p", "8081:80"],
            &["sh", "-c", "echo $$; echo up; exec sleep 60"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, _rest) = first_line(&mut c);
    assert_eq!(host.mc_links().len(), 1, "one veth while it runs");
    let minictr_pid = c.id();
    let kids = capture(Command::new("pgrep").args(["-P", &minictr_pid.to_string()]));
    let mut killed = false;
    for k in kids.split_whitespace() {
        // ip netns exec execs minictr in place, so minictr is c.id() and its child is the container.
        killed |= Command::new("kill")
            .args(["-9", k])
            .status()
            .unwrap()
            .success();
    }
    assert!(killed, "found the container's process");
    let status = wait_bounded(&mut c, 30);
    assert_eq!(status.code(), Some(137));
    host.assert_clean(&[&name]);

    // 2. kill -9 of minictr itself: the next minictr command cleans up.
    let name2 = common::unique("k2");
    let mut c2 = host
        .minictr(
            &["--hostname", &name2, "-p", "8082:80"],
            &["sh", "-c", "echo up; exec sleep 60"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, _rest2) = first_line(&mut c2);
    // (The first container's host end goes in a helper process: allow it its moment.)
    common::wait_until(
        5,
        "exactly one veth while the second container runs",
        || host.mc_links().len() == 1,
    );
    let _ = Command::new("kill")
        .args(["-9", &c2.id().to_string()])
        .status();
    let _ = c2.wait();
    let out = host.run(&["--network", "none"], &["true"]);
    ok(&out);
    host.assert_clean(&[&name2]);
}

#[test]
fn a_crash_at_any_network_step_is_undone_by_the_next_command() {
    if !common::need_root("a_crash_at_any_network_step_is_undone_by_the_next_command") {
        return;
    }
    let host = Netns::new("crash");
    for step in ["network-reserved", "network-attached", "running"] {
        let name = common::unique("crash");
        let out = host
            .minictr(&["--hostname", &name, "-p", "8083:80"], &["sleep", "60"])
            .env("MINICTR_CRASH_AT", step)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "minictr killed itself at {step}: {out:?}"
        );
        // The next command (any command) cleans up.
        ok(&host.run(&["--network", "none"], &["true"]));
        host.assert_clean(&[&name]);
    }
}

#[test]
fn bad_network_values_exit_125_before_anything_is_made() {
    if !common::need_root("bad_network_values_exit_125_before_anything_is_made") {
        return;
    }
    let host = Netns::new("bad");
    for opts in [
        &["--network", "bogus"][..],
        &["-p", "80"],
        &["-p", "8080:0"],
        &["-p", "8080:80/sctp"],
        &["-p", "1.2.3:8080:80"],
        &["--network", "none", "-p", "8080:80"],
        &["--network", "host", "-p", "8080:80"],
        &["--subnet", "10.213.0.1/16"],
        &["--subnet", "nonsense"],
        &["--no-net", "--network", "bridge"],
    ] {
        common::assert_refused(&host.run(opts, &["true"]), "", &opts);
    }
    assert!(
        !host.exec(&["ip", "link"]).contains("minictr0"),
        "nothing was created"
    );
}

/// A named container's kept layer, removed (`minictr rm -f`) when the test ends, also on a failure.
struct Named<'a>(&'a Netns, String);

impl Drop for Named<'_> {
    fn drop(&mut self) {
        let _ = self.0.minictr_cmd(&["rm", "-f", &self.1]).output();
    }
}

#[test]
fn containers_reach_each_other_by_name_and_forget_a_peer_that_exits() {
    if !common::need_root("containers_reach_each_other_by_name_and_forget_a_peer_that_exits") {
        return;
    }
    let host = Netns::new("names");
    let web = common::unique("web");
    let _web_layer = Named(&host, web.clone());
    let data = common::scratch("ch06-names");
    // Writable by the containers' root, whichever host uid it is mapped to.
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // "web" runs until the file `stop` appears in its volume; its hostname is not its name.
    let mut cweb = host
        .minictr(
            &[
                "--name",
                &web,
                "--hostname",
                "webhost",
                "-v",
                &format!("{}:/x", data.display()),
            ],
            &[
                "sh",
                "-c",
                "echo up; while [ ! -e /x/stop ]; do sleep 0.1; done",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, _rest) = first_line(&mut cweb);
    assert_eq!(first.trim(), "up");
    // The second container pings web by its --name, then waits until web is gone from its
    // /etc/hosts (rewritten in place when web exits).
    let script = format!(
        "ping -c1 -W2 {web} >/dev/null && echo reached-by-name; ping -c1 -W2 webhost >/dev/null && echo reached-by-hostname; touch /x/stop; i=0; while grep -q {web} /etc/hosts; do sleep 0.1; i=$((i+1)); [ $i -gt 300 ] && exit 3; done; echo forgotten; ping -c1 -W1 {web} >/dev/null 2>&1 || echo name-gone"
    );
    let out = host.run(
        &["-v", &format!("{}:/x", data.display())],
        &["sh", "-c", &script],
    );
    let text = ok(&out);
    assert!(text.contains("reached-by-name"), "{text}");
    assert!(text.contains("reached-by-hostname"), "{text}");
    assert!(
        text.contains("forgotten") && text.contains("name-gone"),
        "{text}"
    );
    assert!(wait_bounded(&mut cweb, 30).success());
    // A named container keeps its layer: remove it.
    ok(&host.minictr_cmd(&["rm", &web]).output().unwrap());

    // A peer whose minictr is killed (SIGKILL: no teardown) is forgotten by the next command.
    let web2 = common::unique("web2");
    let _web2_layer = Named(&host, web2.clone());
    let script = format!(
        "i=0; while ! grep -q {web2} /etc/hosts; do sleep 0.1; i=$((i+1)); [ $i -gt 300 ] && exit 3; done; echo seen; i=0; while grep -q {web2} /etc/hosts; do sleep 0.1; i=$((i+1)); [ $i -gt 300 ] && exit 4; done; echo forgotten"
    );
    let mut peer = host
        .minictr(&["--hostname", "peer"], &["sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = host
        .minictr(
            &["--name", &web2, "--hostname", "web2host"],
            &["sleep", "60"],
        )
        .spawn()
        .unwrap();
    let (seen, rest) = first_line(&mut peer);
    assert_eq!(seen.trim(), "seen");
    killed.kill().unwrap();
    let _ = killed.wait();
    ok(&host.minictr_cmd(&["ps"]).output().unwrap());
    assert!(wait_bounded(&mut peer, 60).success());
    let rest = rest.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(rest.contains("forgotten"), "{rest}");
    drop(_web2_layer);
    host.assert_clean(&["webhost", "web2host", "peer"]);
    let _ = std::fs::remove_dir_all(&data);
}

/// Every path under `dir` with its size and mtime (to see that a container wrote nothing there).
fn tree(dir: &Path) -> Vec<(std::path::PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), m.size(), m.mtime()));
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_root_works_with_every_network_mode_and_the_image_stays_unchanged() {
    if !common::need_root(
        "read_only_root_works_with_every_network_mode_and_the_image_stays_unchanged",
    ) {
        return;
    }
    let host = Netns::new("ro");
    let before = tree(&common::rootfs());
    for mode in ["bridge", "none", "host"] {
        let name = common::unique("ro");
        let out = host.run(
            &["--read-only", "--tmpfs", "/tmp", "--network", mode, "--hostname", &name],
            &["sh", "-c", "touch /tmp/x && echo tmp-writable; touch /etc/x 2>&1; touch /x 2>&1; cat /etc/hostname"],
        );
        let text = ok(&out);
        assert!(text.contains("tmp-writable"), "--network {mode}: {text}");
        assert!(
            text.contains("touch: /etc/x: Read-only file system")
                && text.contains("touch: /x: Read-only file system"),
            "--network {mode}: {text}"
        );
        if mode == "bridge" {
            assert!(
                text.contains(&name),
                "--network {mode}: /etc/hostname: {text}"
            );
        }
        host.assert_clean(&[&name]);
    }
    // Without the overlay stage there is no layer for the missing /etc/resolv.conf: a clear
    // error before anything is made, never a write into the image.
    let out = host.run(&["--read-only", "--no-overlay"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        common::stderr(&out).contains("has no /etc/resolv.conf"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(tree(&common::rootfs()), before, "the image was written");
}

#[test]
fn network_none_and_host() {
    if !common::need_root("network_none_and_host") {
        return;
    }
    let host = Netns::new("modes");
    let out = host.run(&["--network", "none"], &["ls", "/sys/class/net"]);
    assert_eq!(ok(&out), "lo\n");
    // host = the namespace minictr runs in: it sees the test host's lo (and nothing else).
    ip(&[
        "-n", &host.name, "link", "add", "dummy-t", "type", "veth", "peer", "name", "dummy-u",
    ]);
    let out = host.run(&["--network", "host"], &["ip", "-o", "link"]);
    assert!(ok(&out).contains("dummy-t"));
    let out = host.run(&["--no-net"], &["ip", "-o", "link"]);
    assert!(ok(&out).contains("dummy-t"));
    // No bridge was made for none/host.
    assert!(!host.exec(&["ip", "link"]).contains("minictr0"));
    // `minictr network rm` removes the bridge and the table.
    ok(&host.run(&[], &["true"]));
    assert!(host.exec(&["ip", "link"]).contains("minictr0"));
    let rm = host.minictr_cmd(&["network", "rm"]).output().unwrap();
    let text = ok(&rm);
    assert!(text.contains("minictr0"), "{text}");
    assert!(!host.exec(&["ip", "link"]).contains("minictr0"));
    assert!(!host.exec(&["nft", "list", "tables"]).contains("minictr"));
    let _ = std::io::stdout().flush();
}

#[test]
fn a_bridge_or_table_lost_behind_minictrs_back_is_made_again_by_the_next_start() {
    if !common::need_root(
        "a_bridge_or_table_lost_behind_minictrs_back_is_made_again_by_the_next_start",
    ) {
        return;
    }
    let host = Netns::new("repair");
    let probe =
        "ip -4 -o addr show eth0; ping -c1 -W5 10.213.0.1 >/dev/null && echo bridge-answers";
    ok(&host.run(&[], &["true"]));
    // Deleted by hand: the next start makes it again (a check of the bridge that trusted an
    // earlier answer would plug the veth into nothing).
    ip(&["-n", &host.name, "link", "del", "minictr0"]);
    let text = ok(&host.run(&[], &["sh", "-c", probe]));
    assert!(text.contains("bridge-answers"), "{text}");
    assert!(host
        .exec(&["ip", "-4", "-o", "addr", "show", "minictr0"])
        .contains("10.213.0.1/16"));
    // Set down by hand: up again.
    ip(&["-n", &host.name, "link", "set", "minictr0", "down"]);
    let text = ok(&host.run(&[], &["sh", "-c", probe]));
    assert!(text.contains("bridge-answers"), "{text}");
    if Path::new("/usr/sbin/nft").exists() || Path::new("/sbin/nft").exists() {
        host.exec(&["nft", "flush", "ruleset"]);
        ok(&host.run(&[], &["true"]));
        let table = host.exec(&["nft", "list", "table", "ip", "minictr"]);
        assert!(
            table.contains("masquerade"),
            "the NAT table again:\n{table}"
        );
    }
    host.assert_clean(&[]);
}

#[test]
fn the_host_end_goes_even_when_something_keeps_the_containers_namespace_alive() {
    if !common::need_root(
        "the_host_end_goes_even_when_something_keeps_the_containers_namespace_alive",
    ) {
        return;
    }
    let host = Netns::new("held");
    // A process outside the container enters its network namespace and stays: the namespace (and
    // with it the veth pair) outlives the container, so the kernel does not delete the pair;
    // minictr's helper does, a moment later.
    let script = "echo up; read _; exit 0";
    let mut c = host
        .minictr(&[], &["sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, _rest) = first_line(&mut c);
    // (Not any child of minictr: the one that probes the kernel once is not `sh`.)
    let kids = capture(Command::new("pgrep").args(["-x", "sh", "-P", &c.id().to_string()]));
    let ctr: u32 = kids
        .split_whitespace()
        .next()
        .expect("the container's process")
        .parse()
        .unwrap();
    let netns = |pid: u32| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino())
    };
    let ctr_netns = netns(ctr).expect("the container's network namespace");
    let mut holder = Command::new("nsenter")
        .args([&format!("--net=/proc/{ctr}/ns/net"), "sleep", "30"])
        .spawn()
        .unwrap();
    common::wait_until(5, "the holder in the container's network namespace", || {
        netns(holder.id()).is_ok_and(|n| n == ctr_netns)
    });
    drop(c.stdin.take()); // `read` ends: the container exits
    assert!(wait_bounded(&mut c, 30).success());
    host.assert_clean(&[]);
    let _ = holder.kill();
    let _ = holder.wait();
}
