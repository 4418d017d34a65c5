#!/usr/bin/env bash
# A statically linked, stripped minictr that runs on any x86-64 Linux machine, and a smoke test of it.
#
#   sudo env "PATH=$PATH" benches/static.sh [--no-smoke] [--no-pie]
#

# A static PIE by default, so the kernel loads the executable's own code at a random address (ASLR)
# like every other program on the machine — minictr runs as root and parses what registries send.
# runc's Makefile builds its static release binaries the same way ("Enable static PIE executables on
# supported platforms": -buildmode=pie with -static-pie on amd64 and arm64). --no-pie links at a
# fixed address (-C relocation-model=static) instead: no self-relocation at start (5,000 relative
# relocations, the pages of .data.rel.ro written: ~250 KB less peak RSS, 2.69 → 2.44 MB for
# `run --network none`, measured before RELR below), at the price of that randomisation. The
# benchmark measures the default.
#
# Uses the x86_64-unknown-linux-musl target when rustup has it installed (and musl-gcc exists), else static glibc
# (RUSTFLAGS=-C target-feature=+crt-static on x86_64-unknown-linux-gnu). Cargo profile `static`
# (release, stripped, ring built for size), its relocations packed (RELR) and, with musl, no unwind
# tables: 2,655,496 bytes with musl (3,486,912 before issue 15's third round), about 3.7 MiB with
# glibc, which keeps its unwind tables (Cargo.toml and benches/FINDINGS.md, branch size). Prints
# the binary's path and size, then runs it: /bin/true, echo and an exit status with --network none,
# and a bridge run inside a network namespace made for the purpose. With glibc it also checks that
# no NSS module is loaded at run time (a static glibc binary can't load them safely): minictr reads
# /etc/passwd itself.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=1 pie=1
for a in "$@"; do
  case $a in
    --no-smoke) smoke=0 ;;
    --no-pie) pie=0 ;;
    *) echo "usage: $0 [--no-smoke] [--no-pie]" >&2; exit 2 ;;
  esac
done
flags="-C relocation-model=static"
[ $pie = 1 ] && flags=""
# A static PIE relocates itself at start: its ~5,000 relative relocations packed as RELR (a bitmap,
# 8 bytes per 64 pointers; musl 1.2.4 and glibc 2.36 apply them) instead of 24-byte RELA entries,
# which took 120 KB of the file and of its first mapped pages. Without any: --no-pie.
flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"

# musl needs a C compiler for it too (the crate ring compiles C): Debian's musl-tools (musl-gcc).
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl &&
  command -v musl-gcc >/dev/null; then
  target=x86_64-unknown-linux-musl
  # No unwind tables in the output (benches/no-eh-frame.ld says why). musl only: with static glibc,
  # libgcc's unwinder aborts the process when a backtrace finds none (anyhow takes one for every
  # error when RUST_BACKTRACE is set); musl's (LLVM libunwind) reports "unsupported" and goes on.
  flags="$flags -C link-arg=-Wl,-T,$PWD/benches/no-eh-frame.ld"
  CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc} RUSTFLAGS="${RUSTFLAGS:-} $flags" \
    cargo build --profile static --target "$target" >&2
else
  target=x86_64-unknown-linux-gnu
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static $flags" cargo build --profile static --target "$target" >&2
fi
bin=${CARGO_TARGET_DIR:-target}/$target/static/minictr
size=$(stat -c %s "$bin")
echo "static minictr: $bin, $target, $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB)"
file "$bin" 2>/dev/null | sed 's/^[^:]*: /  /' || true
[ "$size" -lt 3000000 ] || echo "static.sh: note: larger than the 3 MB target (issue 15)" >&2
[ $smoke = 1 ] || exit 0

[ "$(id -u)" = 0 ] || { echo "$0: the smoke test runs containers: run as root (or pass --no-smoke)" >&2; exit 1; }
work=$(mktemp -d /tmp/minictr-static.XXXXXX)
ns=mcstatic-$$
cleanup() {
  ip netns exec "$ns" "$bin" network rm >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work" "/run/minictr-static-$$" "/var/lib/minictr-static-$$"
}
trap cleanup EXIT
export MINICTR_RUN_DIR=/run/minictr-static-$$ MINICTR_DATA_DIR=/var/lib/minictr-static-$$
sh rootfs-scripts/busybox.sh "$work/rootfs" >/dev/null
fail() { echo "static.sh: smoke test FAILED: $*" >&2; exit 1; }

"$bin" run --network none "$work/rootfs" /bin/true || fail "/bin/true exited $?"
got=$("$bin" run --network none "$work/rootfs" echo hello from static) || fail "echo exited $?"
[ "$got" = "hello from static" ] || fail "echo printed '$got'"
rc=0; "$bin" run --network none "$work/rootfs" sh -c 'exit 3' || rc=$?
[ $rc = 3 ] || fail "exit 3 came back as $rc"
if command -v strace >/dev/null && [ $target = x86_64-unknown-linux-gnu ]; then
  strace -f -e trace=openat,connect -o "$work/trace" "$bin" run --network none "$work/rootfs" /bin/true
  ! grep -E 'nsswitch.conf|libnss_|nscd' "$work/trace" || fail "NSS used at run time (see above)"
fi
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# nsenter, not `ip netns exec`: the latter remounts /sys and hides /sys/fs/cgroup.
addr=$(nsenter --net="/run/netns/$ns" "$bin" run "$work/rootfs" sh -c 'ip -4 -o addr show eth0') ||
  fail "bridge run exited $?"
echo "$addr" | grep -q 'inet ' || fail "no IPv4 address on the container's eth0: '$addr'"
echo "smoke test passed: /bin/true, echo, exit status, bridge network ($(echo "$addr" | awk '{print $4}'))"
