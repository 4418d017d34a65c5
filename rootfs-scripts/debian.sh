#!/bin/sh
# Build a minimal Debian root filesystem (about 150–200 MB) with mmdebstrap or debootstrap, variant minbase.
#
#   rootfs-scripts/debian.sh DIR [--suite SUITE] [--mirror URL] [--force]
#
# SUITE defaults to this machine's Debian release (VERSION_CODENAME of /etc/os-release), else "stable".
# URL defaults to the Debian mirror this machine's apt already uses (/etc/apt/sources.list and
# /etc/apt/sources.list.d/*), else http://deb.debian.org/debian.
# Uses mmdebstrap when installed, else debootstrap; installs debootstrap with apt-get when neither is.
# DIR must be empty or missing unless --force is given. Run as root.
set -eu

usage() { echo "usage: $0 DIR [--suite SUITE] [--mirror URL] [--force]" >&2; exit 2; }
die() { echo "$0: $*" >&2; exit 1; }

dir=""; suite=""; mirror=""; force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) [ $# -ge 2 ] || usage; suite=$2; shift 2 ;;
    --mirror) [ $# -ge 2 ] || usage; mirror=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) [ -z "$dir" ] || usage; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage
[ "$(id -u)" = 0 ] || die "run as root (sudo $0 …): debootstrap creates device nodes and files of many owners"

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] && [ "$force" != 1 ]; then
  die "$dir is not empty; pass --force to build into it anyway"
fi

if [ -z "$suite" ]; then
  suite=$( . /etc/os-release 2>/dev/null; [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}" || true)
  [ -n "$suite" ] || suite=stable
fi

# The machine's own Debian mirror: the first "…/debian" URI of a deb line (one-line or deb822 format).
if [ -z "$mirror" ]; then
  mirror=$(
    {
      [ -f /etc/apt/sources.list ] && awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' /etc/apt/sources.list
      for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
      done
      for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
      done
    } 2>/dev/null | grep -E '/debian/?$' | head -n 1 || true
  )
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

if command -v mmdebstrap >/dev/null; then
  tool=mmdebstrap
elif command -v debootstrap >/dev/null; then
  tool=debootstrap
else
  echo "$0: neither mmdebstrap nor debootstrap is installed: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2 \
    || die "apt-get install debootstrap failed; install mmdebstrap or debootstrap yourself"
  tool=debootstrap
fi

mkdir -p "$dir"
echo "$0: $tool --variant=minbase $suite $dir $mirror" >&2
case "$tool" in
  mmdebstrap) mmdebstrap --variant=minbase "$suite" "$dir" "$mirror" >&2 ;;
  debootstrap) debootstrap --variant=minbase "$suite" "$dir" "$mirror" >&2 ;;
esac || die "$tool failed (see above); check the suite name and that $mirror is reachable"

# minictr mounts on these: they must be real directories.
for d in proc sys dev; do
  if [ -L "$dir/$d" ]; then die "$dir/$d is a symlink: refusing it"; fi
  mkdir -p "$dir/$d"
done

version=$(cat "$dir/etc/debian_version" 2>/dev/null || echo "unknown version")
size=$(du -sh "$dir" 2>/dev/null | cut -f1)
echo "built a Debian rootfs in $(cd "$dir" && pwd): Debian $suite ($version), variant minbase, $size, by $tool from $mirror"
