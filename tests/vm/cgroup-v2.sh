#!/usr/bin/env bash
# Run the cgroup tests (tests/ch04_cgroups.rs) on a cgroup v2 kernel, from any Linux host (our CI
# machines are cgroup v1 hybrid; most students' machines are v2), and `minictr doctor` there.
#
#   sudo tests/vm/cgroup-v2.sh            # from the repository root; exits non-zero if a test fails
#   sudo MINICTR_BLESS=1 tests/vm/cgroup-v2.sh   # also rewrite the book's cgroup v2 sessions
#
# After the tests, the guest re-runs the book's sessions marked `<!-- requires: cgroup-v2 -->`
# (tests/sessions.rs; chapters/sessions/) with minictr's defaults; with MINICTR_BLESS=1 it
# blesses them and prints each file on the console, and this script writes them back to
# chapters/sessions/ (read `git diff chapters/sessions` before committing).
#
# How: minictr and the test binary are built as static musl binaries; Debian's kernel is downloaded
# with `apt-get download` and unpacked (nothing is installed in /boot); a busybox initramfs holds the
# binaries (at the same absolute paths as on the host, so the tests' CARGO_BIN_EXE_minictr is valid),
# a busybox rootfs for the containers, and an /init that mounts cgroup2 on /sys/fs/cgroup and runs the
# tests. qemu boots it without KVM (TCG) unless kvm_intel/kvm_amd is loaded. The guest prints a
# marker line with the tests' exit status; qemu's own status says nothing about the guest.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
work=$repo/target/vm
mkdir -p "$work"
say() { printf '[vm] %s\n' "$*" >&2; }

for tool in qemu-system-x86_64 busybox dpkg-deb apt-get gzip mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install -y qemu-system-x86 busybox-static e2fsprogs)" >&2; exit 1; }
done
[ -x /bin/busybox ] && file_bb=/bin/busybox || file_bb=$(command -v busybox)

# 1. Static binaries: minictr and the ch04 test binary.
say "building minictr, tests/ch04_cgroups.rs and tests/sessions.rs for x86_64-unknown-linux-musl"
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
  rustup target add x86_64-unknown-linux-musl
# chapter 9's HTTPS client (ureq with rustls) builds `ring`, which has C and assembly: it needs a C
# compiler for musl (Debian: musl-tools, which installs musl-gcc)
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
  command -v musl-gcc >/dev/null ||
    { echo "$0: musl-gcc is missing (apt-get install -y musl-tools): the crate ring needs a C compiler for musl" >&2; exit 1; }
  export CC_x86_64_unknown_linux_musl=musl-gcc
fi
cargo test --no-run --target x86_64-unknown-linux-musl --test ch04_cgroups --test sessions
built=$(cargo test --no-run --target x86_64-unknown-linux-musl --test ch04_cgroups --test sessions \
  --message-format=json 2>/dev/null)
test_bin=$(echo "$built" | sed -n 's/.*"executable":"\([^"]*ch04_cgroups[^"]*\)".*/\1/p' | tail -n1)
sessions_bin=$(echo "$built" | sed -n 's/.*"executable":"\([^"]*\/sessions-[^"]*\)".*/\1/p' | tail -n1)
minictr_bin=$repo/target/x86_64-unknown-linux-musl/debug/minictr
[ -x "$test_bin" ] && [ -x "$sessions_bin" ] && [ -x "$minictr_bin" ] || { echo "$0: the musl build failed (run the cargo command above to see why)" >&2; exit 1; }

# 2. A Debian kernel, unpacked (cached in target/vm).
kdir=$work/kernel
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
  fi
  [ -n "$pkg" ] || { echo "$0: cannot find Debian's kernel package (is this Debian/Ubuntu with apt sources?)" >&2; exit 1; }
  say "downloading $pkg"
  rm -rf "$work/deb" && mkdir -p "$work/deb"
  (cd "$work/deb" && apt-get download "$pkg" 2>/dev/null) || (cd "$work/deb" && chmod 777 . && apt-get download "$pkg")
  rm -rf "$kdir" && dpkg-deb -x "$work"/deb/*.deb "$kdir"
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

# 3. The initramfs: busybox, the binaries, a container rootfs, /init.
say "packing the initramfs"
img=$work/initramfs
rm -rf "$img"
mkdir -p "$img"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,newroot}
chmod 1777 "$img/tmp"
cp "$file_bb" "$img/bin/busybox"
for a in $("$file_bb" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$img/bin/$a"
done
mkdir -p "$img$(dirname "$minictr_bin")" "$img/tests"
cp "$minictr_bin" "$img$minictr_bin"
cp "$test_bin" "$img/tests/ch04_cgroups"
cp "$sessions_bin" "$img/tests/sessions"
strip "$img$minictr_bin" "$img/tests/ch04_cgroups" "$img/tests/sessions" 2>/dev/null || true
# The sessions, where tests/sessions.rs looks for them (CARGO_MANIFEST_DIR), and an ext4 scratch
# filesystem for the labs (MINICTR_SESSIONS_DIR): a session's ./rootfs is the lower layer of an
# idmapped overlay, and tmpfs cannot be idmapped before Linux 6.3.
mkdir -p "$img$repo/chapters/sessions" "$img$repo/target/x86_64-unknown-linux-musl/tmp"
cp chapters/sessions/*.md "$img$repo/chapters/sessions/"
rm -f "$work/scratch.img"
mkfs.ext4 -q -F -O ^metadata_csum,^has_journal "$work/scratch.img" 64M
cp --sparse=always "$work/scratch.img" "$img/scratch.img"
# setpriv (util-linux, dynamically linked) for the rootless test, with its libraries.
if command -v setpriv >/dev/null; then
  sp=$(command -v setpriv)
  mkdir -p "$img/usr/bin" && cp "$sp" "$img/usr/bin/setpriv"
  for lib in $(ldd "$sp" | grep -o '/[^ ]*'); do
    mkdir -p "$img$(dirname "$lib")" && cp -L "$lib" "$img$lib"
  done
fi
# The containers' rootfs on ext4: chapter 5's overlay idmaps its lower layer, and on this kernel
# (6.1) tmpfs cannot be idmapped (Linux 6.3 added that), ext4 can.
rm -rf "$work/rootfs"
sh rootfs-scripts/busybox.sh "$work/rootfs" --busybox "$file_bb" >/dev/null
rm -f "$work/rootfs.img"
mkfs.ext4 -q -F -O ^metadata_csum,^has_journal -d "$work/rootfs" "$work/rootfs.img" 32M
cp --sparse=always "$work/rootfs.img" "$img/rootfs.img"
mkdir -p "$img/rootfs"
# Kernel modules, in dependency order, loaded by /init: ext4 and loop for the rootfs image, the
# overlay of chapter 5, and chapter 6's bridge, veth and the nf_tables expressions of its NAT table
# (the guest has no nft binary: the quick start below proves minictr needs none).
: >"$img/modules.list"
mkdir -p "$img/lib/modules"
for m in crc32c_generic crc16 mbcache jbd2 ext4 loop overlay llc stp bridge veth nfnetlink libcrc32c \
  nf_tables nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack nf_nat nft_chain_nat nft_masq nft_nat nft_fib \
  nft_fib_ipv4; do
  ko=$(find "$kdir/lib/modules" -name "$m.ko" | head -n1)
  [ -n "$ko" ] || { echo "$0: $m.ko not found in the kernel package" >&2; exit 1; }
  cp "$ko" "$img/lib/modules/" && echo "$m.ko" >>"$img/modules.list"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$img/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$img/etc/group"
cat >"$img/init" <<'EOF'
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin
if [ "$$" = 1 ] && [ ! -e /.stage2 ]; then
  # pivot_root does not work on the initramfs itself: move everything to a tmpfs first.
  mount -t proc proc /proc
  mount -t tmpfs -o size=85% tmpfs /newroot
  for d in /*; do
    case "$d" in /proc|/sys|/dev|/newroot) mkdir -p "/newroot$d" ;; *) cp -a "$d" /newroot/ ;; esac
  done
  touch /newroot/.stage2
  umount /proc
  exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
while read -r ko; do insmod "/lib/modules/$ko"; done </modules.list
mount -o loop /rootfs.img /rootfs
echo "[guest] kernel $(uname -r), /sys/fs/cgroup: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd /tmp
# Every container runs with the default overlay over an idmapped lower: Debian 12's kernel (6.1)
# has no "lowerdir+", so this also proves chapter 5's fallback for kernels before 6.8.
# Chapter 4's tests run here with minictr's defaults, the bridge network included, as on the host
# (every test thread makes a network namespace of its own).
MINICTR_TEST_ROOTFS=/rootfs RUST_BACKTRACE=1 \
  /tests/ch04_cgroups --test-threads=2
status=$?
# What chapter 4 shows for v2: the files written and the same --stats fields.
echo "[guest] demo: minictr run --explain --stats -m 64M --cpus 0.5 --cpu-shares 512 --pids-limit 32"
MINICTR_DEMO_BIN --explain --stats -m 64M --cpus 0.5 --cpu-shares 512 --pids-limit 32 /rootfs \
  sh -c 'cat /proc/self/cgroup; timeout 1 sh -c "while :; do :; done"; true' 2>&1 | grep -E '^\[ch04|^[^[]'
# The preflight on this kernel: `minictr doctor` finds what chapters 3-6 need, finds by trying that
# 6.1 takes no overlay layer by descriptor, says no FAIL and exits 0; with user namespaces switched
# off by their sysctl it says FAIL with the fix and exits 1.
echo "[guest] minictr doctor /rootfs"
MINICTR_BIN doctor /rootfs >/tmp/doctor.out
doctor_rc=$?
cat /tmp/doctor.out
for want in '^OK   user namespaces: yes' '^OK   idmapped mounts: on /rootfs (ext4): yes' \
  '^OK   overlayfs over idmapped lower layers: yes' '^OK   overlayfs layers by file descriptor: no' \
  '^OK   cgroups: v2' '^OK   bridge and veth: yes' '^OK   netlink NETLINK_NETFILTER'; do
  grep -q "$want" /tmp/doctor.out || { echo "[guest] doctor FAILED: no line $want"; status=1; }
done
if [ "$doctor_rc" != 0 ] || grep -q '^FAIL' /tmp/doctor.out; then
  echo "[guest] doctor FAILED: exit $doctor_rc on a host where minictr run works"
  status=1
fi
# The README's quick start with every default — the bridge network, its NAT table made over
# nf_tables netlink — on a machine that has no nft binary (nor any other program but busybox).
echo "[guest] quick start: minictr run /rootfs /bin/sh (no nft binary here)"
if command -v nft >/dev/null; then echo "[guest] quick start FAILED: this guest has nft"; status=1; fi
MINICTR_BIN run /rootfs /bin/sh -c 'echo pid $$; ip -4 -o addr show eth0' >/tmp/quick.out 2>&1
quick_rc=$?
cat /tmp/quick.out
if [ "$quick_rc" != 0 ] || ! grep -q '^pid 1$' /tmp/quick.out || ! grep -q 'inet 10\.' /tmp/quick.out; then
  echo "[guest] quick start FAILED: exit $quick_rc"
  status=1
fi
echo "[guest] minictr doctor /rootfs, with user.max_user_namespaces=0"
max_userns=$(cat /proc/sys/user/max_user_namespaces)
echo 0 >/proc/sys/user/max_user_namespaces
MINICTR_BIN doctor /rootfs >/tmp/doctor.out
doctor_rc=$?
echo "$max_userns" >/proc/sys/user/max_user_namespaces
cat /tmp/doctor.out
if [ "$doctor_rc" != 1 ] || ! grep -q '^FAIL user namespaces: .*(fix: user.max_user_namespaces is 0' /tmp/doctor.out; then
  echo "[guest] doctor FAILED: exit $doctor_rc, no FAIL line naming user.max_user_namespaces"
  status=1
fi
# The book's cgroup v2 sessions (chapters 1 and 4), with minictr's defaults.
echo "[guest] the book's sessions marked requires: cgroup-v2"
mkdir -p /sessions && mount -o loop /scratch.img /sessions
MINICTR_SESSIONS_DIR=/sessions MINICTR_TEST_ROOTFS=/rootfs MINICTR_SESSIONS_REQUIRES=cgroup-v2 \
  MINICTR_BLESS=SESSIONS_BLESS /tests/sessions --exact sessions --nocapture || status=1
if [ SESSIONS_BLESS = 1 ]; then
  for f in SESSIONS_REPO/chapters/sessions/*.md; do
    grep -q 'requires:.*cgroup-v2' "$f" || continue
    echo "=== SESSION-FILE ${f##*/}"
    cat "$f"
    echo "=== SESSION-END"
  done
fi
echo "MINICTR-VM-TESTS-EXIT=$status"
sync
poweroff -f
EOF
sed -i "s|MINICTR_DEMO_BIN|$minictr_bin run|" "$img/init"
sed -i "s|MINICTR_BIN|$minictr_bin|" "$img/init"
sed -i "s|SESSIONS_REPO|$repo|g; s|SESSIONS_BLESS|${MINICTR_BLESS:-0}|g" "$img/init"
chmod +x "$img/init"
(cd "$img" && find . | "$file_bb" cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"

# 4. Boot. TCG unless the host really has KVM.
accel="-accel tcg,thread=multi -cpu max"
if [ -w /dev/kvm ] && grep -qsE '^kvm_(intel|amd) ' /proc/modules; then accel="-accel kvm -cpu host"; fi
say "booting $(basename "$vmlinuz") ($accel)"
log=$work/console.log
# A guest that never reports (seen once here: a TCG boot that stalled with no kernel output on a
# loaded host) is booted once more; a guest whose tests failed is not.
for attempt in 1 2; do
  # shellcheck disable=SC2086
  timeout 600 qemu-system-x86_64 $accel -m 1024M -smp 2 \
    -kernel "$vmlinuz" -initrd "$work/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 oops=panic" \
    -nographic -no-reboot -nodefaults -serial stdio -monitor none </dev/null | tee "$log" || true
  status=$(sed -n 's/.*MINICTR-VM-TESTS-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -n1)
  [ -n "$status" ] && break
  say "the guest did not finish (attempt $attempt)"
done
if [ "${MINICTR_BLESS:-0}" = 1 ]; then
  # the blessed sessions, from the console back into chapters/sessions/
  tr -d '\r' <"$log" | awk -v dir="$repo/chapters/sessions" '
    /^=== SESSION-FILE / { out = dir "/" $3; printf "" > out; next }
    /^=== SESSION-END/ { close(out); out = ""; next }
    out != "" { print >> out }'
  say "wrote the blessed cgroup v2 sessions back (git diff chapters/sessions)"
fi
if [ "$status" = 0 ]; then
  say "cgroup v2 tests passed (console: $log)"
  exit 0
fi
say "cgroup v2 tests FAILED (exit status ${status:-none: the guest did not finish}; console: $log)"
exit 1
