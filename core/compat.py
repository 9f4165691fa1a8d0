"""Import-time check that aihwkit's compiled core matches the installed torch.

aihwkit's ``rpu_base`` extension is compiled against one torch; with another torch it imports
but misreads tensor shapes (``Invalid weights dimensions: expected [3,4]``, docs/aihwkit.md §7.1).
:func:`check_aihwkit` sets and reads back a small C++ tile's weights and raises
:class:`AihwkitMismatchError` with the command that fixes it; :func:`ensure_aihwkit` runs it once
per process, when the first STO configuration is built (not at import: ``import stoxbar`` stays
cheap), unless ``STOXBAR_SKIP_AIHWKIT_CHECK`` is set. :func:`versions` records the software a
result was produced with.

May import: the standard library (torch and aihwkit inside the check only).
"""

from __future__ import annotations

import os
import platform
from typing import Callable, Dict, Optional

FIX_COMMAND = (
    "make clean-venv setup   # or: .venv/bin/pip install --force-reinstall --no-build-isolation "
    "--no-deps --no-binary aihwkit --no-cache-dir aihwkit==1.2.0"
)


class AihwkitMismatchError(ImportError):
    """aihwkit's compiled core does not work with the installed torch."""


def _round_trip() -> None:
    import torch
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.tiles.inference import InferenceTile

    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 12.0
    tile = InferenceTile(3, 4, InferenceRPUConfig())
    tile.set_weights(weights, apply_weight_scaling=False)
    back, _ = tile.get_weights(apply_weight_scaling=False)
    if back.shape != weights.shape or not torch.allclose(back, weights):
        raise RuntimeError(f"weights read back as {back.tolist()} instead of {weights.tolist()}")


def check_aihwkit(round_trip: Optional[Callable[[], None]] = None) -> None:
    """Raise :class:`AihwkitMismatchError` unless a C++ tile round-trips its weights."""
    import torch

    try:
        (round_trip or _round_trip)()
    except Exception as err:  # any failure of the compiled core means the same fix
        try:
            import aihwkit

            version = aihwkit.__version__
        except Exception:  # pragma: no cover - aihwkit missing entirely
            version = "not importable"
        raise AihwkitMismatchError(
            f"aihwkit ({version}) does not work with the installed torch {torch.__version__}: {err}. "
            "Its compiled core must be built against this torch. Fix: " + FIX_COMMAND
        ) from err


_CHECKED = False


def ensure_aihwkit() -> None:
    """:func:`check_aihwkit` once per process (skipped if ``STOXBAR_SKIP_AIHWKIT_CHECK`` is set)."""
    global _CHECKED
    if not _CHECKED and not os.environ.get("STOXBAR_SKIP_AIHWKIT_CHECK"):
        check_aihwkit()
    _CHECKED = True


def versions() -> Dict[str, str]:
    """Versions of the software that produced a result."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("stoxbar", "torch", "aihwkit", "numpy", "ale-py", "gymnasium"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
