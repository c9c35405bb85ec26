"""The layering the design promises, checked on the source: no import cycles between
onnxprune's modules, nothing in passes/ or runtime/ (or model IO) imports compiler/,
and no function longer than 80 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "onnxprune"
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Every onnxprune module a module imports, at top level or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known}


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, tree in modules.items():
        g.add_edges_from((name, dep) for dep in _imports(tree, set(modules)) if dep != name)
    return g


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == [], f"import cycles: {cycles[:3]}"


def test_lower_layers_do_not_import_the_compiler():
    g = _graph()
    lower = [m for m in g if m.startswith(("onnxprune.passes", "onnxprune.runtime")) or m == "onnxprune.model_io"]
    bad = [(m, d) for m in lower for d in g.successors(m) if d.startswith("onnxprune.compiler")]
    assert bad == []


def test_model_io_is_the_bottom_layer():
    g = _graph()
    assert set(g.successors("onnxprune.model_io")) <= {"onnxprune.errors", "onnxprune.passes.name_nodes", "onnxprune.proto_scan"}


def test_no_function_longer_than_80_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long == []
