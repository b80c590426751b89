#!/usr/bin/env python3
"""The house's shape, checked: no import circles between the files of a
crate, and no function in the session engine longer than --max-fn lines.

Usage: tools/shape-check.py [--max-fn 80] [--fn-dir DIR ...] [--crate DIR ...]

An edge A -> B means file A names an item of module file B (`use
crate::x::y`, `super::y`, an inline `crate::x::y` path, or a child module's
items from its parent). A strongly connected set of two or more files is a
circle. `mod x;` declarations and `#[cfg(test)]` modules are not edges, nor
is a file naming an item of its own ancestor or descendant module (a parent
re-exporting its child, a child using its parent's items: in Rust a module
and its submodules are one unit of privacy). Circles that make a house hard
to read run between siblings or across subtrees, and those are reported.
"""

import argparse
import os
import re
import sys

USE_RE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);", re.S)
PATH_RE = re.compile(r"\b((?:crate|super)(?:::\w+)+)")
MOD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def strip_noise(src):
    """Drops comments, string literals and inline test modules."""
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    src = re.sub(r"b?'(?:\\.|[^'\\])'", "' '", src)
    m = re.search(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", src)
    if m:
        src = src[: m.start()]
    return src


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        i = t.find("{")
        if i < 0:
            for part in t.split(","):
                if part:
                    out.append(prefix + part)
            return
        head = t[:i]
        depth, parts, cur = 0, [], ""
        for ch in t[i + 1 : t.rfind("}")]:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        for p in parts:
            walk(prefix + head, p)

    walk("", tree)
    return [re.sub(r"\bas\b.*$", "", p) for p in out]


def module_files(src_dir):
    """Module path (tuple) -> file, for every .rs file under src_dir."""
    mods = {}
    for root, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src_dir)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            mods[tuple(rel)] = path
    return mods


def resolve(path, here, mods):
    """The module file a path names, or None (an external crate)."""
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        base = here
    best = None
    cur = base
    if cur in mods:
        best = mods[cur]
    for s in segs:
        cur = cur + (s,)
        if cur in mods:
            best = mods[cur]
        else:
            break
    return best


def related(a, b):
    """One module is the other's ancestor (or they are the same)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def edges_of(src_dir):
    mods = module_files(src_dir)
    by_file = {v: k for k, v in mods.items()}
    edges = {f: set() for f in by_file}
    for f, here in by_file.items():
        with open(f, encoding="utf-8") as fh:
            src = strip_noise(fh.read())
        children = set(MOD_RE.findall(src))
        paths = []
        for u in USE_RE.findall(src):
            paths.extend(expand_use(u))
        paths.extend(PATH_RE.findall(src))
        # A parent naming its children's items (`pump::Flow`, `use pump::Flow`).
        for c in children:
            for m in re.finditer(r"\b%s::(\w+)" % re.escape(c), src):
                paths.append("self::%s::%s" % (c, m.group(1)))
        for p in paths:
            to = resolve(p, here, mods)
            there = by_file.get(to)
            if to and to != f and not related(here, there):
                edges[f].add(to)
    return edges


def circles(edges):
    """Strongly connected components of two or more files (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


FN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)", re.M)


def long_functions(path, max_lines):
    with open(path, encoding="utf-8") as fh:
        raw = fh.read()
    src = strip_noise(raw)
    lines = src.split("\n")
    found = []
    for m in FN_RE.finditer(src):
        start = src.count("\n", 0, m.start())
        depth, opened, end = 0, False, None
        for i in range(start, len(lines)):
            line = lines[i]
            if not opened and ";" in line and "{" not in line:
                break  # a declaration without a body
            for ch in line:
                if ch == "{":
                    depth += 1
                    opened = True
                elif ch == "}":
                    depth -= 1
            if opened and depth == 0:
                end = i
                break
        if end is not None and end - start + 1 > max_lines:
            found.append((m.group(1), start + 1, end - start + 1))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-fn", type=int, default=80)
    ap.add_argument("--fn-dir", action="append", default=[])
    ap.add_argument("--crate", action="append", default=[])
    args = ap.parse_args()
    crates = args.crate or sorted(
        os.path.join("crates", c, "src") for c in os.listdir("crates")
    )
    fn_dirs = args.fn_dir or ["crates/causeway-frontend/src/session"]
    bad = 0
    for c in crates:
        for comp in circles(edges_of(c)):
            bad += 1
            print("import circle in %s (%d files):" % (c, len(comp)))
            for f in comp:
                print("   ", os.path.relpath(f, c))
    for d in fn_dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith(".rs"):
                    p = os.path.join(root, f)
                    for name, line, n in long_functions(p, args.max_fn):
                        bad += 1
                        print("%s:%d: fn %s is %d lines (max %d)" % (p, line, name, n, args.max_fn))
    if bad:
        print("shape-check: %d problem(s)" % bad)
        return 1
    print("shape-check: no import circles, no function over %d lines" % args.max_fn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
