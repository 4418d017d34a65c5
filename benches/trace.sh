#!/usr/bin/env bash
# Where the time of one start goes: system calls per start, per stage, with strace.
#
#   sudo env "PATH=$PATH" benches/trace.sh [ROOTFS]
#
# For each stage switch (the variants of benches/start.sh) it runs one `minictr run … /bin/true` under
# `strace -f -c` and prints the number of system calls, the failed ones, and the calls that took
# longest (`strace -f -T`, ≥ 0.5 ms). The difference between two rows is what a stage costs in calls.
# Then the phases of a start (benches/phases.py over 5 traces). Traces stay in target/bench/. Like start.sh it works in a network namespace of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "$0: run as root" >&2; exit 1; }
command -v strace >/dev/null || { echo "$0: strace is missing: apt-get install -y strace" >&2; exit 1; }
out=$PWD/target/bench
mkdir -p "$out"
rootfs=${1:-$out/rootfs}
[ -x "$rootfs/bin/true" ] || rootfs-scripts/busybox.sh "$rootfs" --force >&2
[ -x target/release/minictr ] || cargo build --release >&2
minictr=$PWD/target/release/minictr
ns=mctrace-$$
ip netns add "$ns"
trap 'ip netns exec "$ns" "$minictr" network rm >/dev/null 2>&1 || true; ip netns del "$ns"; rm -rf /run/minictr-trace-$$ /var/lib/minictr-trace-$$' EXIT
export MINICTR_RUN_DIR=/run/minictr-trace-$$ MINICTR_DATA_DIR=/var/lib/minictr-trace-$$
variants=(
  "namespaces + pivot_root|--network none --userns=host --no-overlay --no-cgroup --no-security"
  "+ user namespace|--network none --no-overlay --no-cgroup --no-security"
  "+ overlay|--network none --no-cgroup --no-security"
  "+ cgroup|--network none --no-security"
  "+ hardening (every stage but the bridge)|--network none"
  "+ bridge network|"
)
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
in_ns "$minictr" run "$rootfs" /bin/true # the bridge is made once, outside the counts
printf '| %s | %s | %s | %s |\n|---|---:|---:|---|\n' "stages" "syscalls" "failed" "slowest calls (strace -T, ≥ 0.5 ms)"
i=0
for v in "${variants[@]}"; do
  label=${v%%|*}; opts=${v#*|}; i=$((i + 1))
  # shellcheck disable=SC2086
  in_ns strace -f -c -o "$out/trace-$i-count.txt" "$minictr" run $opts "$rootfs" /bin/true
  # shellcheck disable=SC2086
  in_ns strace -f -T -tt -o "$out/trace-$i.txt" "$minictr" run $opts "$rootfs" /bin/true
  total=$(awk '$NF == "total" { print $(NF-2), ($(NF-1) ~ /^[0-9]+$/ ? $(NF-1) : 0) }' "$out/trace-$i-count.txt")
  slow=$(awk 'match($0, /<[0-9.]+>$/) {
      t = substr($0, RSTART + 1, RLENGTH - 2)
      if (t < 0.0005) next
      if (match($0, /<\.\.\. [a-z0-9_]+ resumed>/)) n = substr($0, RSTART + 5, RLENGTH - 14)
      else { n = $3; sub(/\(.*/, "", n) }
      if (n == "wait4" || n == "poll" || n == "recvmsg" || n == "read") next  # waiting for the other side
      printf "%s %.1f ms; ", n, t * 1000 }' "$out/trace-$i.txt")
  printf '| %s | %s | %s | %s |\n' "$label" "${total% *}" "${total#* }" "${slow:-}"
done
echo
# The phases of one start (every stage but the bridge), the median of 5 traced starts.
for k in 1 2 3 4 5; do
  in_ns strace -f -tt -T -o "$out/phases-$k.txt" "$minictr" run --network none "$rootfs" /bin/true
done
python3 benches/phases.py "$out"/phases-[1-5].txt
