"""The crossbar layer's structure (issue 15 item 2): no import circles inside ``crossbar/``, no
configuration import below ``crossbar/config.py``, one owner of ``CrossbarState``'s private fields,
and the "May import" line of the concept modules obeyed. Read from the source with ``ast``.
"""

import ast
import re
from pathlib import Path

import pytest

CROSSBAR = Path(__file__).resolve().parents[1] / "crossbar"
PKG = "stoxbar.crossbar"
CONCEPT_MODULES = ("programming", "drift", "persistence", "conv", "substrate", "aihwkit_compat", "state", "read", "parasitics",
                   "tile", "array", "config")


def _imports(path: Path):
    """Every stoxbar/aihwkit module ``path`` imports (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PKG:
                found |= {f"{PKG}.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _graph():
    graph = {}
    for f in CROSSBAR.glob("*.py"):
        if f.stem == "__init__":
            continue
        graph[f.stem] = {m.split(".")[2] for m in _imports(f) if m.startswith(PKG + ".")} - {f.stem}
    return graph


def test_no_import_circle_inside_crossbar():
    graph = _graph()
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        if node in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(node):] + [node]))
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])
    assert not any("config" in deps for name, deps in graph.items() if name != "config")  # config is the top


def test_only_the_state_writes_its_private_fields():
    private = {"_version", "_st_cols", "_cache", "_views", "_checked"}
    offenders = []
    for f in CROSSBAR.parent.rglob("*.py"):
        if f.name == "state.py" and f.parent == CROSSBAR or "tests" in f.parts or ".venv" in f.parts:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in private and not (
                        isinstance(t.value, ast.Name) and t.value.id == "self"):
                    offenders.append(f"{f.relative_to(CROSSBAR.parent)}:{node.lineno} {t.attr}")
    assert not offenders, offenders


@pytest.mark.parametrize("name", CONCEPT_MODULES)
def test_concept_modules_obey_their_may_import_line(name):
    path = CROSSBAR / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    m = re.search(r"May import:(.*?)(?:\n\n|$)", doc, re.S)
    assert m, f"crossbar/{name}.py: no 'May import:' line in the first docstring"
    allowed = " ".join(m.group(1).split())
    named = set()
    for group in re.findall(r"stoxbar\.crossbar\.\{([^}]*)\}", allowed):
        named |= {f"{PKG}.{n.strip()}" for n in group.split(",")}
    named |= set(re.findall(r"stoxbar\.[a-z_]+(?:\.[a-z_]+)*", allowed))
    for mod in _imports(path):
        if mod.startswith("stoxbar."):
            assert any(mod == n or mod.startswith(n + ".") for n in named), f"crossbar/{name}.py imports {mod}"
        if mod.startswith("aihwkit"):
            assert "aihwkit" in allowed, f"crossbar/{name}.py imports {mod}"
