#!/usr/bin/env python3
"""Fails if a module of tracker-core imports one that imports it back.

Reads every file under tracker-core/src, strips comments and string
literals, and collects the paths it names: `crate::a::b`, `super::x`, and a
module's own children (`stripe::X` in tracker/mod.rs). Each path resolves
to the deepest module file it reaches; names re-exported by lib.rs
(`crate::Tracker`) resolve through lib.rs's `pub use` lines. A module's
`mod` declarations are containment, not imports, and lib.rs, the crate's
facade, is left out. Then it looks for cycles twice: between module files,
and between the top-level entries of src/ (tracker/, set/, persist/, ...).

Usage: python3 .ci/module_cycles.py [SRC_DIR] [-v]   (-v prints the graphs)
"""

import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tracker-core", "src"
)


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip(src):
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return src


files = {}
for dirpath, _, names in os.walk(ROOT):
    for name in names:
        if name.endswith(".rs"):
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            files[module_of(rel)] = strip(open(os.path.join(dirpath, name)).read())
modules = set(files)

# Names lib.rs re-exports: `pub use a::b::{X, Y}` -> X: ("a", "b").
reexports = {}
for m in re.finditer(r"pub use ([\w:]+)::\{([^}]*)\}|pub use ([\w:]+)::(\w+)\s*;", files[()]):
    if m.group(1):
        base, names = m.group(1), [n.strip() for n in m.group(2).split(",") if n.strip()]
    else:
        base, names = m.group(3), [m.group(4)]
    for name in names:
        reexports[name.split(" as ")[-1]] = tuple(base.split("::"))


def deepest(path):
    """The deepest module a path (tuple of segments) reaches."""
    for i in range(len(path), -1, -1):
        if path[:i] in modules:
            return path[:i]
    return None


def targets(module, src):
    """Modules that `src`, the file of `module`, names. Inside an inline
    module (`mod tests { ... }`, at the end of a file) `super` is the file's
    own module."""
    src = re.sub(r"\bmod \w+\s*;", "", src)
    inline = re.search(r"\bmod \w+\s*\{", src)
    if inline:
        return scan(module, src[: inline.start()], module) | scan(
            module, src[inline.end() :], module + ("<inline>",)
        )
    return scan(module, src, module)


def scan(module, src, here):
    out = set()
    children = {m[-1] for m in modules if len(m) == len(module) + 1 and m[:-1] == module}
    # `use a::{b, c::d}` groups: expand one level so every path is seen.
    for m in re.finditer(r"\b(crate|super|self|\w+)((?:::\w+)*)(?:::\{([^}]*)\})?", src):
        head, rest, group = m.group(1), m.group(2), m.group(3)
        segs = [s for s in rest.split("::") if s]
        if not segs and group is None:
            continue
        tails = [[]]
        if group:
            tails = [[s for s in g.strip().split("::") if s] for g in group.split(",") if g.strip()]
        for tail in tails:
            path = segs + [t.split(" as ")[0] for t in tail]
            if head == "crate":
                if path and path[0] in reexports and (path[0],) not in modules:
                    full = reexports[path[0]] + tuple(path[1:])
                else:
                    full = tuple(path)
            elif head == "super":
                base = list(here[:-1])
                while path and path[0] == "super":
                    base, path = base[:-1], path[1:]
                full = tuple(base) + tuple(path)
            elif head == "self":
                full = module + tuple(path)
            elif head in children:
                full = module + (head,) + tuple(path)
            else:
                continue
            target = deepest(full)
            if target is not None and target != module and target != ():
                out.add(target)
    return out


graph = {m: targets(m, src) for m, src in files.items() if m != ()}


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

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
            if len(comp) > 1:
                found.append(comp)

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def name(m):
    return "::".join(m) or "crate"


top = {}
for m, ts in graph.items():
    for t in ts:
        if t[0] != m[0]:
            top.setdefault(m[0], set()).add(t[0])

verbose = "-v" in sys.argv
if verbose:
    for m in sorted(graph):
        print(f"{name(m)} -> {', '.join(sorted(name(t) for t in graph[m]))}")
    print()
    for m in sorted(top):
        print(f"{m} -> {', '.join(sorted(top[m]))}")

bad = [("module files", c) for c in cycles(graph)] + [("top-level entries", c) for c in cycles(top)]
for level, comp in bad:
    print(f"import cycle between {level}: {' <-> '.join(sorted(name(c) if isinstance(c, tuple) else c for c in comp))}")
if bad:
    sys.exit(1)
tops = {m[0] for m in graph}
print(f"no import cycles among {len(graph)} modules and {len(tops)} top-level entries of {ROOT}")
