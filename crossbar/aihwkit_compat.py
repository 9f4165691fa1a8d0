"""Read-path helpers that make the STO read behave like aihwkit's, and aihwkit hook replacements.

* :func:`straight_through`: the conductance weights in the forward pass with the gradient of the
  aihwkit ``weight`` parameters (hardware-aware training reaches the trained weights);
* :func:`apply_modifier`: aihwkit's weight modifiers on training reads;
* :class:`PerColumnOutNoise`: ``out_noise_values`` per column on tiled outputs (mixin of
  :class:`~stoxbar.crossbar.mvm.TiledAnalogMVM`);
* :class:`ScaleGradHook`: a picklable replacement of aihwkit's local ``set_scales`` gradient hook.

The rest of what used to live here has a module per concept: programming and pulsed training
(crossbar/programming.py), drift (crossbar/drift.py), save/load (crossbar/persistence.py),
indexed convolution (crossbar/conv.py), substrate operations (crossbar/substrate.py).

May import: torch, aihwkit, stoxbar.validation (never another stoxbar.crossbar module).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from stoxbar.validation import ConfigError


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


class _StraightThrough(torch.autograd.Function):
    """Forward: the conductance weights ``w`` as they are; backward: ``w``'s gradient to the weight
    parameters, each from its block (what ``w + (p - p.detach())`` gives, without computing it)."""

    @staticmethod
    def forward(ctx, w: Tensor, blocks: Any, *params: Tensor) -> Tensor:  # type: ignore[override]
        ctx.blocks = blocks
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Any:  # type: ignore[override]
        grads = []
        for block, ndim in ctx.blocks:
            g = grad if block is None else grad[(Ellipsis,) + block]
            if g.ndim > ndim:  # one chip per sample [B, ...]: the parameter is shared
                g = g.sum(tuple(range(g.ndim - ndim)))
            grads.append(g)
        return (None, None, *grads)


def straight_through(w: Tensor, weight_param: Any) -> Tensor:
    """``w`` (tiled ``[..., T, O, X]``) with the straight-through gradient path to the weights.

    ``weight_param``: one tensor in ``w``'s tiled layout, or a list of ``(parameter [o, x],
    (row-tile i, output slice, row slice))``: each tile's ``weight`` and its block of the layout.
    """
    if isinstance(weight_param, Tensor):
        return _StraightThrough.apply(w, [(None, weight_param.ndim)], weight_param)
    return _StraightThrough.apply(w, [(blk, p.ndim) for p, blk in weight_param],
                                  *(p for p, _ in weight_param))


def apply_modifier(w: Tensor, modifier: Any, batch: int) -> Tensor:
    """Weights as read under an aihwkit weight modifier (training forward passes only)."""
    from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

    if modifier.per_batch_sample and w.ndim != 3:
        raise ConfigError("modifier.per_batch_sample = True: not supported together with a short-term "
                          "state (the weights are already per sample); set it to False")
    return TorchSimulatorTile.modify_weight(w, modifier, batch)


# -- MVM -------------------------------------------------------------------------------------------
class PerColumnOutNoise:
    """Mixin for :class:`TiledAnalogMVM`: ``out_noise_values`` of shape [O] or [T, O] on tiled outputs."""

    @classmethod
    def _finalize_output(cls, out_values: Tensor, io_pars: Any, out_noise_values: Optional[Tensor] = None,
                         **kwargs: Any) -> Tensor:
        if out_noise_values is not None and out_values.ndim >= 3:
            shape = (1,) * (out_values.ndim - out_noise_values.ndim) + tuple(out_noise_values.shape)
            out_values = out_values + torch.randn_like(out_values) * out_noise_values.view(shape)
            out_noise_values = out_values.new_zeros(1)  # the base adds nothing more (values given)
        return super()._finalize_output(out_values, io_pars, out_noise_values=out_noise_values, **kwargs)
