#!/usr/bin/env python3
"""Module dependency check for src/, at the level of files (every file is a module).

Stricter than a check of top-level modules: it resolves `crate::`, `super::` and `self::`
paths and a folder module's calls into its own children, so a child that imports from its
parent while the parent calls the child is a cycle too. Not counted as dependencies: `mod x;`
declarations, re-exports (`pub use` / `pub(crate) use`, a folder's facade) and test code
(`#[cfg(test)] mod` blocks, `tests.rs` and `tests/` folders).

Usage: python3 .ci/modules.py [--src src] [--graph]. Exits 1 when there is a cycle.
"""
import argparse
import pathlib
import re
import sys


def module_path(f, src):
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    """Comments, test modules and re-export lines removed."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    text = "".join(out)
    return re.sub(r"\bpub(\([^)]*\))?\s+use\s[^;]*;", "", text)


def expand(text):
    """`a::{b, c::d}` groups flattened into `a::b`, `a::c::d` (one level of nesting)."""
    for _ in range(3):
        text = re.sub(
            r"((?:\w+::)+)\{([^{}]*)\}",
            lambda m: " ".join(m.group(1) + p.strip() for p in m.group(2).split(",") if p.strip()),
            text,
        )
    return text


def edges(src):
    files = [f for f in src.rglob("*.rs")
             if "tests" not in f.relative_to(src).parts and f.name != "tests.rs"]
    mods = {module_path(f, src): f for f in files}
    graph = {m: set() for m in mods}
    # Items a folder module re-exports from its children: `pub use self::a::{B, C}` / `pub use a::B`.
    reexports = {m: {} for m in mods}
    for m, f in mods.items():
        text = re.sub(r"//[^\n]*", "", f.read_text(errors="replace"))
        for u in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", text):
            for path in expand(u.group(1)).split():
                names = [n for n in path.split("::") if n]
                if names and names[0] == "self":
                    names = names[1:]
                item = names[-1] if names else ""
                if " as " in u.group(1) or len(names) < 2:
                    continue
                child = m + (names[0],)
                if child in mods:
                    reexports[m][item] = child

    def resolve(path):
        """The module that defines what `path` (a tuple of names) names: the longest known
        module it starts with, followed through its folder's re-exports."""
        for n in range(len(path), 0, -1):
            if path[:n] in mods:
                target, rest = path[:n], path[n:]
                while rest and rest[0] in reexports.get(target, {}):
                    target, rest = reexports[target][rest[0]], rest[1:]
                return target
        return None

    for m, f in mods.items():
        if m == ():
            continue  # lib.rs: the crate root declares and re-exports
        body = expand(strip(f.read_text(errors="replace")))
        children = {c[-1] for c in mods if len(c) == len(m) + 1 and c[:len(m)] == m}
        for p in re.finditer(r"(?<![\w:])((?:crate|super|self|\w+)(?:::\w+)+)", body):
            names = p.group(1).split("::")
            if names[0] == "crate":
                target = resolve(tuple(names[1:]))
            elif names[0] == "super":
                base = list(m)
                while names and names[0] == "super":
                    base, names = base[:-1], names[1:]
                target = resolve(tuple(base) + tuple(names))
            elif names[0] == "self":
                target = resolve(m + tuple(names[1:]))
            elif names[0] in children:
                target = resolve(m + tuple(names))
            else:
                continue
            if target is not None and target != m and target != ():
                graph[m].add(target)
    return graph


def sccs(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(comp)
    sys.setrecursionlimit(10000)
    for v in list(g):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="src")
    ap.add_argument("--graph", action="store_true", help="print every edge")
    a = ap.parse_args()
    g = edges(pathlib.Path(a.src))
    name = lambda m: "::".join(m) or "crate"
    if a.graph:
        for m in sorted(g):
            for t in sorted(g[m]):
                print(f"{name(m)} -> {name(t)}")
    cycles = sccs(g)
    for c in cycles:
        inner = sorted(name(m) for m in c)
        print("cycle: " + " <-> ".join(inner))
        for m in sorted(c):
            for t in sorted(g[m] & set(c)):
                print(f"  {name(m)} -> {name(t)}")
    print(f"modules: {len(cycles)} cycles among {len(g)} file modules")
    sys.exit(1 if cycles else 0)


if __name__ == "__main__":
    main()
