#!/usr/bin/env bash
# The bridge network's cost: one binary against another (e.g. main's and this tree's), ALTERNATING.
#
#   sudo env "PATH=$PATH" benches/net.sh --old OLD_BINARY [--new NEW_BINARY] [--runs N] [--out DIR]
#
# NEW defaults to target/release/minictr. Everything runs in a network namespace the script makes
# for itself (as benches/start.sh does), with each binary's runtime and data directories on a
# private tmpfs, so that the disk (synchronous discards on ext4, see FINDINGS.md) stays out of it.
# Prints, for `run ROOTFS /bin/true` with the default (bridge) network and with --network none:
#   1. wall time, the two binaries and two modes in turn, N rounds (medians and quartiles);
#   2. CPU time per start (perf stat -e task-clock -r N), if perf works;
#   3. system calls per start (strace -f -c), if strace is installed;
#   4. 1, 10, 25, 50 networked containers started at once, old and new in turn: wall time per
#      start and the median start's latency (the same measure as benches/start.sh).
# Say the load average (printed) next to every number you quote: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
old=""; new=$PWD/target/release/minictr; runs=40; out=target/bench-net
while [ $# -gt 0 ]; do
  case "$1" in
    --old) old=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root" >&2; exit 1; }
[ -x "$old" ] && [ -x "$new" ] || { echo "$0: --old BINARY and --new BINARY must be executables" >&2; exit 2; }
old=$(realpath "$old"); new=$(realpath "$new")
mkdir -p "$out"; out=$(cd "$out" && pwd)
[ -x "$out/rootfs/bin/true" ] || rootfs-scripts/busybox.sh "$out/rootfs" --force >&2

if [ -z "${MINICTR_NETBENCH_INNER:-}" ]; then
  ns=mcnetbench-$$
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  ip netns exec "$ns" ip link set lo up
  rc=0
  MINICTR_NETBENCH_INNER=1 nsenter --net="/run/netns/$ns" unshare --mount --propagation private \
    bash -c 'mount -t tmpfs -o mode=0755 minictr-netbench "$1" && shift && exec "$@"' _ \
    "$(mkdir -p "$out/tmpfs" && echo "$out/tmpfs")" "$0" --old "$old" --new "$new" --runs "$runs" --out "$out" || rc=$?
  exit $rc
fi

rootfs=$out/rootfs
t=$out/tmpfs
as() { # as old|new COMMAND... — with that binary's own runtime and data directories
  local who=$1; shift
  env MINICTR_RUN_DIR="$t/run-$who" MINICTR_DATA_DIR="$t/data-$who" "$@"
}
echo "# $(date -u '+%F %T UTC'), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# old: $old"
echo "# new: $new"

echo "## 1. wall time, alternating, $runs rounds (ms)"
python3 - "$runs" "$old" "$new" "$rootfs" "$t" <<'PY'
import os, statistics, subprocess, sys, time
runs, old, new, rootfs, t = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
rows = [(f"{who} {mode}", who, [binary, "run", "--network", mode, rootfs, "/bin/true"])
        for mode in ("bridge", "none") for who, binary in (("old", old), ("new", new))]
times = {label: [] for label, _, _ in rows}
for i in range(runs + 3):  # 3 warm-up rounds
    for label, who, cmd in (rows if i % 2 == 0 else rows[::-1]):
        env = dict(os.environ, MINICTR_RUN_DIR=f"{t}/run-{who}", MINICTR_DATA_DIR=f"{t}/data-{who}")
        s = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode:
            sys.exit(f"{label}: exit {r.returncode}: {r.stderr.decode().strip()}")
        if i >= 3:
            times[label].append((time.perf_counter() - s) * 1000)
print("| what | median | p25 | p75 |\n|---|---:|---:|---:|")
for label, v in times.items():
    q = statistics.quantiles(v, n=4)
    print(f"| {label} | {statistics.median(v):.2f} | {q[0]:.2f} | {q[2]:.2f} |")
for who in ("old", "new"):
    d = statistics.median(times[f"{who} bridge"]) - statistics.median(times[f"{who} none"])
    print(f"bridge adds ({who}): {d:.2f} ms")
PY
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"

if perf stat -e task-clock true >/dev/null 2>&1; then
  echo "## 2. CPU time per start (perf stat -e task-clock -r $runs, the process and its children)"
  for mode in bridge none; do
    for who in old new; do
      b=$old; [ $who = new ] && b=$new
      ms=$(as $who perf stat -x, -e task-clock -r "$runs" "$b" run --network $mode "$rootfs" /bin/true 2>&1 >/dev/null |
        awk -F, '/task-clock/ {print $1}')
      echo "$who $mode: $ms ms"
    done
  done
  echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

if command -v strace >/dev/null; then
  echo "## 3. system calls per start (strace -f -c; total, failed)"
  for mode in bridge none; do
    for who in old new; do
      b=$old; [ $who = new ] && b=$new
      as $who strace -f -c -o "$out/strace-$who-$mode.txt" "$b" run --network $mode "$rootfs" /bin/true
      echo "$who $mode: $(awk '/total$/ {print $(NF-2), $(NF-1)}' "$out/strace-$who-$mode.txt")"
    done
  done
fi

echo "## 4. N networked containers at once, old and new in turn (wall ms per start, median latency ms)"
sleep 3  # the kernel tears the namespaces of the runs above down asynchronously
for n in 1 10 25 50; do
  for who in old new; do
    b=$old; [ $who = new ] && b=$new
    as $who python3 - "$n" "$b" "$rootfs" "$who" <<'PY'
import statistics, subprocess, sys, threading, time
n, binary, rootfs, who = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lat, failed = [], []
def one():
    s = time.perf_counter()
    r = subprocess.run([binary, "run", rootfs, "/bin/true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lat.append((time.perf_counter() - s) * 1000)
    if r.returncode:
        failed.append(r.stderr.decode().strip())
t0 = time.perf_counter()
threads = [threading.Thread(target=one) for _ in range(n)]
for th in threads: th.start()
for th in threads: th.join()
wall = (time.perf_counter() - t0) * 1000
print(f"{who} n={n}: {wall / n:.1f} ms per start, median latency {statistics.median(lat):.1f} ms"
      + (f", {len(failed)} failed: {failed[0]}" if failed else ""))
PY
    sleep 3
  done
done
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
for who in old new; do
  b=$old; [ $who = new ] && b=$new
  as $who "$b" network rm >/dev/null 2>&1 || true
done
