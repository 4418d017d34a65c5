#!/usr/bin/env bash
# Tests of rootfs-scripts/ that need no network: busybox.sh and alpine.sh's local-tarball path and
# its download path against a local "CDN" (ALPINE_CDN=file://…). debian.sh needs a Debian mirror and
# is not run here. Each check runs the real script and looks at what it built or refused.
#
#   bash tests/rootfs-scripts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t=$(mktemp -d)
# Searchable by all: container root (host uid 100000) must be able to reach the rootfs path.
chmod 755 "$t"
trap 'rm -rf "$t"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
expect_fail() { # DESCRIPTION MESSAGE-PATTERN COMMAND…
  local what=$1 pat=$2; shift 2
  local err
  if err=$("$@" 2>&1 >/dev/null); then bad "$what: succeeded, should have failed"
  elif ! grep -q -- "$pat" <<<"$err"; then bad "$what: error does not say \"$pat\": $err"
  else ok "$what"; fi
}

# busybox.sh: builds, refuses a non-empty directory, --force builds anyway.
rootfs-scripts/busybox.sh "$t/bb" >/dev/null
[ -x "$t/bb/bin/busybox" ] && [ -L "$t/bb/bin/sh" ] && grep -q '^root:x:0:0:' "$t/bb/etc/passwd" \
  && ok "busybox.sh builds a rootfs" || bad "busybox.sh: rootfs incomplete"
expect_fail "busybox.sh refuses a non-empty directory" "not empty" rootfs-scripts/busybox.sh "$t/bb"
rootfs-scripts/busybox.sh "$t/bb" --force >/dev/null && ok "busybox.sh --force" || bad "busybox.sh --force failed"

# A fake minirootfs: the busybox rootfs plus /etc/alpine-release.
echo 3.99.0-test > "$t/bb/etc/alpine-release"
arch=$(uname -m)
tarball=$t/alpine-minirootfs-3.99.0-$arch.tar.gz
tar -czf "$tarball" -C "$t/bb" .
sum=$(sha256sum "$tarball" | cut -d' ' -f1)

# Local tarball without .sha256: builds, warns.
out=$(rootfs-scripts/alpine.sh "$t/a1" "$tarball" 2>&1)
[ "$(cat "$t/a1/etc/alpine-release")" = 3.99.0-test ] && grep -q "NOT checked" <<<"$out" \
  && ok "alpine.sh TARBALL without .sha256 builds and warns" || bad "alpine.sh unchecked tarball: $out"
expect_fail "alpine.sh refuses a non-empty directory" "not empty" rootfs-scripts/alpine.sh "$t/a1" "$tarball"

# With a matching .sha256: builds, says checked.
echo "$sum  $(basename "$tarball")" > "$tarball.sha256"
out=$(rootfs-scripts/alpine.sh "$t/a2" "$tarball" 2>&1)
grep -q "sha256 checked" <<<"$out" && [ -d "$t/a2/proc" ] \
  && ok "alpine.sh TARBALL with a matching .sha256" || bad "alpine.sh checked tarball: $out"

# With a wrong .sha256: refuses, creates nothing.
echo "0000  $(basename "$tarball")" > "$tarball.sha256"
expect_fail "alpine.sh refuses a checksum mismatch" "checksum mismatch" rootfs-scripts/alpine.sh "$t/a3" "$tarball"
[ ! -e "$t/a3" ] && ok "nothing created after a mismatch" || bad "alpine.sh created $t/a3 after a mismatch"

# A tarball whose /proc is a symlink: refused.
mkdir -p "$t/evil" && cp -a "$t/bb/." "$t/evil/" && rmdir "$t/evil/proc" && ln -s / "$t/evil/proc"
tar -czf "$t/evil.tar.gz" -C "$t/evil" .
expect_fail "alpine.sh refuses a tarball whose /proc is a symlink" "not a directory" rootfs-scripts/alpine.sh "$t/a4" "$t/evil.tar.gz"

# The download path against a local CDN laid out like dl-cdn.alpinelinux.org.
case "$arch" in x86_64|aarch64|s390x|ppc64le|riscv64|loongarch64) aarch=$arch ;; *) aarch="" ;; esac
if [ -n "$aarch" ] && command -v curl >/dev/null; then
  rel=$t/cdn/latest-stable/releases/$aarch
  mkdir -p "$rel"
  cp "$tarball" "$rel/"
  yaml() { # SHA
    cat <<EOF
---
-
  title: "Standard"
  desc: |
    file: decoy.iso
  flavor: alpine-standard
  file: alpine-standard-3.99.0-$aarch.iso
  sha256: 1111
-
  title: "Mini root filesystem"
  desc: |
    Minimal root filesystem.
  arch: $aarch
  version: 3.99.0
  flavor: alpine-minirootfs
  file: $(basename "$tarball")
  sha256: $1
  sha512: 2222
EOF
  }
  yaml "$sum" > "$rel/latest-releases.yaml"
  out=$(ALPINE_CDN="file://$t/cdn" rootfs-scripts/alpine.sh "$t/d1" 2>&1)
  [ "$(cat "$t/d1/etc/alpine-release" 2>/dev/null)" = 3.99.0-test ] && grep -q "matches latest-releases.yaml" <<<"$out" \
    && ok "alpine.sh download: finds the minirootfs in latest-releases.yaml, checks its sha256" || bad "alpine.sh download: $out"
  yaml deadbeef > "$rel/latest-releases.yaml"
  expect_fail "alpine.sh download refuses a sha256 mismatch" "checksum mismatch" env ALPINE_CDN="file://$t/cdn" rootfs-scripts/alpine.sh "$t/d2"
else
  echo "skip alpine.sh download path (architecture $arch or no curl)"
fi

# The result runs under minictr, when it is built and we are root.
bin=""
for b in "$repo/target/release/minictr" "$repo/target/debug/minictr"; do [ -x "$b" ] && { bin=$b; break; }; done
if [ "$(id -u)" = 0 ] && [ -n "$bin" ]; then
  got=$("$bin" run --network none "$t/a2" cat /etc/alpine-release 2>&1 || true)
  [ "$got" = 3.99.0-test ] && ok "minictr runs the alpine.sh rootfs" || bad "minictr on the alpine.sh rootfs: $got"
fi

[ "$fails" = 0 ] && echo "rootfs-scripts: all checks passed" || { echo "rootfs-scripts: $fails check(s) failed"; exit 1; }
