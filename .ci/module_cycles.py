#!/usr/bin/env python3
"""Import loops between sibling modules of each crate of the workspace.

A file of module `a::x` that names an item of module `a::y` (through
`crate::a::y`, `super::y` or `self::`) makes the edge `a::x -> a::y`
between the two siblings under their common parent (top-level modules are
siblings under the crate root). A parent using its children, or a child
its parent, is not a loop. Reports every strongly connected component of
more than one module and exits 1 if there is one. Run from the repository
root (`.ci/run` does).
"""
import re
import sys
from pathlib import Path

CRATES = {"tilejit": Path("src"), "tilejit-kernels": Path("kernels/src"),
          "tilejit-sparse": Path("sparse/src"), "tilejit-verify": Path("verify/src")}
PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*"


def module_of(root, f):
    parts = list(f.relative_to(root).with_suffix("").parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def resolve(path, modules):
    """The longest prefix of `path` that is a module (() for the root)."""
    best = ()
    for i in range(1, len(path) + 1):
        if tuple(path[:i]) in modules:
            best = tuple(path[:i])
    return best


def edges(root):
    files = {module_of(root, f): f for f in root.rglob("*.rs")}
    modules = set(files)
    graph = {}
    for here, f in files.items():
        text = re.sub(r"//[^\n]*", "", f.read_text())
        # `use a::{b, c::d}` groups as separate paths (one level is enough here).
        text = re.sub(r"(" + PATH + r")::\{([^{}]*)\}",
                      lambda m: " ".join(m.group(1) + "::" + x.strip() for x in m.group(2).split(",") if x.strip()),
                      text)
        for kind, rest in re.findall(r"\b(crate|super|self)::(" + PATH + ")", text):
            base = {"crate": [], "self": list(here), "super": list(here[:-1])}[kind]
            target = resolve(base + rest.split("::"), modules)
            c = 0
            while c < min(len(here), len(target)) and here[c] == target[c]:
                c += 1
            if c < len(here) and c < len(target):
                a, b = "::".join(here[:c + 1]), "::".join(target[:c + 1])
                graph.setdefault(a, set()).add(b)
                graph.setdefault(b, set())
    return graph


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


bad = False
for crate, root in CRATES.items():
    g = edges(root)
    for comp in sccs(g):
        bad = True
        pairs = sorted(f"{a} -> {b}" for a in comp for b in g[a] if b in comp)
        print(f"{crate}: import loop between {', '.join(sorted(comp))}: {'; '.join(pairs)}")
if not bad:
    print("no import loops between sibling modules in " + ", ".join(CRATES))
sys.exit(1 if bad else 0)
