#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Each source file is a module. A file depends on another when it names an
item there through a path (`use crate::raft::node::NodeConfig`,
`super::tokens::Tokens`, `crate::state::job::stage_order(..)`). Edges between
a module and its own ancestors are left out: a parent declares and re-exports
its children, and a child extends its parent's types, by design. What is
left must form no cycle (a strongly connected component of two modules or
more); each one found is printed with the lines that close it.

Test code (`#[cfg(test)]` onwards) is skipped: tests may reach anywhere.

Usage: check-import-cycles.py [CRATE_SRC_DIR ...]  (default: every crate)
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(file: Path) -> str:
    text = file.read_text()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    # Comments name paths too; they are not dependencies.
    return re.sub(r"//[^\n]*", "", text)


def paths_in(code: str):
    """Every `crate::`/`super::`/`self::` path, with `use a::{b, c::d}`
    groups expanded (one level of nesting is enough for this code base)."""
    for m in USE_GROUP.finditer(code):
        head, prefix, body = m.group(1), m.group(2), m.group(3)
        for item in re.split(r",(?![^{]*\})", body):
            item = item.strip()
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", item)
            if name:
                yield head, (prefix + "::" + name.group(0)).split("::")[1:], m.start()
    for m in PATH.finditer(code):
        yield m.group(1), m.group(2).split("::")[1:], m.start()


def resolve(modules: set, here: tuple, is_dir_module: bool, head: str, parts: list):
    if head == "crate":
        base = ()
    else:
        # `self` in a mod.rs is the folder's module; `super` goes one up
        # from the module the file is.
        base = here if head == "self" else here[:-1]
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
    best = base
    for i in range(1, len(parts) + 1):
        candidate = base + tuple(parts[:i])
        if candidate in modules:
            best = candidate
        else:
            break
    return best


def check(src: Path) -> list:
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    edges = {m: {} for m in modules}
    for here, file in files.items():
        code = code_of(file)
        is_dir = file.name in ("mod.rs", "lib.rs", "main.rs")
        for head, parts, at in paths_in(code):
            target = resolve(modules, here, is_dir, head, parts)
            if target == here or target not in modules:
                continue
            # A module and its ancestors: declared, re-exported, extended.
            if here[: len(target)] == target or target[: len(here)] == here:
                continue
            line = code.count("\n", 0, at) + 1
            edges[here].setdefault(target, line)
    # Tarjan's strongly connected components.
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
    for v in sorted(modules):
        if v not in index:
            visit(v)
    problems = []
    for comp in out:
        names = ", ".join("::".join(m) or "(root)" for m in comp)
        lines = []
        for a in comp:
            for b, line in edges[a].items():
                if b in comp:
                    lines.append(f"    {files[a].relative_to(ROOT)}:{line} uses {'::'.join(b)}")
        problems.append(f"{src.relative_to(ROOT)}: import circle among {names}\n" + "\n".join(lines))
    return problems


def main() -> int:
    dirs = [Path(a).resolve() for a in sys.argv[1:]] or sorted(
        p.parent for p in ROOT.glob("*/src/lib.rs")
    ) + sorted(p.parent for p in ROOT.glob("*/src/main.rs") if not (p.parent / "lib.rs").exists())
    problems = []
    for src in dirs:
        problems += check(src)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} import circle(s)")
        return 1
    print(f"no import circles in {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
