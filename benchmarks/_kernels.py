"""Native kernels of another build, for a same-process baseline of a kernel change (benchmarks only).

``load(path)`` loads an older build's ``_native*.so`` (e.g. ``git worktree add /tmp/old REV`` and
``python setup.py build_ext --inplace`` there, or a copy of the installed one taken before rebuilding);
``use(module)`` runs a block with it in place of the installed kernels (None: the installed ones).
"""

from __future__ import annotations

import contextlib
import importlib.util

from stoxbar.core import native


def load(path: str):
    """The native kernel module built at ``path``."""
    spec = importlib.util.spec_from_file_location("_native", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def use(module):
    """Run with the native kernels of ``module`` (None: the installed build's)."""
    saved = native.extension()
    if module is not None:
        native._state["module"] = module
    try:
        yield
    finally:
        native._state["module"] = saved
