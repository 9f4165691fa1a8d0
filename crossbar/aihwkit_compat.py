"""aihwkit hook replacements and the names older pickled models refer to.

* :class:`ScaleGradHook`: a picklable replacement of aihwkit's local ``set_scales`` gradient hook.
* ``_ScaleGradHook`` and ``STOTileArrayCompat._after_load``: the names models pickled before the
  crossbar was split by concept hold (``torch.save(model)`` stores them); they stay importable so
  those models load.

What used to live here has a module per concept: the read's training helpers (straight-through
gradient, weight modifiers, per-column output noise) in crossbar/read.py, programming and pulsed
training (crossbar/programming.py), drift (crossbar/drift.py), save/load (crossbar/persistence.py),
indexed convolution (crossbar/conv.py), substrate operations (crossbar/substrate.py).

May import: torch (never another stoxbar.crossbar module).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


class ScaleGradHook:
    """Picklable replacement of aihwkit's local ``set_scales`` hook: ``grad / scales**2``."""

    def __init__(self, scales: Tensor):
        self.scales = scales

    def __call__(self, grad: Tensor) -> Tensor:
        return grad / self.scales.to(grad.device).view(-1, 1) ** 2


_ScaleGradHook = ScaleGradHook  # the name pickled in checkpoints saved before the split


class STOTileArrayCompat:
    """The name under which models pickled before the split hold their tile arrays' load hook."""

    @staticmethod
    def _after_load(module: Any, incompatible: Any) -> None:
        type(module)._after_load(module, incompatible)  # STOTileArray._after_load (crossbar/array.py)
