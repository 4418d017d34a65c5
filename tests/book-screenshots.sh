#!/usr/bin/env bash
# The book's pictures, as a reader's browser shows them: every page of the built book that holds an
# <img> is opened in headless Chromium; the check fails unless every image loaded (naturalWidth > 0)
# and neither the page's screenshot nor each picture's own is blank. Screenshots land in
# target/book-screenshots/ (PAGE.png, PAGE--PICTURE.png) to look at.
#
#   tests/book-screenshots.sh      # after `mdbook build chapters` (tests/book-check.sh builds it)
set -euo pipefail
cd "$(dirname "$0")/.."
book=chapters/book
out=target/book-screenshots
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "book-screenshots: needs Chromium (apt-get install chromium)" >&2; exit 1; }
[ -f "$book/index.html" ] || mdbook build chapters >/dev/null
rm -rf "$out"
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"; rm -f "$book"/*.imgcheck.html' EXIT
# Root needs --no-sandbox; a private profile keeps runs apart.
chrome() { "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" "$@" 2>/dev/null; }

# A PNG with content: its decompressed scanlines hold more than a handful of distinct byte values
# (a blank page filters down to almost nothing but zeros).
not_blank() {
  python3 - "$1" <<'PY'
import struct, sys, zlib
try:
    data = open(sys.argv[1], "rb").read()
except OSError:
    sys.exit(1)
pos, idat = 8, b""
while pos + 8 <= len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
sys.exit(0 if idat and len(set(zlib.decompress(idat))) > 16 else 1)
PY
}

fail=0
pages=0
for page in $(grep -l '<img ' "$book"/*.html | grep -v -e '/print.html$' -e '\.imgcheck\.html$'); do
  name=$(basename "$page" .html)
  pages=$((pages + 1))
  # A copy of the page, beside it (so relative paths still resolve), that reports on its images.
  probe="$book/$name.imgcheck.html"
  python3 - "$page" "$probe" <<'EOF'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
script = ('<script>window.addEventListener("load", () => { const r = [...document.images].map(i => '
          'i.getAttribute("src") + " " + i.naturalWidth + "x" + i.naturalHeight); const p = '
          'document.createElement("pre"); p.id = "imgcheck"; p.textContent = r.join("\\n"); '
          'document.body.appendChild(p); });</script>')
i = page.rindex("</body>")
open(sys.argv[2], "w", encoding="utf-8").write(page[:i] + script + page[i:])
EOF
  report=$(chrome --virtual-time-budget=5000 --dump-dom "file://$PWD/$probe" |
    python3 -c 'import sys, re, html; m = re.search(r"<pre id=\"imgcheck\">(.*?)</pre>", sys.stdin.read(), re.S); print(html.unescape(m.group(1)) if m else "NO-REPORT")')
  if [ "$report" = NO-REPORT ]; then
    echo "FAIL $name: the page did not finish loading"; fail=1; continue
  fi
  while read -r src size; do
    if [ "${size%%x*}" -gt 0 ] 2>/dev/null; then
      echo "ok   $name: $src ($size)"
    else
      echo "FAIL $name: $src did not load ($size)"; fail=1
    fi
  done < <(sort -u <<<"$report")   # mdBook shows each image twice (the page, and its zoom)
  # The top of the page as a reader sees it, and each picture alone at its natural size.
  chrome --virtual-time-budget=5000 --window-size=1280,2400 --screenshot="$PWD/$out/$name.png" "file://$PWD/$page" >/dev/null
  not_blank "$out/$name.png" || { echo "FAIL $name: the page's screenshot is blank or missing"; fail=1; }
  while read -r src size; do
    w=${size%%x*}; h=${size##*x}
    [ "$w" -gt 0 ] 2>/dev/null || continue
    shot="$out/$name--$(basename "$src" .svg).png"
    chrome --virtual-time-budget=3000 --window-size="$((w > 2000 ? 2000 : w)),$((h > 2000 ? 2000 : h))" \
      --screenshot="$PWD/$shot" "file://$PWD/$book/$src" >/dev/null
    not_blank "$shot" || { echo "FAIL $name: $src renders blank"; fail=1; }
  done < <(sort -u <<<"$report")
done
[ "$pages" -gt 0 ] || { echo "FAIL: no page of the book holds a picture"; fail=1; }
[ "$fail" = 0 ] && echo "book-screenshots: $pages pages, every picture loaded; screenshots in $out/"
exit $fail
