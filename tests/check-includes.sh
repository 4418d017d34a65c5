#!/usr/bin/env bash
# Fail when a chapter's {{#include FILE:ANCHOR}} names a missing file or an anchor the file lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r line; do
  file=${line%%:*}
  inc=$(printf '%s' "$line" | sed -E 's/.*\{\{#(rustdoc_)?include ([^}]+)\}\}.*/\2/')
  path=${inc%%:*}
  anchor=""
  [ "$path" != "$inc" ] && anchor=${inc#*:}
  target="$(dirname "$file")/$path"
  if [ ! -f "$target" ]; then
    echo "$file: include of missing file $path"; bad=1; continue
  fi
  if [ -n "$anchor" ] && ! [[ "$anchor" =~ ^[0-9:]+$ ]]; then
    if ! grep -q "ANCHOR: $anchor\$" "$target" || ! grep -q "ANCHOR_END: $anchor\$" "$target"; then
      echo "$file: anchor '$anchor' not found in $path"; bad=1
    fi
  fi
# (an include written \{{#include …}} is mdBook's escape: shown as text, not included)
done < <(grep -rnoE '(^|[^\\])\{\{#(rustdoc_)?include [^}]+\}\}' chapters --include='*.md' | sed -E 's/^([^:]+):[0-9]+:/\1:/')
if [ "$bad" = 0 ]; then echo "all chapter includes resolve"; fi
exit $bad
