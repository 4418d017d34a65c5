#!/usr/bin/env bash
# How long does it take to start a container that runs /bin/true and exits? minictr beside what users
# would pick instead (runc, crun) and the floor (`unshare` of the same namespaces), with hyperfine.
#
#   sudo benches/start.sh [--runs N] [--warmup N] [--rootfs DIR] [--out DIR] [--only minictr]
#
# Prints a table of medians and ratios to minictr's default; the raw hyperfine results are kept as JSON
# in OUT (default target/bench). Absolute times drift between runs and machines: compare side by side,
# in one run, as ratios. Run it on an otherwise idle machine.
#
# To measure what a stage adds, add a line to MINICTR_VARIANTS below: "label|options". Each line
# becomes one `minictr run OPTIONS ROOTFS /bin/true` benchmark; the difference to "minictr" is
# what the switched-off stage costs.
#
# Everything runs inside a network namespace the script makes for itself (mcbench-PID): minictr's
# default bridge network, its NAT rules and ip_forward live there and vanish with it, and the
# machine's own network is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MINICTR_BENCH_NETNS:-}" ] && [ "$(id -u)" = 0 ]; then
  ns=mcbench-$$
  ip netns add "$ns"
  trap 'ip netns exec "$ns" target/release/minictr network rm >/dev/null 2>&1; ip netns del "$ns"' EXIT
  ip netns exec "$ns" ip link set lo up
  # nsenter, not `ip netns exec`: the latter remounts /sys, which hides /sys/fs/cgroup (runc would
  # fail and minictr would skip its cgroup stage).
  MINICTR_BENCH_NETNS=$ns nsenter --net="/run/netns/$ns" "$0" "$@"
  exit $?
fi

MINICTR_VARIANTS=(
  "minictr|"
  "minictr --network none|--network none"
  "minictr --network none --userns=host|--network none --userns=host"
  "minictr --network none --no-overlay|--network none --no-overlay"
  "minictr --network none --no-cgroup|--network none --no-cgroup"
  "minictr --network none --no-security|--network none --no-security"
  "minictr, namespaces + pivot_root only|--userns=host --no-net --no-overlay --no-cgroup --no-security"
)

runs=30; warmup=3; rootfs=""; out=target/bench; only=""
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rootfs) rootfs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument $1" >&2; usage ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "$0: run as root (sudo env \"PATH=\$PATH\" $0): runc, crun and unshare need it" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "$0: hyperfine is missing: apt-get install -y hyperfine" >&2; exit 1; }

minictr=$PWD/target/release/minictr
if ! [ -x "$minictr" ]; then
  echo "$0: building the release binary (cargo build --release)" >&2
  cargo build --release >&2
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -z "$rootfs" ]; then
  rootfs=$out/rootfs
  [ -x "$rootfs/bin/true" ] || rootfs-scripts/busybox.sh "$rootfs" --force >&2
fi
rootfs=$(cd "$rootfs" && pwd)

# An OCI bundle for runc and crun: `runc spec`'s config.json, running /bin/true without a terminal in
# our rootfs (read-only, as runc spec makes it).
bundle=$out/bundle
mkdir -p "$bundle"
rm -f "$bundle/config.json"
have_runc=0; have_crun=0
command -v runc >/dev/null && have_runc=1
command -v crun >/dev/null && have_crun=1
if [ $have_runc = 1 ]; then
  (cd "$bundle" && runc spec)
  command -v jq >/dev/null || { echo "$0: jq is missing: apt-get install -y jq" >&2; exit 1; }
  jq --arg root "$rootfs" '.process.terminal = false | .process.args = ["/bin/true"] | .root.path = $root' \
    "$bundle/config.json" > "$bundle/config.json.new"
  mv "$bundle/config.json.new" "$bundle/config.json"
else
  echo "$0: runc is not installed (apt-get install -y runc): skipping runc and crun" >&2
  have_crun=0
fi

id=bench-$$
cmds=(); names=()
add() { names+=("$1"); cmds+=("$2"); }
want() { [ -z "$only" ] || [[ "$1" == *"$only"* ]]; }

want "host" && add "host /bin/true" "$rootfs/bin/true"
want "unshare" && add "unshare" "unshare --pid --fork --mount --uts --ipc --net --mount-proc -R $rootfs /bin/true"
for v in "${MINICTR_VARIANTS[@]}"; do
  label=${v%%|*}; opts=${v#*|}
  want "$label" && add "$label" "$minictr run $opts $rootfs /bin/true"
done
[ $have_runc = 1 ] && want "runc" && add "runc" "runc run --bundle $bundle $id-runc"

run_hyperfine() { # JSON-FILE then name/command pairs
  local json=$1; shift
  local args=(-N --warmup "$warmup" --runs "$runs" --export-json "$json" --style basic)
  while [ $# -gt 0 ]; do args+=(-n "$1" "$2"); shift 2; done
  hyperfine "${args[@]}"
}

pairs=()
for i in "${!cmds[@]}"; do pairs+=("${names[$i]}" "${cmds[$i]}"); done
jsons=()
if [ ${#pairs[@]} -gt 0 ]; then
  run_hyperfine "$out/start.json" "${pairs[@]}"
  jsons+=("$out/start.json")
fi

# crun 1.8 refuses cgroup v1 "hybrid" hosts (cgroup2 mounted at /sys/fs/cgroup/unified): measure it in a
# private mount namespace where that mount is gone. Only crun runs there; nothing else is affected.
if [ $have_crun = 1 ] && want "crun"; then
  crun_cmd="crun run --bundle $bundle $id-crun"
  if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
    echo "$0: hybrid cgroup host: running crun in a private mount namespace without /sys/fs/cgroup/unified" >&2
    export -f run_hyperfine
    export warmup runs
    unshare --mount --propagation private bash -c '
      umount /sys/fs/cgroup/unified
      run_hyperfine "$1" crun "$2"' _ "$out/crun.json" "$crun_cmd"
  else
    run_hyperfine "$out/crun.json" crun "$crun_cmd"
  fi
  jsons+=("$out/crun.json")
fi

# The summary: medians, and each one as a multiple of minictr's default.
python3 - "${jsons[@]}" <<'PY'
import json, sys
rows = []
for f in sys.argv[1:]:
    for r in json.load(open(f))["results"]:
        rows.append((r["command"], r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000, len(r["times"])))
base = next((m for n, m, *_ in rows if n == "minictr"), None)
w = max(len(n) for n, *_ in rows)
print()
print(f"{'what':<{w}}  {'median ms':>9}  {'mean ± σ ms':>14}  {'runs':>4}  {'÷ minictr':>9}")
for n, med, mean, sd, k in rows:
    ratio = f"{med / base:8.2f}×" if base else "        -"
    print(f"{n:<{w}}  {med:9.2f}  {mean:7.2f} ± {sd:5.2f}  {k:4d}  {ratio}")
PY
echo
echo "measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(runc --version 2>/dev/null | head -n1 || true); $(crun --version 2>/dev/null | head -n1 || true); runs=$runs"
echo "raw results: ${jsons[*]}"
