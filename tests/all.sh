#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Run it as root from a clone:
#
#   sudo env "PATH=$PATH" tests/all.sh
#
# It installs what the tests need (Debian/Ubuntu packages and a pinned mdbook), then runs: format and
# lint checks, the chapters' code includes and book build, unit and integration tests as root, the
# core tests again as an unprivileged user, and `minictr selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "tests/all.sh: run as root (sudo env \"PATH=\$PATH\" tests/all.sh): the tests start real containers" >&2
  exit 1
fi

step "install what the tests need"
need_pkgs=""
for p in busybox-static uidmap iproute2 nftables tmux procps util-linux; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_pkgs
fi
MDBOOK_VERSION=0.5.4
if ! mdbook --version 2>/dev/null | grep -q "v$MDBOOK_VERSION"; then
  cargo install mdbook --locked --version "$MDBOOK_VERSION"
fi

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "chapters: every {{#include}} points at a file and an anchor that exist"
bash tests/check-includes.sh
mdbook build chapters

step "unit and integration tests (as root)"
cargo test --no-fail-fast 2>&1 | tee target/test-root.log

# --- docs: the root filesystem scripts (no network needed; debian.sh is not run here) ---
step "rootfs-scripts: busybox.sh and alpine.sh (local tarball and a local CDN)"
bash tests/rootfs-scripts.sh
