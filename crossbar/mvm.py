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

Fast forward: for inference reads (no gradient) on CPU, :meth:`TiledAnalogMVM.tiled_matmul`
runs the same IO model in one native call (``io_mvm`` in ``csrc/analog_mvm.cpp``: the same ATen
operations and random draws in the same order, so the result is bit-identical to this module's
aihwkit path, tested); it saves the Python and autograd overhead of ~60 small tensor operations.
``TiledAnalogMVM.use_native = False`` (or ``STOXBAR_NO_KERNEL=1``) keeps every read on aihwkit's
``AnalogMVM``, the reference. Settings the native call does not cover (stochastic rounding,
other noise/bound management types or MVM types) always take the aihwkit path.
May import: torch, aihwkit, stoxbar.native.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import AnalogMVType, BoundManagementType, NoiseManagementType
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM

from stoxbar import native
from stoxbar.crossbar.aihwkit_compat import PerColumnOutNoise

# noise / bound management types of the native read (csrc/analog_mvm.h)
_NM = {NoiseManagementType.NONE: 0, NoiseManagementType.ABS_MAX: 1, NoiseManagementType.MAX: 2,
       NoiseManagementType.CONSTANT: 3}
_BM = {BoundManagementType.NONE: 0, BoundManagementType.ITERATIVE: 1}


def _native_io(io: IOParameters) -> Optional[tuple]:
    """The IO parameters as the native read takes them, or None if it does not cover them."""
    perfect = bool(io.is_perfect or io.mv_type == AnalogMVType.IDEAL)
    if not perfect and (io.mv_type != AnalogMVType.ONE_PASS or io.noise_management not in _NM
                        or io.bound_management not in _BM or io.inp_sto_round or io.out_sto_round):
        return None
    return (perfect, _NM.get(io.noise_management, 0), float(io.nm_thres), _BM.get(io.bound_management, 0),
            float(io.inp_res), float(io.inp_bound), float(io.inp_noise), float(io.inp_asymmetry),
            float(io.out_res), float(io.out_bound), float(io.out_noise), float(io.out_asymmetry),
            float(io.out_scale), float(io.max_bm_factor), float(io.max_bm_res))


class TiledAnalogMVM(PerColumnOutNoise, AnalogMVM):
    """AnalogMVM with tiled layouts, read noise and round counting (single-threaded use)."""

    rounds: int = 0
    nm_scale: Optional[Tensor] = None  # abs-max input scale of the last read, [N, T, 1] (None: not a tensor)
    use_native: bool = True  # False: every read through aihwkit's AnalogMVM (the reference)
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
            # contiguous [B, T, O]: the noise draws below (and aihwkit's) then take torch's fast fill
            out = torch.bmm(input_.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1).contiguous()
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
    def _native_pars(cls, weight: Tensor, x_tiled: Tensor, noise_var: Optional[Tensor],
                     io_pars: IOParameters) -> Optional[tuple]:
        """The native call's IO parameters for this read, or None when it must take aihwkit's path
        (switched off, a gradient to keep, not a tiled input, no usable kernel, IO settings it lacks)."""
        if not cls.use_native or x_tiled.ndim != 3 or (torch.is_grad_enabled() and (
                weight.requires_grad or x_tiled.requires_grad)):
            return None
        if not native.usable(weight, x_tiled, *(() if noise_var is None else (noise_var,))):
            return None
        return _native_io(io_pars)

    @classmethod
    def native_read(cls, weight: Tensor, x_tiled: Tensor, io_pars: IOParameters, noise_var: Optional[Tensor] = None,
                    g_col: Optional[Tensor] = None, drive: Optional[Tensor] = None, drive_mode: int = 0,
                    shrink: float = 0.25) -> Optional[tuple]:
        """One inference read in one native call, with its checks and its recorded event, or None when the
        native read does not cover it (gradient, other IO settings, no kernel).

        Returns ``(partial outputs [B, T, O], rounds, status)``: status 1 = the input holds NaN or inf
        (nothing read, no random draw), 2 = the output overflowed, 0 = fine; then, with ``g_col``
        ``[1 or B, T, J, X]`` (S) and ``drive`` (float64 ``[T * J]``) given, the read drive integral
        (:func:`stoxbar.crossbar.tile.read_drive`; ``drive_mode`` 0 amplitude, 1 PWM) was added to ``drive``.
        """
        pars = cls._native_pars(weight, x_tiled, noise_var, io_pars)
        if pars is None:
            return None
        out, rounds, status = native.extension().io_mvm_read(weight, x_tiled.contiguous(), noise_var, *pars, g_col,
                                                             drive, int(drive_mode), float(shrink))
        return out, rounds, status

    @classmethod
    def tiled_matmul(cls, weight: Tensor, x_tiled: Tensor, io_pars: IOParameters, is_test: bool = True,
                     **kwargs) -> Tensor:
        """Partial outputs ``[B, T, O]`` of a tiled MVM through aihwkit's IO model (native when possible)."""
        var = cls._noise_var
        pars = cls._native_pars(weight, x_tiled, var, io_pars) if all(v is None for v in kwargs.values()) else None
        if pars is not None:
            out, rounds = native.extension().io_mvm(weight, x_tiled, var, *pars)
            cls.rounds += rounds
            return out
        out = cls.matmul(weight, x_tiled, io_pars, False, is_test=is_test, **kwargs)
        o = weight.shape[-2]
        if out.shape[-1] != o:  # aihwkit's all-zero-input shortcut sizes by weight.shape[0]
            out = x_tiled.new_zeros(x_tiled.shape[:-1] + (o,))
        return out
