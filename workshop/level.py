#!/usr/bin/env python3
"""Write a student's copy of the project at workshop level N (see workshop/README.md).

    workshop/level.py N DIR          (workshop/level.sh N DIR calls this)

Every exercise of chapter N and later — a function body between `// EXERCISE(chNN, "name",
hint = "...")` and `// EXERCISE_END` in src/ — is replaced by a stub that fails with
"chapter N, exercise 'name' is not written yet (src/file.rs:LINE); see chapters/NN-....md"
(exit 125). The signature, doc comments, the marker and its hint stay. N = 9 writes the solution
of everything (main itself). Files whose content is unchanged are not rewritten, so DIR can be
regenerated in place and cargo rebuilds only what changed.
"""
import os
import re
import subprocess
import sys

MARK = re.compile(r'^(\s*)// EXERCISE\(ch(\d\d), "([^"]+)", hint = "(.*)"\)\s*$')
END = re.compile(r"^\s*// EXERCISE_END\s*$")


def chapter_text(root, ch):
    for f in sorted(os.listdir(os.path.join(root, "chapters"))):
        if f.startswith("%02d-" % ch) and f.endswith(".md"):
            return "chapters/" + f
    return "chapters/"


def returns_result(lines, mark):
    """Whether the function whose body starts after line `mark` returns a Result."""
    i = mark - 1
    while i > 0 and not re.match(r"\s*(pub(\([a-z]+\))? )?fn ", lines[i]):
        i -= 1
    sig = " ".join(lines[i:mark])
    ret = sig.split("->")[-1] if "->" in sig else ""
    return re.match(r"\s*(anyhow::)?Result\b", ret) is not None


def exercises(root, path):
    """(start, end, chapter, name, hint) of every marked body in a file (0-based line numbers)."""
    lines = open(os.path.join(root, path), encoding="utf-8").read().split("\n")
    out, start = [], None
    for i, l in enumerate(lines):
        m = MARK.match(l)
        if m:
            if start is not None:
                sys.exit(f"{path}:{i + 1}: EXERCISE inside another one")
            start = (i, int(m.group(2)), m.group(3), m.group(4), m.group(1))
        elif END.match(l):
            if start is None:
                sys.exit(f"{path}:{i + 1}: EXERCISE_END without EXERCISE")
            out.append((start[0], i) + start[1:])
            start = None
    if start is not None:
        sys.exit(f"{path}:{start[0] + 1}: EXERCISE without EXERCISE_END")
    return lines, out


def stubbed(root, path, level):
    lines, found = exercises(root, path)
    out, last, n = [], 0, 0
    for start, end, ch, name, hint, indent in found:
        if ch < level:
            continue
        out += lines[last:start + 1]
        place = f"{path}:{len(out)}"  # the marker's line in the generated file
        text = chapter_text(root, ch)
        args = f'{ch}, "{name}", "{place}", "{text}"'
        if returns_result(lines, start):
            stub = f"Err(crate::workshop::todo({args}))"
        else:
            stub = f"crate::workshop::todo_exit({args})"
        out += [
            f"{indent}// TODO (chapter {ch}): write this body; {text} explains it, the hint above says what it does.",
            indent + stub,
        ]
        last, n = end, n + 1
    out += lines[last:]
    return "\n".join(out), n


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or not 1 <= int(sys.argv[1]) <= 9:
        sys.exit("usage: workshop/level.sh N DIR   (N = 1..8: the chapter to write next; 9 = all written)")
    level, dest = int(sys.argv[1]), sys.argv[2]
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, cwd=root, check=True).stdout.decode().split("\0")
    # A copy made inside the clone (./level1) is not copied into the next one.
    inside = os.path.relpath(os.path.abspath(dest), root)
    if not inside.startswith(".."):
        files = [f for f in files if not (f + "/").startswith(inside.rstrip("/") + "/")]
    stubs = 0
    for f in filter(None, files):
        src = os.path.join(root, f)
        if not os.path.isfile(src):
            continue  # deleted in the work tree
        dst = os.path.join(dest, f)
        if f.startswith("src/") and f.endswith(".rs"):
            text, n = stubbed(root, f, level)
            stubs += n
            data = text.encode()
        else:
            data = open(src, "rb").read()
        if f == "src/main.rs" and level <= 8:
            # Stubs leave parameters and helpers unused: allowed in a generated level only.
            t = data.decode()
            t = re.sub(r"\A((?://!.*\n)*)", lambda m: m.group(1) + "#![allow(unused)] // a workshop level: stubs leave things unused\n", t, count=1)
            data = t.encode()
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        try:
            if open(dst, "rb").read() == data:
                continue
        except OSError:
            pass
        with open(dst, "wb") as out:
            out.write(data)
        os.chmod(dst, os.stat(src).st_mode & 0o777)
    with open(os.path.join(dest, "workshop", "LEVEL"), "w") as out:
        out.write(f"{level}\n")
    print(f"level {level} written to {dest}: {stubs} exercise bodies to write", file=sys.stderr)


if __name__ == "__main__":
    main()
