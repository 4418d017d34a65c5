#!/usr/bin/env bash
# How fast does minictr start a container, beside what users would pick instead and beside the floor?
#
#   sudo env "PATH=$PATH" benches/start.sh [--short] [--runs N] [--only TEXT] [--out DIR] [--no-install]
#                                          [--baseline BIN]
#
# Every container runs /bin/true on a busybox rootfs and exits. In ONE hyperfine invocation (-N, so
# all rows share the same moments of a noisy machine): host /bin/true, `unshare … -R`, bwrap
# `--unshare-all`, the floor (benches/floor.c, built here with cc: the same stages with raw system
# calls; variants A, B, C), minictr with stages switched on one group at a time, the static minictr
# when benches/static.sh has built it, crun and runc. Then: peak RSS of each (/usr/bin/time -f %M),
# 100 starts one at a time and 20 at a time (starts per second), and 1 → 50 networked containers
# started at once (cost per start). The table goes to stdout and OUT/table.md (default target/bench);
# hyperfine's JSON and the raw numbers stay in OUT.
#
# --short: few runs, fewer starts, no targets checked (CI runs this so the script cannot rot).
# --only TEXT: only the start-time rows whose label contains TEXT (e.g. --only minictr), nothing else.
# --baseline BIN: two more rows, another minictr binary (e.g. an older build) with `--network none`
# and with every stage, so a change is measured before/after in the same invocation.
# --no-install: do not apt-get install what is missing (runc crun bubblewrap hyperfine time gcc jq;
# linux-perf, optional, for the CPU-time column).
#
# Everything runs in a network namespace the script makes for itself (entered with nsenter --net,
# which, unlike `ip netns exec`, keeps /sys/fs/cgroup visible), so the bridge rows never touch the
# machine's network. On a cgroup v1 "hybrid" host, crun 1.8 refuses to run ("cgroups in hybrid mode
# not supported"): the whole measurement then runs in a private mount namespace in which
# /sys/fs/cgroup/unified is unmounted — for every row alike, so the comparison stays in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

short=0; runs=""; out=target/bench; install=1; only=""; baseline=""
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --baseline) baseline=$(realpath "$2"); shift 2 ;;
    --no-install) install=0; shift ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument $1" >&2; usage ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (sudo env \"PATH=\$PATH\" $0): the containers need it" >&2; exit 1; }

# ---- stage 1 (host): install, build, then re-enter in a private network (+ mount) namespace ------
if [ -z "${MINICTR_BENCH_INNER:-}" ]; then
  if [ $install = 1 ]; then
    need=""
    for p in runc crun bubblewrap hyperfine time gcc libc6-dev jq python3 busybox-static iproute2 util-linux; do
      dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
    done
    if [ -n "$need" ]; then
      echo "$0: installing$need" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >&2
    fi
    # perf for the CPU-time column: optional (Debian's linux-perf may not match the kernel)
    command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >&2 || true
  fi
  for c in hyperfine cc jq nsenter; do
    command -v $c >/dev/null || { echo "$0: $c is missing (apt-get install hyperfine gcc jq util-linux)" >&2; exit 1; }
  done
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  [ -x target/release/minictr ] || { echo "$0: building target/release/minictr" >&2; cargo build --release >&2; }
  # The static binary's row (benches/static.sh builds it; a full run builds it when missing).
  if [ $short = 0 ] && ! ls target/x86_64-unknown-linux-*/static/minictr >/dev/null 2>&1; then
    benches/static.sh --no-smoke >&2
  fi
  cc -O2 -Wall -Wno-format-truncation -o "$out/floor" benches/floor.c
  [ -x "$out/rootfs/bin/true" ] || rootfs-scripts/busybox.sh "$out/rootfs" --force >&2

  ns=mcbench-$$
  ip netns add "$ns"
  cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/run/minictr-bench-$$" "/var/lib/minictr-bench-$$"
  }
  trap cleanup EXIT
  ip netns exec "$ns" ip link set lo up
  inner=(env MINICTR_BENCH_INNER=1 MINICTR_BENCH_OUT="$out"
    MINICTR_RUN_DIR="/run/minictr-bench-$$" MINICTR_DATA_DIR="/var/lib/minictr-bench-$$"
    nsenter --net="/run/netns/$ns")
  hybrid=0
  mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && hybrid=1
  pass=(--out "$out")
  [ $short = 1 ] && pass+=(--short)
  [ -n "$runs" ] && pass+=(--runs "$runs")
  [ -n "$only" ] && pass+=(--only "$only")
  [ -n "$baseline" ] && pass+=(--baseline "$baseline")
  rc=0
  # A private mount namespace for the measuring side: the tmpfs of the "on tmpfs" rows and, on a
  # hybrid host, the missing /sys/fs/cgroup/unified vanish with it.
  "${inner[@]}" unshare --mount --propagation private bash -c '
    if [ "$1" = 1 ]; then umount /sys/fs/cgroup/unified && export MINICTR_BENCH_HYBRID=1; fi
    mkdir -p "$2" && mount -t tmpfs -o mode=0755 minictr-bench "$2"
    shift 2; exec "$@"' _ "$hybrid" "$out/tmpfs" "$0" "${pass[@]}" || rc=$?
  exit $rc
fi

# ---- stage 2 (inside): measure ------------------------------------------------------------------
out=$MINICTR_BENCH_OUT
rootfs=$out/rootfs
minictr=$repo/target/release/minictr
floor=$out/floor
static=""
for s in "$repo"/target/x86_64-unknown-linux-{musl,gnu}/static/minictr; do
  [ -x "$s" ] && { static=$s; break; }
done
if [ $short = 1 ]; then
  runs=${runs:-5}; warmup=1; starts=20; par=5; concurrency=(1 5 10)
else
  runs=${runs:-40}; warmup=5; starts=100; par=20; concurrency=(1 10 25 50)
fi
# The floor's overlay directories in memory, where minictr puts a throwaway container's writable
# layer (chapter 5: a detached tmpfs); the "on tmpfs" row moves minictr's runtime directory there too.
tmpfs=$out/tmpfs
export FLOOR_TMP=$tmpfs/floor
mkdir -p "$FLOOR_TMP"

# An OCI bundle for runc and crun: `runc spec`'s config.json, /bin/true without a terminal.
bundle=$out/bundle
mkdir -p "$bundle"
rm -f "$bundle/config.json"
have_oci=0
if command -v runc >/dev/null; then
  (cd "$bundle" && runc spec)
  jq --arg root "$rootfs" '.process.terminal = false | .process.args = ["/bin/true"] | .root.path = $root' \
    "$bundle/config.json" > "$bundle/config.json.new"
  mv "$bundle/config.json.new" "$bundle/config.json"
  have_oci=1
fi

# label | command | floor of the same stages (a label) — the rows of the one hyperfine run
rows=(
  "host /bin/true|$rootfs/bin/true|"
  "unshare --pid --fork --mount --uts --ipc --net --mount-proc -R|unshare --pid --fork --mount --uts --ipc --net --mount-proc -R $rootfs /bin/true|"
  "bwrap --unshare-all --ro-bind ROOTFS / --proc /proc --dev /dev|bwrap --unshare-all --ro-bind $rootfs / --proc /proc --dev /dev /bin/true|"
  "floor A: namespaces + pivot_root + /proc|$floor $rootfs /bin/true|"
  "floor B: A + userns + cgroup + overlay|$floor -u -c -o $rootfs /bin/true|"
  "floor C: B + veth over netlink|$floor -u -c -o -n $rootfs /bin/true|"
  "minictr, namespaces + pivot_root only|$minictr run --network none --userns=host --no-overlay --no-cgroup --no-security $rootfs /bin/true|floor A: namespaces + pivot_root + /proc"
  "minictr --network none --userns=host|$minictr run --network none --userns=host $rootfs /bin/true|"
  "minictr --network none --no-overlay|$minictr run --network none --no-overlay $rootfs /bin/true|"
  "minictr --network none --no-cgroup|$minictr run --network none --no-cgroup $rootfs /bin/true|"
  "minictr --network none --no-security (floor B's stages)|$minictr run --network none --no-security $rootfs /bin/true|floor B: A + userns + cgroup + overlay"
  "minictr --network none (every stage but the bridge)|$minictr run --network none $rootfs /bin/true|floor B: A + userns + cgroup + overlay"
  "minictr --network none, runtime and data directories on tmpfs (through env)|env MINICTR_RUN_DIR=$tmpfs/run MINICTR_DATA_DIR=$tmpfs/data $minictr run --network none $rootfs /bin/true|floor B: A + userns + cgroup + overlay"
  "minictr (every stage, bridge network)|$minictr run $rootfs /bin/true|floor C: B + veth over netlink"
)
if [ -n "$baseline" ]; then
  rows+=("baseline ${baseline##*/} --network none|$baseline run --network none $rootfs /bin/true|floor B: A + userns + cgroup + overlay"
    "baseline ${baseline##*/} (every stage, bridge network)|$baseline run $rootfs /bin/true|floor C: B + veth over netlink")
fi
# The static binary (benches/static.sh; what a student copies to another machine): the same three
# rows the targets are checked on, since it starts faster than the dynamically linked build.
[ -n "$static" ] && rows+=(
  "minictr static, namespaces + pivot_root only|$static run --network none --userns=host --no-overlay --no-cgroup --no-security $rootfs /bin/true|floor A: namespaces + pivot_root + /proc"
  "minictr static --network none (every stage but the bridge)|$static run --network none $rootfs /bin/true|floor B: A + userns + cgroup + overlay"
  "minictr static (every stage, bridge network)|$static run $rootfs /bin/true|floor C: B + veth over netlink")
if [ $have_oci = 1 ]; then
  command -v crun >/dev/null && rows+=("crun $(crun --version | head -n1 | awk '{print $3}') run|crun run --bundle $bundle bench-crun|")
  rows+=("runc $(runc --version | head -n1 | awk '{print $3}') run|runc run --bundle $bundle bench-runc|")
fi
# The bridge row's first start creates the bridge minictr0 and its NAT rules: do it outside the timing.
$minictr run $rootfs /bin/true

if [ -n "$only" ]; then
  kept=()
  for r in "${rows[@]}"; do [[ "${r%%|*}" == *"$only"* ]] && kept+=("$r"); done
  rows=("${kept[@]}")
  [ ${#rows[@]} -gt 0 ] || { echo "$0: no row matches --only $only" >&2; exit 2; }
fi
hf=(hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$out/start.json" --style basic)
for r in "${rows[@]}"; do
  IFS='|' read -r label cmd _ <<<"$r"
  hf+=(-n "$label" "$cmd")
done
echo "=== start time: one hyperfine invocation, $runs runs each" >&2
"${hf[@]}" >&2

# Peak RSS: the median of 5 runs of /usr/bin/time -f %M (the process and its waited-for children).
echo "=== peak RSS" >&2
: > "$out/rss.txt"
for r in "${rows[@]}"; do
  IFS='|' read -r label cmd _ <<<"$r"
  ks=()
  for _ in 1 2 3 4 5; do
    # shellcheck disable=SC2086
    ks+=("$(/usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -n1)")
  done
  printf '%s\t%s\n' "$label" "$(printf '%s\n' "${ks[@]}" | sort -n | sed -n 3p)" >> "$out/rss.txt"
done

# CPU time per start (perf stat task-clock: the process and its children, user + system): unlike
# wall-clock time it hardly moves with the machine's load. Skipped when perf does not work here.
: > "$out/cpu.txt"
if perf stat -x, -e task-clock true >/dev/null 2>&1; then
  cpu_runs=$(( runs < 20 ? runs : 20 ))
  echo "=== CPU time per start (perf stat, $cpu_runs runs)" >&2
  for r in "${rows[@]}"; do
    IFS='|' read -r label cmd _ <<<"$r"
    # shellcheck disable=SC2086
    ms=$(perf stat -x, -e task-clock -r "$cpu_runs" $cmd 2>&1 >/dev/null | awk -F, '$3 == "task-clock" { print $1 }')
    printf '%s\t%s\n' "$label" "$ms" >> "$out/cpu.txt"
  done
fi

# Throughput: N starts one at a time, then PAR at a time (xargs -P), wall clock.
echo "=== throughput: $starts starts, 1 and $par at a time" >&2
: > "$out/throughput.txt"
tput() { # label parallel command...
  local label=$1 p=$2; shift 2
  local t0 t1
  t0=$EPOCHREALTIME
  seq "$starts" | xargs -P "$p" -I{} "$@" >/dev/null
  t1=$EPOCHREALTIME
  printf '%s\t%s\t%s\n' "$label" "$p" "$(awk -v n="$starts" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')" >> "$out/throughput.txt"
}
[ -n "$only" ] && starts=0
for p in 1 "$par"; do
  [ "$starts" -gt 0 ] || break
  tput "minictr --network none" "$p" "$minictr" run --network none "$rootfs" /bin/true
  tput "minictr --network none, runtime and data directories on tmpfs" "$p" \
    env MINICTR_RUN_DIR="$tmpfs/run" MINICTR_DATA_DIR="$tmpfs/data" "$minictr" run --network none "$rootfs" /bin/true
  [ -n "$static" ] && tput "minictr static --network none" "$p" "$static" run --network none "$rootfs" /bin/true
  tput "floor B" "$p" "$floor" -u -c -o "$rootfs" /bin/true
  [ -n "$baseline" ] && tput "baseline ${baseline##*/} --network none" "$p" "$baseline" run --network none "$rootfs" /bin/true
  [ $have_oci = 1 ] && command -v crun >/dev/null && tput "crun" "$p" crun run --bundle "$bundle" "bench-{}"
done

# 1 → 50 networked containers started at once: wall time per start and each start's own latency,
# minictr beside the floor's variant C. The kernel tears network namespaces down asynchronously
# (cleanup_net, under rtnl_lock): after the hundreds of the throughput runs, and between the
# steps, give it a few seconds, or a step measures the previous one's teardown.
settle() { sleep "$1"; }
echo "=== ${concurrency[*]} networked containers at once" >&2
: > "$out/concurrency.txt"
[ -n "$only" ] && concurrency=()
[ ${#concurrency[@]} -gt 0 ] && settle 5
at_once() { # N command... → "wall-ms-per-start<TAB>median-latency-ms"
  local n=$1; shift
  local lat=$out/lat.txt t0 t1
  : > "$lat"
  t0=$EPOCHREALTIME
  for _ in $(seq "$n"); do
    ( s=$EPOCHREALTIME; "$@" >/dev/null; e=$EPOCHREALTIME
      awk -v a="$s" -v b="$e" 'BEGIN { print (b - a) * 1000 }' >> "$lat" ) &
  done
  wait
  t1=$EPOCHREALTIME
  printf '%s\t%s' "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) * 1000 / n }')" \
    "$(sort -n "$lat" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
}
for n in "${concurrency[@]}"; do
  m=$(at_once "$n" "$minictr" run "$rootfs" /bin/true); settle 3
  f=$(at_once "$n" "$floor" -u -c -o -n "$rootfs" /bin/true); settle 3
  printf '%s\t%s\t%s\n' "$n" "$m" "$f" >> "$out/concurrency.txt"
done
"$minictr" network rm >/dev/null 2>&1 || true

# ---- the table ---------------------------------------------------------------------------------
floors=$(for r in "${rows[@]}"; do IFS='|' read -r label _ f <<<"$r"; printf '%s\t%s\n' "$label" "$f"; done)
static_bytes=$([ -n "$static" ] && stat -c %s "$static" || true)
python3 - "$out" "$short" "$floors" "$static_bytes" <<'PY' | tee "$out/table.md"
import json, sys
out, short, floors = sys.argv[1], sys.argv[2] == "1", dict(l.split("\t") for l in sys.argv[3].splitlines())
res = {r["command"]: r for r in json.load(open(f"{out}/start.json"))["results"]}
rss = dict(l.rstrip("\n").split("\t") for l in open(f"{out}/rss.txt"))
cpu = dict(l.rstrip("\n").split("\t") for l in open(f"{out}/cpu.txt"))
med = {k: r["median"] * 1000 for k, r in res.items()}
crun = next((v for k, v in med.items() if k.startswith("crun")), None)
print("| what | median ms | ÷ crun | ÷ floor, same stages | CPU ms | peak RSS KiB |")
print("|---|---:|---:|---:|---:|---:|")
for k, m in med.items():
    f = floors.get(k, "")
    print(f"| {k} | {m:.2f} | {m / crun:.2f}× |" if crun else f"| {k} | {m:.2f} | - |",
          f"{m / med[f]:.2f}× |" if f in med else " |", f"{float(cpu[k]):.2f} |" if cpu.get(k) else "- |",
          f"{int(rss[k]):,} |" if rss.get(k, "").isdigit() else "- |")
tp = {}
for l in open(f"{out}/throughput.txt"):
    label, p, v = l.split("\t")
    tp.setdefault(label, {})[int(p)] = float(v)
if tp:
    par = max(p for d in tp.values() for p in d)
    print()
    print("| starts per second | one at a time | in parallel |")
    print("|---|---:|---:|")
    for label, d in tp.items():
        print(f"| {label} | {d.get(1, 0):.0f} | {d.get(par, 0):.0f} ({par} at a time) |")
conc = [l.split("\t") for l in open(f"{out}/concurrency.txt")]
if conc:
    print()
    print("| networked containers started at once | minictr: wall ms per start | minictr: median latency ms | floor C: wall ms per start | floor C: median latency ms |")
    print("|---:|---:|---:|---:|---:|")
    for n, per, lat, fper, flat in conc:
        print(f"| {n} | {float(per):.1f} | {float(lat):.1f} | {float(fper):.1f} | {float(flat):.1f} |")
if short or not tp:
    sys.exit(0)
# The targets of issue 15 — reported, never asserted (timing is not a test): for the build
# `cargo build --release` makes (dynamically linked) and, when benches/static.sh has built it, for
# the static binary.
def row(prefix): return next((v for k, v in med.items() if k.startswith(prefix)), None)
fa, fb = row("floor A"), row("floor B")
checks = []
for build, name in (("minictr", ""), ("minictr static", ", the static binary")):
    mc_ns, mc_none, mc_br = row(build + ", namespaces"), row(build + " --network none ("), row(build + " (every")
    if mc_none is None:
        continue
    if crun: checks.append((f"every stage but the bridge ≤ 0.6× crun{name}", mc_none / crun, 0.6, "×"))
    checks.append((f"namespaces + pivot_root ≤ 1.3× floor A{name}", mc_ns / fa, 1.3, "×"))
    checks.append((f"every stage but the bridge ≤ 1.5× floor B{name}", mc_none / fb, 1.5, "×"))
    checks.append((f"the bridge adds ≤ 1.5 ms{name}", mc_br - mc_none, 1.5, " ms"))
    mr = [int(v) for k, v in rss.items() if k.startswith(build + " --network none (") and v.isdigit()]
    if mr: checks.append((f"peak RSS ≤ 2.5 MB (2,560 KiB){name}", mr[0] / 1024, 2.5, " MB"))
    if build + " --network none" in tp:
        checks.append((f"≥ 250 starts/s one at a time{name}", tp[build + " --network none"][1], 250, "/s"))
if sys.argv[4]:
    checks.append(("the static binary < 3 MB (3,000,000 bytes), stripped", int(sys.argv[4]) / 1e6, 3.0, " MB"))
print()
print("| target of issue 15 | measured | |")
print("|---|---:|---|")
for name, v, lim, unit in checks:
    ok = v >= lim if unit == "/s" else v <= lim
    print(f"| {name} | {v:.2f}{unit} | {'met' if ok else 'missed'} |")
PY
{
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -r), $(nproc) cores," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
    "$([ -n "${MINICTR_BENCH_HYBRID:-}" ] && echo '; cgroup v1 hybrid (measured with /sys/fs/cgroup/unified unmounted, for crun)')" \
    "; hyperfine -N, $runs runs, $warmup warm-up; \`benches/start.sh$([ $short = 1 ] && echo ' --short')\`."
} | tee -a "$out/table.md"
rm -rf "$FLOOR_TMP"
"$minictr" network rm >/dev/null 2>&1 || true
