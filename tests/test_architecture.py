"""The package's structure, read from the code: imports form no circle, point down the layer order,
and obey each module's own "May import:" line; importing the package is cheap and side-effect free.

Layers (docs/design.md §2), lowest first: the core utilities (``stoxbar.core``), then ``devices`` and
``peripherals``, ``crossbar``, ``stpn`` and ``analysis``, ``pong``, ``studies``, ``scripts``. A module
may import its own package and any lower layer, never a higher one or a sibling layer's package.
Every import counts: top-level, inside functions, re-exports (only ``if TYPE_CHECKING:`` blocks,
which never run, are left out). The root ``stoxbar/__init__.py`` is the façade and may import lazily
from any layer.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
NOT_PACKAGE = ("tests", "benchmarks", "examples", "csrc", "docs", "build", "runs", "scripts/__pycache__")
LAYERS = {"core": 0, "devices": 1, "peripherals": 1, "crossbar": 2, "stpn": 3, "analysis": 3, "pong": 4,
          "studies": 5, "scripts": 6}


def _modules() -> Dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in NOT_PACKAGE or rel.name == "setup.py":
            continue
        if any(p in ("checkpoints", "results", "__pycache__") for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["stoxbar", *parts])] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(name: str) -> Set[str]:
    """stoxbar modules ``name`` imports anywhere except under ``if TYPE_CHECKING:``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {_resolve(a.name) for a in node.names if a.name.startswith("stoxbar")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg
                for _ in range(node.level - 1):
                    up = up.rsplit(".", 1)[0]
                base = f"{up}.{base}" if base else up
            if base.startswith("stoxbar"):
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    found.add(sub if sub in MODULES else _resolve(base))
    found.discard(name)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def test_no_import_circles():
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in GRAPH:
        if m not in index:
            visit(m)
    assert circles == [], f"import circles: {circles}"


def test_imports_point_down_the_layer_order():
    back = [f"{a} -> {b}" for a, deps in GRAPH.items() if a != "stoxbar" for b in deps
            if b != "stoxbar" and _layer(a) != _layer(b) and LAYERS[_layer(b)] >= LAYERS[_layer(a)]]
    assert back == [], "imports that climb (or cross) the layer order: " + "; ".join(sorted(back))


_MAY = re.compile(r"May import:?\s*(.*?)(?:\.\s*$|\.\s*\n\s*\n|\Z)", re.S | re.M)


def _allowed(doc: str) -> List[str]:
    m = _MAY.search(doc)
    assert m, "no 'May import:' line"
    text = re.sub(r"\([^)]*\)", "", m.group(1))  # remarks in parentheses
    out = []
    for token in re.findall(r"stoxbar[\w.]*(?:\.\{[\w, ]+\})?", text):
        if "{" in token:
            head, inner = token.split("{")
            out += [head + part.strip() for part in inner.rstrip("}").split(",")]
        else:
            out.append(token.rstrip("."))
    return out


def test_every_module_says_what_it_may_import_and_obeys_it():
    bad = []
    for mod, path in MODULES.items():
        if mod == "stoxbar":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "May import" not in doc:
            bad.append(f"{mod}: its first docstring has no 'May import:' line")
            continue
        allowed = _allowed(doc)
        own_pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for dep in sorted(GRAPH[mod]):
            if dep.startswith(own_pkg + ".") and own_pkg != "stoxbar" and "stoxbar.*" not in doc:
                if not any(dep == a or dep.startswith(a + ".") for a in allowed if a.startswith(own_pkg)):
                    if any(a.startswith(own_pkg) for a in allowed):  # the module restricts its own package
                        bad.append(f"{mod} imports {dep}: not in its 'May import' line")
                continue
            if not any(dep == a or dep.startswith(a + ".") for a in allowed):
                bad.append(f"{mod} imports {dep}: not in its 'May import' line")
    assert bad == [], "\n".join(bad)


def test_importing_the_package_and_its_core_is_cheap_and_side_effect_free():
    code = ("import sys, stoxbar, stoxbar.core.validation, stoxbar.core.fsio; "
            "heavy = sorted(m for m in ('torch', 'aihwkit', 'matplotlib', 'numpy') if m in sys.modules); "
            "print(heavy)")
    env = {k: v for k, v in os.environ.items() if k != "STOXBAR_SKIP_AIHWKIT_CHECK"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_build_script_and_non_package_folders_are_not_modules():
    """Importing setup.py (it lies in the package's folder) runs nothing; in the installed package
    (make setup: strict editable mode) tests, benchmarks and examples are not ``stoxbar.*`` modules."""
    out = subprocess.run([sys.executable, "-c", "import stoxbar.setup"], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert out.returncode == 0 and "running" not in out.stdout + out.stderr  # setup() did not run
    for name in NOT_PACKAGE[:3]:
        assert not (ROOT / name / "__init__.py").exists()
    probe = ("import json, stoxbar, pathlib, importlib.util as u; root = pathlib.Path(stoxbar.__path__[0]); "
             "print(json.dumps([root.resolve() == pathlib.Path(%r), [u.find_spec('stoxbar.' + n) is None for n in "
             "('tests', 'benchmarks', 'examples')]]))" % str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd="/")
    in_checkout, absent = json.loads(out.stdout)
    if not in_checkout:  # the installed package (a development checkout on sys.path imports its folders)
        assert all(absent), "tests/, benchmarks/ or examples/ importable as stoxbar.*"


def test_lazy_package_functions_import_what_they_use():
    """``stoxbar.crossbar`` imports its API on first use (PEP 562): a lazy name is a module global only
    after someone asked the package for it, so a function of the package that uses one must import it
    itself (attach_ledger once raised NameError in a fresh process). Checked statically for every
    function, and once at run time in a fresh interpreter."""
    import ast
    import stoxbar.crossbar as xb

    tree = ast.parse((ROOT / "crossbar" / "__init__.py").read_text())
    bad = []
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in ("__getattr__", "__dir__")):
        local = {a.asname or a.name for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) for a in n.names}
        used = {n.id for stmt in fn.body for n in ast.walk(stmt)  # the body: annotations are strings here
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        bad += [f"{fn.name} uses {name}" for name in sorted((used & set(xb._LAZY)) - local)]
    assert bad == [], bad
    code = ("import torch; from aihwkit.nn import AnalogLinear; from stoxbar.crossbar.config import STORPUConfig; "
            "from stoxbar.crossbar.ledger import EnergyLedger; import stoxbar.crossbar as xb; "
            "assert 'STOTileArray' not in vars(xb); "
            "m = AnalogLinear(4, 3, rpu_config=STORPUConfig()); led = xb.attach_ledger(m, EnergyLedger()); "
            "m(torch.rand(2, 4)); xb.flush_events(m); print(led.total_j > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("True")
