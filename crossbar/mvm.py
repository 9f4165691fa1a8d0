"""aihwkit's IO-managed analog MVM, extended to run every tile of a layer in one batched call.

:class:`TiledAnalogMVM` subclasses aihwkit's ``AnalogMVM``: input quantisation (DAC), noise and
bound management, output noise and quantisation (ADC) stay aihwkit's own code. It adds:

* tiled weight layouts, so one call covers all tiles of a layer:
  ``x [B, T, X]`` (input split into T row-tiles, zero-padded to X rows) against
  ``w [T, O, X]`` (shared weights) or ``w [B, T, O, X]`` (one chip per batch element, e.g. a
  per-environment short-term state) gives per-tile partial outputs ``[B, T, O]``. Noise
  management's abs-max runs over the last axis, i.e. per sample *and per tile*, as on a chip
  whose every tile has its own DAC range; the digital partial sums over T are the caller's.
* output-referred read noise: each cell read is ``G (1 + s xi)``, so the column-current noise has
  variance ``sum_j s^2 G_ij^2 x_j^2``; it is added before the ADC, exactly in distribution.
* a count of bound-management rounds (each round is a full re-read: DAC, array and ADC again),
  and the noise-management input scale aihwkit used (``nm_scale``; the cost model's row drive).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor

from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM

from stoxbar.crossbar.aihwkit_compat import PerColumnOutNoise


class TiledAnalogMVM(PerColumnOutNoise, AnalogMVM):
    """AnalogMVM with tiled layouts, read noise and round counting (single-threaded use)."""

    rounds: int = 0
    nm_scale: Optional[Tensor] = None  # abs-max input scale of the last read, [N, T, 1] (None: not a tensor)
    _noise_var: Optional[Tensor] = None

    @classmethod
    @contextmanager
    def reading(cls, noise_var: Optional[Tensor] = None) -> Iterator[type]:
        """Context for one MVM: resets the round counter and sets the read-noise variances.

        ``noise_var`` has the weight's layout and holds ``s^2 G^2`` in weight units squared.
        """
        cls.rounds = 0
        cls.nm_scale = None
        cls._noise_var = noise_var
        try:
            yield cls
        finally:
            cls._noise_var = None

    @classmethod
    def _compute_noise_management(cls, *args, **kwargs):  # type: ignore[override]
        scale = super()._compute_noise_management(*args, **kwargs)
        cls.nm_scale = scale if isinstance(scale, Tensor) else None
        return scale

    @classmethod
    def _compute_analog_mv(cls, *args, **kwargs):  # type: ignore[override]
        cls.rounds += 1
        return super()._compute_analog_mv(*args, **kwargs)

    @classmethod
    def _matmul(cls, weight: Tensor, input_: Tensor, trans: bool = False) -> Tensor:
        if weight.ndim == 3 and input_.ndim == 3:  # shared tiled weights [T, O, X]
            out = torch.bmm(input_.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)
            var = cls._noise_var
            if var is not None:
                sq = (input_ * input_).transpose(0, 1)
                out = out + torch.bmm(sq, var.transpose(1, 2)).transpose(0, 1).clamp_min(0).sqrt() * torch.randn_like(out)
            return out
        if weight.ndim == 4:  # one chip per sample [B, T, O, X]; x^T W^T: a GEMM, not a (slow) batched GEMV
            out = torch.matmul(input_.unsqueeze(-2), weight.transpose(-1, -2)).squeeze(-2)
            var = cls._noise_var
            if var is not None:
                sq = input_ * input_
                if var.ndim == 3:  # shared variance [T, O, X]
                    v = torch.bmm(sq.transpose(0, 1), var.transpose(1, 2)).transpose(0, 1)
                else:
                    v = torch.matmul(sq.unsqueeze(-2), var.transpose(-1, -2)).squeeze(-2)
                out = out + v.clamp_min(0).sqrt() * torch.randn_like(out)
            return out
        return super()._matmul(weight, input_, trans)

    @classmethod
    def tiled_matmul(cls, weight: Tensor, x_tiled: Tensor, io_pars: IOParameters, is_test: bool = True,
                     **kwargs) -> Tensor:
        """Partial outputs ``[B, T, O]`` of a tiled MVM through aihwkit's IO model."""
        out = cls.matmul(weight, x_tiled, io_pars, False, is_test=is_test, **kwargs)
        o = weight.shape[-2]
        if out.shape[-1] != o:  # aihwkit's all-zero-input shortcut sizes by weight.shape[0]
            out = x_tiled.new_zeros(x_tiled.shape[:-1] + (o,))
        return out
