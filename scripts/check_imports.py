#!/usr/bin/env python
"""Draw the import graph of src/embedforge and check it: no circles, no upward arrows.

    python scripts/check_imports.py                 # the package in this checkout
    python scripts/check_imports.py --graph         # also list every room-to-room arrow with its count
    python scripts/check_imports.py --root DIR      # another package (the tests feed it a small one)

Every `import` counts, lazy ones inside functions included (they still tie the modules together);
imports under `if TYPE_CHECKING:` do not (they never run). A module is a .py file; a room is a
top-level subpackage or module of the package (data, model, cli, errors, ...). Reported:
- circles: strongly connected components of more than one module, and of more than one room
  (two rooms on one floor that import each other);
- upward arrows: a module in a lower floor importing one in a higher floor (FLOORS below);
  a room that FLOORS does not list is an error too, so a new room gets a floor when it is made;
- the largest module and its line count.
Exit status 1 when there is a circle, an upward arrow or a room without a floor; stdlib only (ast).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter, defaultdict
from pathlib import Path

# The floors of src/embedforge, lowest first; a room may import rooms on its own floor or below.
# (docs/architecture.md, "Import floors", holds the same table.)
FLOORS: dict[str, int] = {
    # 0: the ground, importing nothing of ours
    "errors": 0, "paths": 0,
    # 1: the run record (file name, schema, reader), read by train, eval, report, export and cli;
    # the typed config boundary (pydantic schemas, `_target_` binding) every entry point checks through
    "run_record": 1, "config_schema": 1,
    # 2: the building blocks
    "data": 2, "losses": 2, "model": 2,
    # 3: the jobs, each built from the blocks (mining and decontam reuse eval's task readers)
    "train": 3, "eval": 3, "synth": 3, "mining": 3, "decontam": 3,
    # 4: what reads the jobs' outputs: export (an encoder, eval's instructions) and report (run records),
    # and plan (predicts a training job from its config, model builder and throughput formula)
    "export": 4, "report": 4, "plan": 4,
    # 5: test helpers shipped with the package (the fake OpenAI server imports synth's prompt and cache keys)
    "testing": 5,
    # 6: the console scripts
    "cli": 6,
}
PACKAGE_INIT = "__init__"  # the package's own __init__.py: a room on floor 0 (it imports nothing of ours)
FLOORS_DEFAULT = {PACKAGE_INIT: 0}


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def room_of(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else PACKAGE_INIT


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(dotted name, line) of every import in the file, relative ones made absolute; TYPE_CHECKING blocks skipped."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for sub in child.orelse:
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(child: ast.AST) -> None:
        if isinstance(child, ast.Import):
            out.extend((alias.name, child.lineno) for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (child.level - 1)] if child.level > 1 else base
                prefix = ".".join(base + ([child.module] if child.module else []))
            else:
                prefix = child.module or ""
            # `from pkg import name`: pkg.name when that is a module, else pkg (resolved in build_graph)
            out.extend((prefix if alias.name == "*" else f"{prefix}.{alias.name}", child.lineno) for alias in child.names)
        visit(child)

    visit(tree)
    return out


def build_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, int], dict[tuple[str, str], int]]:
    """Module -> modules it imports; module -> line count; (importer, imported) -> first line of the import."""
    package = root.name
    files = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    edges: dict[str, set[str]] = {m: set() for m in files}
    lines: dict[str, int] = {}
    where: dict[tuple[str, str], int] = {}
    for module, path in files.items():
        text = path.read_text(encoding="utf-8")
        lines[module] = len(text.splitlines())
        tree = ast.parse(text, filename=str(path))
        for name, lineno in imported_names(tree, module, path.name == "__init__.py"):
            if not (name == package or name.startswith(package + ".")):
                continue
            target = name
            while target not in files and "." in target:  # the longest prefix that is a module of ours
                target = target.rsplit(".", 1)[0]
            if target in files and target != module:
                edges[module].add(target)
                where.setdefault((module, target), lineno)
    # Only what a file names counts: `import pkg.mod` also runs pkg/__init__.py, but that is no arrow
    # (counting it would make every package __init__ that imports its own modules a circle).
    return edges, lines, where


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def check(root: Path, floors: dict[str, int], show_graph: bool = False, out=sys.stdout) -> int:
    package = root.name
    edges, lines, where = build_graph(root)
    floors = {**FLOORS_DEFAULT, **floors}
    room_arrows: Counter[tuple[str, str]] = Counter()
    for module, targets in edges.items():
        for target in targets:
            a, b = room_of(module, package), room_of(target, package)
            if a != b:
                room_arrows[(a, b)] += 1
    rooms = sorted({room_of(m, package) for m in edges})
    no_floor = [r for r in rooms if r not in floors]
    circles = strongly_connected(edges)
    room_edges: dict[str, set[str]] = {r: set() for r in rooms}
    for a, b in room_arrows:
        room_edges[a].add(b)
    room_circles = strongly_connected(room_edges)
    upward = sorted((m, t) for m, ts in edges.items() for t in ts
                    if room_of(m, package) in floors and room_of(t, package) in floors
                    and floors[room_of(t, package)] > floors[room_of(m, package)])
    rel = {m: str(Path(*m.split(".")[1:])) or "__init__" for m in edges}

    print(f"{package}: {len(edges)} modules, {sum(len(t) for t in edges.values())} module arrows, "
          f"{len(rooms)} rooms, {len(room_arrows)} room arrows", file=out)
    if show_graph:
        print("room arrows (importer -> imported: modules arrows):", file=out)
        for (a, b), n in sorted(room_arrows.items(), key=lambda kv: (floors.get(kv[0][0], 99), kv[0])):
            print(f"  {a} (floor {floors.get(a, '?')}) -> {b} (floor {floors.get(b, '?')}): {n}", file=out)
    print(f"circles: {len(circles)}", file=out)
    for component in circles:
        print("  " + " <-> ".join(rel[m] for m in component), file=out)
        for m in component:
            for t in sorted(edges[m] & set(component)):
                print(f"    {rel[m]}:{where[(m, t)]} imports {rel[t]}", file=out)
    print(f"room circles: {len(room_circles)}", file=out)
    for component in room_circles:
        print("  " + " <-> ".join(component), file=out)
        for a in component:
            for b in sorted(room_edges[a] & set(component)):
                first = min((m, t) for m, ts in edges.items() for t in ts
                            if room_of(m, package) == a and room_of(t, package) == b)
                print(f"    {rel[first[0]]}:{where[first]} imports {rel[first[1]]} ({room_arrows[(a, b)]} arrows {a} -> {b})",
                      file=out)
    print(f"upward arrows: {len(upward)}", file=out)
    for m, t in upward:
        print(f"  {rel[m]}:{where[(m, t)]} ({room_of(m, package)}, floor {floors[room_of(m, package)]}) imports "
              f"{rel[t]} ({room_of(t, package)}, floor {floors[room_of(t, package)]})", file=out)
    if no_floor:
        print(f"rooms without a floor (add them to FLOORS): {', '.join(no_floor)}", file=out)
    largest = max(lines, key=lambda m: (lines[m], m))
    print(f"largest module: {rel[largest]}.py, {lines[largest]} lines", file=out)
    return 1 if circles or room_circles or upward or no_floor else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "embedforge",
                        help="the package folder (default: src/embedforge of this checkout)")
    parser.add_argument("--graph", action="store_true", help="list the room-to-room arrows")
    parser.add_argument("--floor", action="append", default=[], metavar="ROOM=N",
                        help="floors for another package (replaces the table above when given)")
    args = parser.parse_args(argv)
    floors = dict(FLOORS)
    if args.floor:
        floors = {room: int(n) for room, n in (f.split("=", 1) for f in args.floor)}
    return check(args.root.resolve(), floors, args.graph)


if __name__ == "__main__":
    sys.exit(main())
