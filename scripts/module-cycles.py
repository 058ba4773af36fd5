#!/usr/bin/env python3
"""Reports import cycles between the files of a crate: an edge A -> B for every `crate::b...`
path written in file A (in `use` lines and in code, test modules included); `crate::Name`
re-exported by a `pub use b::…` line of the crate root counts as an edge to b. Exit status 1
when a cycle exists. (kernels/tests/no_cycles.rs runs the same check on kernels in `cargo test`.) Usage: scripts/module-cycles.py [crate/src ...] (default: kernels/src)."""
import os
import re
import sys


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            out[tuple(rel)] = os.path.join(root, f)
    return out


def reexports(mods):
    """Name -> module, for the crate root's `pub use module::{Name, ...}` / `pub use module::Name`."""
    root = mods.get(())
    out = {}
    for mod, names in re.findall(r"pub use (?:crate::)?([a-z_0-9]+)::\{?([^;}]*)\}?;", open(root).read() if root else ""):
        for n in names.split(","):
            out[n.strip().split(" as ")[-1].strip()] = (mod,)
    return out


def edges(src):
    mods = modules(src)
    names = reexports(mods)
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"//[^\n]*", "", text)  # comments name modules without importing them
        paths = re.findall(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)*)", text)
        paths += ["::".join(names[n]) for n in re.findall(r"crate::([A-Za-z_0-9]+)", text) if n in names]
        # `use crate::{a, b::c}` groups
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            paths += [p.strip() for p in group.split(",")]
            paths += ["::".join(names[p.strip()]) for p in group.split(",") if p.strip() in names]
        # `super::x` in a file is a path relative to its parent module
        for p in re.findall(r"\bsuper::([a-z_0-9]+(?:::[a-z_0-9]+)*)", text):
            base = m[:-1] if not path.endswith("mod.rs") else m[:-1]
            paths.append("::".join(base + tuple(p.split("::"))))
        for p in paths:
            parts = tuple(x for x in p.split("::") if x)
            # the longest prefix that is a module file
            for n in range(len(parts), 0, -1):
                if parts[:n] in mods:
                    if parts[:n] != m and parts[:n] != ():
                        graph[m].add(parts[:n])
                    break
    return graph


def cycles(graph):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    bad = False
    for src in sys.argv[1:] or ["kernels/src"]:
        graph = edges(src)
        found = cycles(graph)
        name = lambda m: "::".join(m) or "lib"
        for comp in found:
            bad = True
            print(f"{src}: cycle among {', '.join(sorted(name(m) for m in comp))}")
        if not found:
            print(f"{src}: {len(graph)} files, {sum(map(len, graph.values()))} edges, no cycle")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
