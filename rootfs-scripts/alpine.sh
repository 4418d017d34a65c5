#!/bin/sh
# Build a root filesystem from Alpine Linux's "mini root filesystem" (about 3 MB, musl + busybox + apk).
#
#   rootfs-scripts/alpine.sh DIR [TARBALL] [--force]
#
# Without TARBALL it downloads the latest stable minirootfs for this machine's architecture from the
# official CDN (https://dl-cdn.alpinelinux.org/alpine/latest-stable/releases/ARCH/), finding the file
# name in latest-releases.yaml, and checks it against the sha256 published there.
# With TARBALL (a local alpine-minirootfs-*.tar.gz) it checks it against TARBALL.sha256 when that file
# exists beside it, and warns when it does not.
# DIR must be empty or missing unless --force is given. Run as root to keep the files' owners.
# ALPINE_CDN=URL replaces https://dl-cdn.alpinelinux.org/alpine (a mirror, or file:///path for a local copy).
set -eu

CDN=${ALPINE_CDN:-https://dl-cdn.alpinelinux.org/alpine}

usage() { echo "usage: $0 DIR [TARBALL] [--force]" >&2; exit 2; }
die() { echo "$0: $*" >&2; exit 1; }

dir=""; tarball=""; force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1; shift ;;
    -h|--help) usage ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) if [ -z "$dir" ]; then dir=$1; elif [ -z "$tarball" ]; then tarball=$1; else usage; fi; shift ;;
  esac
done
[ -n "$dir" ] || usage

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] && [ "$force" != 1 ]; then
  die "$dir is not empty; pass --force to build into it anyway"
fi
command -v sha256sum >/dev/null || die "sha256sum is missing (coreutils)"

# Alpine's names for `uname -m`.
alpine_arch() {
  case "$(uname -m)" in
    x86_64|amd64) echo x86_64 ;;
    aarch64|arm64) echo aarch64 ;;
    armv7l|armv7*) echo armv7 ;;
    armv6l|armv6*) echo armhf ;;
    i386|i486|i586|i686) echo x86 ;;
    ppc64le) echo ppc64le ;;
    s390x) echo s390x ;;
    riscv64) echo riscv64 ;;
    loongarch64) echo loongarch64 ;;
    *) die "no Alpine minirootfs is published for architecture $(uname -m); pass a TARBALL" ;;
  esac
}

fetch() { # URL FILE
  if command -v curl >/dev/null; then curl -fsSL --retry 2 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -q -O "$2" "$1"
  else die "neither curl nor wget is installed (apt-get install -y curl)"; fi
}

tmp=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

if [ -z "$tarball" ]; then
  arch=$(alpine_arch)
  tmp=$(mktemp -d)
  base="$CDN/latest-stable/releases/$arch"
  echo "$0: reading $base/latest-releases.yaml" >&2
  fetch "$base/latest-releases.yaml" "$tmp/latest-releases.yaml" \
    || die "cannot download $base/latest-releases.yaml (no network?); download a minirootfs elsewhere and pass it as TARBALL"
  # The entry whose flavor is alpine-minirootfs: take its file: and sha256: fields.
  # Entries start with a line "-"; their fields are indented by exactly two spaces (deeper lines
  # belong to multi-line values such as desc: and are ignored).
  set -- $(tr -d '\r' < "$tmp/latest-releases.yaml" | awk '
    /^-/ { if (flavor == "alpine-minirootfs" && file != "" && sha != "") { print file, sha; done = 1; exit }
           flavor = ""; file = ""; sha = "" }
    /^  flavor:/ { flavor = $2 }
    /^  file:/ { file = $2 }
    /^  sha256:/ { sha = $2 }
    END { if (!done && flavor == "alpine-minirootfs" && file != "" && sha != "") print file, sha }
  ' | head -n 1)
  [ $# -eq 2 ] || die "no alpine-minirootfs entry with a sha256 in $base/latest-releases.yaml"
  file=$1; want=$2
  case "$file" in */*|"") die "unexpected file name $file in latest-releases.yaml" ;; esac
  echo "$0: downloading $base/$file" >&2
  fetch "$base/$file" "$tmp/$file" || die "cannot download $base/$file"
  got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "checksum mismatch for $file: got $got, latest-releases.yaml says $want"
  echo "$0: sha256 $got matches latest-releases.yaml" >&2
  tarball="$tmp/$file"
  source_desc="$base/$file (sha256 checked)"
else
  [ -f "$tarball" ] || die "$tarball is not a file"
  if [ -f "$tarball.sha256" ]; then
    want=$(cut -d' ' -f1 < "$tarball.sha256")
    got=$(sha256sum "$tarball" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "checksum mismatch for $tarball: got $got, $tarball.sha256 says $want"
    echo "$0: sha256 $got matches $tarball.sha256" >&2
    source_desc="$tarball (sha256 checked)"
  else
    echo "$0: warning: no $tarball.sha256 beside the tarball: its integrity is NOT checked" >&2
    source_desc="$tarball (unchecked)"
  fi
fi

mkdir -p "$dir"
owner_opt=""
[ "$(id -u)" = 0 ] && owner_opt="--numeric-owner"
tar -xzf "$tarball" -C "$dir" $owner_opt || die "cannot unpack $tarball into $dir"
# minictr mounts on these: they must be real directories.
for d in proc sys dev; do
  if [ -L "$dir/$d" ] || { [ -e "$dir/$d" ] && ! [ -d "$dir/$d" ]; }; then
    die "$dir/$d is not a directory in this tarball: refusing it"
  fi
  mkdir -p "$dir/$d"
done
[ -x "$dir/bin/sh" ] || [ -L "$dir/bin/sh" ] || echo "$0: warning: $dir has no /bin/sh" >&2

version=$(cat "$dir/etc/alpine-release" 2>/dev/null || echo "unknown version")
n=$(find "$dir" | wc -l)
echo "built an Alpine rootfs in $(cd "$dir" && pwd): Alpine $version, $n files, from $source_desc"
