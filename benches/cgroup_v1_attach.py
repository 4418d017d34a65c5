#!/usr/bin/env python3
"""What a container's six cgroup v1 hierarchies cost, part by part (issue 15, branch cgv1).

    sudo python3 benches/cgroup_v1_attach.py [ROUNDS]

Needs root on a cgroup v1 (or hybrid) host with cpu, cpuacct, memory, freezer, blkio and pids
mounted under /sys/fs/cgroup. Each part repeats the system calls minictr makes, in a loop, and prints
the median in ms (a markdown table):
  - mkdir of the container's group in the six hierarchies, rmdir of them;
  - the new attach: open `tasks` and write "0" (this thread moves itself; no cgroup_threadgroup_rwsem);
  - the old attach: another process's pid written to `cgroup.procs` (write-locks the rwsem: one RCU
    grace period), rounds 50 ms apart so that each one pays it as a start does;
  - the container's /sys/fs/cgroup: a tmpfs, six bind mounts made read-only, the tmpfs read-only, in
    a private mount namespace; and their detach.
Everything made is removed; this script moves itself back to its own cgroups after each round.
"""
import ctypes, os, statistics, subprocess, sys, time

HIER = ["cpu", "cpuacct", "memory", "freezer", "blkio", "pids"]
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def own_dirs():
    own = {}
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        for h in HIER:
            if h in ctrls.split(",") and h not in own:
                own[h] = f"/sys/fs/cgroup/{h}" + ("" if path == "/" else path)
    return own


def move_self(tasks):
    fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def cgroup_parts(base, out):
    mk, att, rm = [], [], []
    for i in range(ROUNDS):
        d = {h: f"{base[h]}/cgv1-bench-{os.getpid()}-{i}" for h in HIER}
        a = time.perf_counter()
        for h in HIER:
            os.mkdir(d[h])
        b = time.perf_counter()
        for h in HIER:
            move_self(d[h] + "/tasks")
        c = time.perf_counter()
        for h in HIER:
            move_self(base[h] + "/tasks")
        e = time.perf_counter()
        for h in HIER:
            os.rmdir(d[h])
        g = time.perf_counter()
        mk.append(b - a), att.append(c - b), rm.append(g - e)
    old = []
    for i in range(max(ROUNDS // 5, 10)):
        d = {h: f"{base[h]}/cgv1-bench-{os.getpid()}-p{i}" for h in HIER}
        for h in HIER:
            os.mkdir(d[h])
        p = subprocess.Popen(["sleep", "10"])
        a = time.perf_counter()
        for h in HIER:
            with open(d[h] + "/cgroup.procs", "w") as f:
                f.write(str(p.pid))
        old.append(time.perf_counter() - a)
        p.kill()
        p.wait()
        for h in HIER:
            while True:
                try:
                    os.rmdir(d[h])
                    break
                except OSError:
                    time.sleep(0.01)  # the killed sleep leaves its groups a moment later
        time.sleep(0.05)
    out += [("6 × mkdir", mk), ("6 × `0` to `tasks` (this thread moves itself)", att),
            ("6 × rmdir", rm), ("6 × another pid to `cgroup.procs` (the old attach)", old)]


def mount_parts(out):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def ok(r, what):
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")

    flags = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    bind, remount, rdonly = 4096, 32, 1
    ok(libc.unshare(0x20000), "unshare(CLONE_NEWNS)")  # this process only: nothing shows outside
    ok(libc.mount(b"none", b"/", None, 0x4000 | (1 << 18), None), "make / private")
    at = f"/tmp/cgv1-bench-{os.getpid()}"
    os.mkdir(at)
    up, down = [], []
    try:
        for _ in range(ROUNDS):
            a = time.perf_counter()
            ok(libc.mount(b"tmpfs", at.encode(), b"tmpfs", flags, b"mode=755"), "tmpfs")
            for h in HIER:
                p = f"{at}/{h}".encode()
                os.mkdir(p)
                ok(libc.mount(f"/sys/fs/cgroup/{h}".encode(), p, None, bind, None), "bind")
                ok(libc.mount(None, p, None, remount | bind | rdonly, None), "read-only")
            ok(libc.mount(None, at.encode(), None, remount | bind | rdonly | flags, None), "ro")
            b = time.perf_counter()
            ok(libc.umount2(at.encode(), 2), "umount2(MNT_DETACH)")
            up.append(b - a), down.append(time.perf_counter() - b)
    finally:
        os.rmdir(at)
    out += [("/sys/fs/cgroup inside: tmpfs + 6 read-only binds", up), ("their detach", down)]


def main():
    out = []
    cgroup_parts(own_dirs(), out)
    mount_parts(out)
    print(f"| part ({ROUNDS} rounds) | median ms | mean ms | max ms |\n|---|---:|---:|---:|")
    for name, v in out:
        print(f"| {name} | {statistics.median(v) * 1000:.3f} | {statistics.mean(v) * 1000:.3f} "
              f"| {max(v) * 1000:.3f} |")


if __name__ == "__main__":
    main()
