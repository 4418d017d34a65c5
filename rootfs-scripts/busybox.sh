#!/bin/sh
# Build a minimal root filesystem from a static busybox: the offline default of minictr's README and tests.
#
#   rootfs-scripts/busybox.sh DIR [--busybox PATH] [--force]
#
# Without --busybox it uses Debian's busybox-static (/bin/busybox), installing it with apt-get when missing.
# DIR must be empty or missing unless --force is given.
set -eu

usage() { echo "usage: $0 DIR [--busybox PATH] [--force]" >&2; exit 2; }
dir=""; bb=""; force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --busybox) [ $# -ge 2 ] || usage; bb=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) [ -z "$dir" ] || usage; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage

if [ -z "$bb" ]; then
  bb=/bin/busybox
  if ! [ -x "$bb" ]; then
    echo "$0: $bb missing: installing Debian's busybox-static" >&2
    apt-get install -y busybox-static >&2 || { echo "$0: apt-get install busybox-static failed; pass --busybox PATH to a static busybox" >&2; exit 1; }
  fi
fi
[ -x "$bb" ] || { echo "$0: $bb is not an executable" >&2; exit 1; }
if ldd "$bb" >/dev/null 2>&1; then
  echo "$0: $bb is dynamically linked; the rootfs has no libc: use a static busybox (apt-get install busybox-static)" >&2
  exit 1
fi

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] && [ "$force" != 1 ]; then
  echo "$0: $dir is not empty; pass --force to build into it anyway" >&2
  exit 1
fi

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root home proc sys dev tmp var/tmp run mnt
chmod 1777 tmp var/tmp
chmod 700 root
cp "$bb" bin/busybox
chmod 755 bin/busybox
# One link per applet, relative so they stay valid inside the container (skip "busybox" itself).
"$bb" --list-full | while read -r applet; do
  case "$applet" in */busybox|busybox) continue ;; esac
  [ -e "$applet" ] && continue
  d=$(dirname "$applet")
  mkdir -p "$d"
  case "$d" in
    bin) ln -s busybox "$applet" ;;
    sbin) ln -s ../bin/busybox "$applet" ;;
    usr/bin|usr/sbin) ln -s ../../bin/busybox "$applet" ;;
  esac
done
[ -e bin/sh ] || ln -s busybox bin/sh

cat > etc/passwd <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > etc/group <<'GR'
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:
nogroup:x:65534:
GR
echo minictr > etc/hostname
cat > etc/hosts <<'HO'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HO
echo "Welcome to a minictr busybox container." > etc/motd
chmod 644 etc/passwd etc/group etc/hostname etc/hosts etc/motd

n=$(find . -type l | wc -l)
echo "built a busybox rootfs in $dir: $("$bb" | head -1 | cut -d' ' -f1-2), $n applet links, /etc/passwd, /etc/group, /etc/hosts, /tmp 1777"
