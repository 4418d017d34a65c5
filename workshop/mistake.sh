#!/usr/bin/env bash
# workshop/mistake.sh MISTAKE.sed DIR — make one of the mistakes students really make (a sed script
# of workshop/mistakes/) in the copy of the project at DIR: every file its "# file:" lines name is
# edited, and each must change (a script that no longer matches the code fails loudly).
set -euo pipefail
script=$1 dir=$2
files=$(sed -n 's/^# file: //p' "$script")
[ -n "$files" ] || { echo "$script: no '# file:' line" >&2; exit 2; }
for f in $files; do
  before=$(cksum <"$dir/$f")
  sed -i -f "$script" "$dir/$f"
  if [ "$(cksum <"$dir/$f")" = "$before" ]; then
    echo "$script: changes nothing in $f any more: update it to the code" >&2
    exit 1
  fi
done
