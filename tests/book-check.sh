#!/usr/bin/env bash
# The built book: no broken link, no machine path, no stale picture.
#
#   tests/book-check.sh            # builds chapters/book with mdbook, then checks it
#
# - every relative href/src of chapters/book/**/*.html points at a file of the built book, and every
#   #fragment names an id (or a name) on the page it points at;
# - no page holds a path of the machine that built it (this clone's directory, a home directory, a
#   temporary directory of a test); the reader's clone is written /home/you/minictr;
# - `mdbook test chapters` passes (a piece of the crate is fenced ```rust,ignore);
# - with Graphviz installed, chapters/pictures/build.sh --check: no SVG is older than its source.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/check-includes.sh
if ! out=$(mdbook build chapters 2>&1); then echo "$out" >&2; exit 1; fi
# every ```rust block either compiles on its own or says ```rust,ignore (about 2 s)
if ! out=$(mdbook test chapters 2>&1); then echo "$out" >&2; echo "book-check: mdbook test failed (a \`\`\`rust block that is a piece of the crate needs \`\`\`rust,ignore)" >&2; exit 1; fi
if command -v dot >/dev/null; then
  bash chapters/pictures/build.sh --check
else
  echo "book-check: Graphviz not installed, the pictures' freshness is not checked"
fi
python3 - "$PWD" <<'EOF'
import html.parser, os, re, sys, urllib.parse

repo = sys.argv[1]
book = os.path.join(repo, "chapters", "book")

class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("id", "name"):
            if a.get(k):
                self.ids.add(a[k])
        for k in ("href", "src"):
            if a.get(k):
                self.links.append((tag, a[k]))

pages = {}
for d, _, files in os.walk(book):
    for f in files:
        if f.endswith(".html"):
            p = os.path.join(d, f)
            text = open(p, encoding="utf-8").read()
            parser = Page()
            parser.feed(text)
            pages[p] = (parser, text)

bad = []
for p, (parser, _) in pages.items():
    rel = os.path.relpath(p, book)
    for tag, link in parser.links:
        u = urllib.parse.urlsplit(link)
        if tag == "base" or u.scheme or link.startswith("//") or link.startswith("javascript:"):
            continue  # external: not checked (CI has no internet)
        target = p if not u.path else os.path.normpath(os.path.join(os.path.dirname(p), urllib.parse.unquote(u.path)))
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        if not os.path.exists(target):
            bad.append(f"{rel}: <{tag}> {link}: no such file in the built book")
            continue
        if u.fragment and target in pages and urllib.parse.unquote(u.fragment) not in pages[target][0].ids:
            bad.append(f"{rel}: <{tag}> {link}: no element with id {u.fragment!r}")

# Machine paths: this clone's absolute path, and the usual build and home directories. (The reader's
# clone is /home/you/…; /tmp/… paths that a session creates on purpose are the reader's too, so only
# paths that name this machine's own directories are refused.)
machine = [re.escape(repo), r"/work/", r"/root/\.cargo", r"/home/(?!you/)[a-z_][a-z0-9_-]*/", r"/tmp/\.tmp[A-Za-z0-9]+", r"target/tmp/"]
for p, (_, text) in pages.items():
    if os.path.basename(p) in ("print.html",):
        continue  # the same text as the chapters, reported once there
    for pat in machine:
        for m in re.finditer(pat, text):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"{os.path.relpath(p, book)}:{line}: a path of the build machine: {m.group(0)!r}")

# Pictures: a browser shows nothing of an SVG that is not well-formed XML.
import xml.etree.ElementTree as ET
for d, _, files in os.walk(book):
    for f in files:
        if f.endswith(".svg"):
            try:
                ET.parse(os.path.join(d, f))
            except ET.ParseError as e:
                bad.append(f"{os.path.relpath(os.path.join(d, f), book)}: not well-formed XML: {e}")

for b in bad:
    print(b)
if bad:
    sys.exit(f"book-check: {len(bad)} problem(s) in the built book")
print(f"book-check: {len(pages)} pages, every relative link and fragment resolves, no machine path")
EOF
