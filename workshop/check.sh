#!/usr/bin/env bash
# workshop/check.sh N — check chapter N's exercises in this copy of the project: builds it, runs
# chapter N's tests of tests/workshop.rs with every later stage off (MINICTR_TEST_UNTIL=N, so
# minictr runs as `run --until N`), and prints PASS or FAIL per exercise with what went wrong and
# where the chapter explains it. Exit 0 when every exercise of chapter N passes. Run it as root.
#
# Which test checks which exercise: workshop/exercises.tsv. Containers get a runtime and data
# directory of their own (MINICTR_RUN_DIR, MINICTR_DATA_DIR; set them to choose others), which is
# checked empty afterwards: a failing check leaves nothing running and no layer kept.
#
# For workshop/prove.sh: WORKSHOP_TEST_EXE (an already built tests/workshop.rs binary) and
# MINICTR_TEST_BIN (the minictr to test) skip the build.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
n=${1:-}
case "$n" in [1-8]) ;; *) echo "usage: workshop/check.sh N   (N = 1..8, the chapter to check)" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
  echo "workshop/check.sh: run as root (sudo): the checks start real containers" >&2
  exit 2
fi
nn=$(printf '%02d' "$n")
export MINICTR_RUN_DIR=${MINICTR_RUN_DIR:-/run/minictr-workshop}
export MINICTR_DATA_DIR=${MINICTR_DATA_DIR:-/var/lib/minictr-workshop}
export MINICTR_TEST_UNTIL=$n RUST_BACKTRACE=0
log=$(mktemp /tmp/minictr-check.XXXXXX)
trap 'rm -f "$log"' EXIT

if [ -n "${WORKSHOP_TEST_EXE:-}" ]; then
  "$WORKSHOP_TEST_EXE" "ch${nn}_" --test-threads 2 >"$log" 2>&1
else
  (cd "$root" && cargo build --quiet && cargo test --quiet --test workshop --no-run) >"$log" 2>&1 || {
    echo "chapter $n: the project does not build:" >&2
    grep -E '^(error|warning)' -A6 "$log" | head -40 >&2
    exit 1
  }
  (cd "$root" && cargo test --test workshop -- "ch${nn}_" --test-threads 2) >"$log" 2>&1
fi

fail=0
while IFS=$'\t' read -r ch prefix exercise function text; do
  case "$ch" in '#'*|'') continue ;; esac
  [ "$ch" = "$n" ] || continue
  ran=$(grep -cE "^test ${prefix}[a-z0-9_]* \.\.\. (ok|FAILED)" "$log")
  bad=$(grep -E "^test ${prefix}[a-z0-9_]* \.\.\. FAILED" "$log" | awk '{print $2}')
  if [ "$ran" = 0 ]; then
    printf 'FAIL  %s (%s): no test ran\n' "$exercise" "$function"; fail=1
  elif [ -n "$bad" ]; then
    printf 'FAIL  %s (%s)\n' "$exercise" "$function"; fail=1
    for t in $bad; do
      # The assertion's message: the line after "panicked at", up to the first blank line.
      msg=$(awk -v t="$t" '$0 ~ "^---- "t" stdout ----" {on=1; next} on && /^---- / {exit} on && seen && /^$/ {exit} on && seen {print} on && /panicked at/ {seen=1}' "$log" | head -4)
      printf '      %s: %s\n' "$t" "${msg:-see the output of (cargo test --test workshop -- $t)}"
    done
    printf '      hint: %s explains it; the EXERCISE comment in %s says what the body does\n' "$text" "$function"
  else
    printf 'PASS  %s (%s)\n' "$exercise" "$function"
  fi
done <"$here/exercises.tsv"

# minictr selftest's own checks of chapter N (each container run with --until N), on the rootfs the
# tests built. (WORKSHOP_SELFTEST=0 skips them: prove.sh runs them only on the solutions.)
bin=${MINICTR_TEST_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/minictr}
rootfs=${MINICTR_TEST_ROOTFS:-${CARGO_TARGET_DIR:-$root/target}/tmp/busybox-rootfs}
if [ "${WORKSHOP_SELFTEST:-1}" != 0 ]; then
  # In a network namespace of its own (unshare -n keeps /sys/fs/cgroup visible): from chapter 6 on
  # the containers get the bridge network, and the lab machine's own network stays as it is.
  if unshare -n sh -c 'ip link set lo up && exec "$0" selftest --chapter "$1" "$2"' \
    "$bin" "$n" "$rootfs" >"$log" 2>&1; then
    printf 'PASS  minictr selftest --chapter %s (%s checks)\n' "$n" "$(grep -c '^PASS' "$log")"
  else
    printf 'FAIL  minictr selftest --chapter %s\n' "$n"; fail=1
    grep -E '^FAIL|^minictr:' "$log" | sed 's/^/      /' | cut -c1-300
  fi
fi

# Nothing left behind, also when a check failed (the tests remove what they start; a crashed
# minictr's leftovers are removed by the next minictr command).
MINICTR_UNTIL= "$bin" ps -a >/dev/null 2>&1 || true
if [ -d "$MINICTR_RUN_DIR" ] && [ -n "$(ls -A "$MINICTR_RUN_DIR" | grep -vxE 'network|probes.json|.*\.lock' || true)" ]; then
  echo "LEFT  runtime directories in $MINICTR_RUN_DIR: $(ls "$MINICTR_RUN_DIR" | tr '\n' ' ')"
  fail=1
fi
if [ "$fail" = 0 ]; then echo "chapter $n: every exercise passes"; else echo "chapter $n: not yet"; fi
exit "$fail"
