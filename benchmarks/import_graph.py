"""Import graph of geossl's packages: cycles (counting imports inside functions) and module sizes.

Run ``python -m benchmarks.import_graph`` from the repository root. It prints every cycle between
the sub-packages of ``geossl`` (``geossl.models``, ``geossl.weights``, ...; a top-level module such
as ``geossl.errors`` counts as its own package), the modules over 500 lines and the functions
over 80 lines, and exits 1 when there is a cycle or a module over 500 lines.
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "geossl"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def package_of(module: str) -> str:
    """``geossl.weights.readers`` -> ``weights``; ``geossl.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "geossl"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every geossl module ``path`` imports, at any depth (functions included)."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("geossl"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("geossl"):
                found.add(target)
    return found


def long_functions(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append((node.name, length))
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return result


def main() -> int:
    graph: dict[str, set[str]] = defaultdict(set)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    big: list[tuple[int, str]] = []
    long: list[tuple[str, str, int]] = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        src_pkg = package_of(name)
        for target in imports_of(path):
            dst_pkg = package_of(target)
            if dst_pkg != src_pkg and dst_pkg != "geossl" and src_pkg != "geossl":
                graph[src_pkg].add(dst_pkg)
                edges[(src_pkg, dst_pkg)].append(f"{name} -> {target}")
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            big.append((lines, str(path.relative_to(ROOT.parent))))
        long.extend((str(path.relative_to(ROOT.parent)), f, n) for f, n in long_functions(path))
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("cycle between packages:", " <-> ".join(cycle))
        for a in cycle:
            for b in cycle:
                for edge in edges.get((a, b), [])[:3]:
                    print("   ", edge)
    for lines, where in sorted(big, reverse=True):
        print(f"module over {MAX_MODULE_LINES} lines: {where} ({lines})")
    for where, func, n in sorted(long, key=lambda t: -t[2]):
        print(f"function over {MAX_FUNCTION_LINES} lines: {where}:{func} ({n})")
    print(f"{len(cycles)} cycles, {len(big)} modules > {MAX_MODULE_LINES}, {len(long)} functions")
    return 1 if cycles or big else 0


if __name__ == "__main__":
    sys.exit(main())
