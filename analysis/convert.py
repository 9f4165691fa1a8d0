"""Layers ``convert_to_analog`` does not map, converted first: recurrent layers and multi-head attention.

:func:`convert_layers` returns a copy of a model in which every ``nn.LSTM`` / ``nn.GRU`` is an
:class:`~stoxbar.analysis.recurrent.AnalogRecurrent` (aihwkit's analog RNN on the given config) and
every ``nn.MultiheadAttention`` an :class:`~stoxbar.analysis.attention.AnalogMultiheadAttention`
(its projections as ``nn.Linear`` layers for ``convert_to_analog``); a layer that cannot be
converted raises ``ConfigError`` naming it and the reason.

May import: torch, stoxbar.analysis.{recurrent,attention}.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from stoxbar.analysis.attention import AnalogMultiheadAttention
from stoxbar.analysis.recurrent import RECURRENT_CELLS, AnalogRecurrent

__all__ = ["convert_layers", "needs_conversion"]


def needs_conversion(model: nn.Module) -> bool:
    """Whether ``model`` holds a layer :func:`convert_layers` converts."""
    return any(type(m) in RECURRENT_CELLS or isinstance(m, nn.MultiheadAttention) for m in model.modules())


def convert_layers(model: nn.Module, rpu_config: Any) -> nn.Module:
    """A copy of ``model`` with its recurrent and attention layers converted (module docstring)."""
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        label = name or "model"
        if type(m) in RECURRENT_CELLS:
            new: nn.Module = AnalogRecurrent(m, rpu_config, label)
        elif isinstance(m, nn.MultiheadAttention):
            new = AnalogMultiheadAttention(m, label)
        else:
            continue
        if not name:
            return new
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model
