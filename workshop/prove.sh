#!/usr/bin/env bash
# workshop/prove.sh — the proof that the workshop levels work (tests/all.sh runs it, as root):
# for every chapter N from 1 to 8,
#   - level N (workshop/level.sh N) builds, and chapter N's check FAILS on it (the exercises are
#     real and a test catches each missing one);
#   - chapters 1..N-1 pass on it (no level depends on a later chapter);
#   - level N+1 — level N with chapter N's bodies written, i.e. the solution — passes chapter N;
#   - every mistake of workshop/mistakes/chNN-*.sed applied to that solution makes chapter N's check
#     fail (wrong answers are caught, not only missing ones).
# One copy is regenerated in place and one target directory is shared, so each variant costs an
# incremental build; the tests are built once and run against each variant's minictr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ "$(id -u)" = 0 ] || { echo "workshop/prove.sh: run as root" >&2; exit 2; }
t0=$(date +%s)
work=$(mktemp -d /tmp/minictr-prove.XXXXXX)
export CARGO_TARGET_DIR=${PROVE_TARGET_DIR:-$root/target/prove}
export MINICTR_RUN_DIR=/run/minictr-prove-$$ MINICTR_DATA_DIR=/var/lib/minictr-prove-$$
export CARGO_TERM_COLOR=never
cleanup() {
  rm -rf "$work"
  rm -rf "$MINICTR_RUN_DIR" "$MINICTR_DATA_DIR"
}
trap cleanup EXIT
copy=$work/copy
mkdir -p "$copy"
failures=0
say() { printf '[%4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
bad() { say "PROOF FAILED: $*"; failures=$((failures + 1)); }

# The tests, built once from this tree (they only start the minictr MINICTR_TEST_BIN names).
exe=$(cd "$root" && cargo test --test workshop --no-run 2>&1 | sed -n 's/.*Executable tests\/workshop.rs (\(.*\))/\1/p')
[ -x "$exe" ] || { echo "prove.sh: could not build tests/workshop.rs" >&2; exit 1; }
export WORKSHOP_TEST_EXE=$exe

build() { # build the copy; the binary is copied to $1
  if ! (cd "$copy" && cargo build --quiet 2>"$work/build.log"); then
    cat "$work/build.log" >&2
    return 1
  fi
  # A level must build without warnings; a mistake may leave an import unused.
  if [ "${3:-}" != any ] && grep -q '^warning' "$work/build.log"; then
    grep -A5 '^warning' "$work/build.log" | head -20
    bad "$2 builds with warnings"
  fi
  cp "$CARGO_TARGET_DIR/debug/minictr" "$1"
}
check() { # check N BIN [selftest] → output in $work/check.log, exit status of check.sh
  # (selftest's chapter checks only where a check must pass on a solution: they cost seconds)
  WORKSHOP_SELFTEST=$([ "${3:-}" = selftest ] && echo 1 || echo 0) MINICTR_TEST_BIN=$2 \
    "$root/workshop/check.sh" "$1" >"$work/check.log" 2>&1
}

for level in 1 2 3 4 5 6 7 8 9; do
  "$here/level.sh" "$level" "$copy" 2>/dev/null
  bin=$work/minictr-$level
  if ! build "$bin" "level $level"; then bad "level $level does not build"; continue; fi
  say "level $level builds"
  if [ "$level" -le 8 ]; then
    if check "$level" "$bin"; then
      bad "chapter $level's check passes on the untouched level $level"
    else
      say "chapter $level's check fails on level $level, as it must: $(grep -c '^FAIL' "$work/check.log") exercise(s) FAIL"
    fi
  fi
  for k in $(seq 1 $((level - 1))); do
    if check "$k" "$bin" $([ "$k" = $((level - 1)) ] && echo selftest); then
      [ "$k" = $((level - 1)) ] && say "chapter $k passes on level $level (= chapter $k's solution)"
    else
      bad "chapter $k fails on level $level:"; cat "$work/check.log"
    fi
  done
  [ "$level" -ge 2 ] || continue
  solved=$((level - 1))
  for m in "$here"/mistakes/ch0"$solved"-*.sed; do
    [ -e "$m" ] || continue
    name=$(basename "$m" .sed)
    "$here/mistake.sh" "$m" "$copy" || { bad "$name does not apply"; continue; }
    if ! build "$work/minictr-mistake" "$name" any; then bad "$name does not build"
    elif check "$solved" "$work/minictr-mistake"; then
      bad "mistake $name passes chapter $solved's check"
    else
      say "mistake $name caught: $(grep -A1 '^FAIL' "$work/check.log" | grep -v '^--' | sed -n 2p | sed 's/^ *//' | cut -c1-150)"
    fi
    "$here/level.sh" "$level" "$copy" 2>/dev/null # undo it
  done
done
say "done: $failures failure(s)"
[ "$failures" = 0 ]
