#!/usr/bin/env python3
"""Split one `strace -f -tt -T` trace of `minictr run … /bin/true` into the phases of a start.

    benches/phases.py TRACE...     (several traces: the median of each phase)

A phase ends at the first system call that marks the next one (see MARKS); ms and system calls per
phase. benches/trace.sh writes the traces."""
import re, statistics, sys

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):([\d.]+) (.*)$")
# (phase, how it is recognised: the first line that matches ends the phase before it)
MARKS = [
    ("exec, parse, probes (mountinfo, cgroup, subuid, passwd)", None),
    ("runtime directory, state.json, writable layer", r'mkdir\("[^"]*/\.new-'),
    ("cgroup directories and limits", r'mkdir\("/sys/fs/cgroup/'),
    ("clone3, state.json again", r"clone3\("),
    ("parent: id maps, overlay, cgroup attach, network → go", r"(uid_map|CLONE_VM)"),
    ("child: mounts, /dev, pivot_root, hardening → execve", r"sendmsg\(|write\(\d+, \"\\1\""),
    ("the command (/bin/true)", r'execve\("/bin/true"'),
    ("kernel: the container's namespaces torn down at exit", r"exit_group\("),
    ("teardown: cgroup rmdir, layer and state removed, exit", r"\+\+\+ exited"),
]


def phases(path):
    lines = []
    for l in open(path):
        m = LINE.match(l.rstrip("\n"))
        if m:
            pid, h, mi, s, rest = m.groups()
            lines.append((int(pid), int(h) * 3600 + int(mi) * 60 + float(s), rest))
    t0, main = lines[0][1], lines[0][0]
    end = max(t for p, t, _ in lines if p == main)
    cuts = [(MARKS[0][0], t0, 0)]
    for name, pat in MARKS[1:]:  # a phase whose mark is missing (stage off) merges into the one before
        i = next((i for i in range(cuts[-1][2], len(lines)) if re.search(pat, lines[i][2])), None)
        if i is not None:
            cuts.append((name, lines[i][1], i))
    cuts.append(("end", end, len(lines)))
    return {a[0]: ((b[1] - a[1]) * 1000, b[2] - a[2]) for a, b in zip(cuts, cuts[1:])}, (end - t0) * 1000, len(lines)


runs = [phases(p) for p in sys.argv[1:]]
print("| phase of one start (strace -f -tt; strace slows each call) | median ms | system calls |")
print("|---|---:|---:|")
for name, _ in MARKS:
    ms = [r[0][name][0] for r in runs if name in r[0]]
    n = [r[0][name][1] for r in runs if name in r[0]]
    if ms:
        print(f"| {name} | {statistics.median(ms):.2f} | {int(statistics.median(n))} |")
print(f"| **total** | {statistics.median(r[1] for r in runs):.2f} | {int(statistics.median(r[2] for r in runs))} |")
