"""The package's import graph against its layers: prints every circle, upward or sideways import, and private
import across packages (nothing when the layering holds). Imports inside functions count too: they do not form
import-time cycles, but they are dependencies all the same.

    python scripts/import_graph.py            # exit 1 when something is printed

Layers, lowest first (a module may import its own layer's package and anything below):
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "urpo_kit"

# the data flow: config -> sources/recast -> rewards/referee -> kinds -> compiler -> eval -> train/serve -> cli
# (training reads the held-out reports that evaluation writes, and is handed the evaluator itself)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "quiet", "console"),
    ("plugins", "config"),
    ("models", "sources", "recast"),
    ("rewards",),
    ("referee",),
    ("kinds",),
    ("compiler",),
    ("eval",),
    ("train", "serve"),
    ("cli", "__main__", "validate", "docs", "train.cli", "eval.command", "serve.commands"),
]
__doc__ = (__doc__ or "") + "\n".join(f"    {i}: {', '.join(layer)}" for i, layer in enumerate(LAYERS)) + "\n"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layered unit a module belongs to: the most specific entry of LAYERS that names it or a parent."""
    rest = module.removeprefix("urpo_kit.")
    names = {n for layer in LAYERS for n in layer}
    parts = rest.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in names:
            return ".".join(parts[:n])
    raise KeyError(f"{module} is in no layer; add it to LAYERS")


def layer(module: str) -> int:
    u = unit(module)
    return next(i for i, names in enumerate(LAYERS) if u in names)


def imports(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of the package in a file."""
    here = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("urpo_kit"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("urpo_kit"):
                yield target, [a.name for a in node.names], node.lineno


def problems() -> list[str]:
    out: list[str] = []
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target, names, line in imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if target == "urpo_kit":
                continue
            a, b = unit(source), unit(target)
            edges.setdefault(source, set()).add(target)
            if layer(target) > layer(source):
                out.append(f"{where}: upward import {source} -> {target} ({a} is below {b})")
            elif layer(target) == layer(source) and a != b and layer(source) != len(LAYERS) - 1:
                out.append(f"{where}: sideways import {source} -> {target} ({a} and {b} share a layer)")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and a.split(".")[0] != b.split(".")[0]:
                out.append(f"{where}: private import of {', '.join(private)} from {target}")
    out += [f"circle: {' -> '.join(c)}" for c in circles(edges)]
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
