"""The crossbar layer's structure (issue 15 item 2): no configuration import below
``crossbar/config.py`` and one owner of ``CrossbarState``'s private fields. Read from the source with
``ast``; import circles and every module's "May import" line are tests/test_architecture.py's.
"""

import ast
from pathlib import Path


CROSSBAR = Path(__file__).resolve().parents[1] / "crossbar"
PKG = "stoxbar.crossbar"


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


def test_the_configuration_is_the_top_of_the_crossbar_layer():
    """Nothing in crossbar/ imports crossbar/config.py (the configuration is duck-typed below it);
    circles and the "May import" lines of every module: tests/test_architecture.py."""
    assert not any("config" in deps for name, deps in _graph().items() if name != "config")


def test_only_the_state_writes_its_private_fields():
    private = {"_version", "_st_cols", "_cache", "_views", "_checked"}
    offenders = []
    for f in CROSSBAR.parent.rglob("*.py"):
        rel = f.relative_to(CROSSBAR.parent).parts
        if f.name == "state.py" and f.parent == CROSSBAR or rel[0] in ("tests", ".venv", "build"):
            continue  # the owner itself; the tests; the venv and the installed link tree (make setup)
        for node in ast.walk(ast.parse(f.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in private and not (
                        isinstance(t.value, ast.Name) and t.value.id == "self"):
                    offenders.append(f"{f.relative_to(CROSSBAR.parent)}:{node.lineno} {t.attr}")
    assert not offenders, offenders
