"""The analog read (an MVM through DAC -> array -> ADC): a plug-in class the configuration chooses.

``STORPUConfig.read_model`` names the read's class (aihwkit's pattern: a config names its
implementation, ``TorchInferenceRPUConfigIRDropT`` swaps its MVM the same way). The simulator tile
hands it to aihwkit as ``analog_mvm`` and :func:`analog_read` (the tile's and the array's read)
calls the same class; per-call physics travels as arguments (``noise_var``, ``out_noise_values``)
and what the read did comes back as values (the output and the bound-management rounds taken):
no class state. **A new read model is one subclass of** :class:`TiledAnalogMVM` (override
:meth:`TiledAnalogMVM._matmul`, the array physics, or the IO steps aihwkit defines) **plus the
config field**. The native kernel implements this module's physics only, so a subclass that
overrides a physics step reads through the torch path (:meth:`TiledAnalogMVM.native_capable`).

:class:`TiledAnalogMVM` subclasses aihwkit's ``AnalogMVM``: input quantisation (DAC), noise and
bound management, output noise and quantisation (ADC) stay aihwkit's own code. It adds:

* tiled weight layouts, so one call covers all tiles of a layer:
  ``x [B, T, X]`` (input split into T row-tiles, zero-padded to X rows) against
  ``w [T, O, X]`` (shared weights) or ``w [B, T, O, X]`` (one short-term state per batch element)
  gives per-tile partial outputs ``[B, T, O]``. Noise management's abs-max runs over the last
  axis, i.e. per sample *and per tile*, as on a chip whose every tile has its own DAC range; the
  digital partial sums over T are the caller's.
* output-referred read noise: ``noise_var`` (the device's read-noise variance per cell, weight
  units squared: ``MemristiveDevice.read_noise_var_s2``) gives the column-current noise variance
  ``sum_j var_ij x_j^2``; it is added before the ADC, exactly in distribution (Gaussian).
* a count of bound-management rounds (each round is a full re-read: DAC, array and ADC again).
* ``out_noise_values`` of shape [O] or [T, O] on tiled outputs (aihwkit's per-column output noise).

Fast forward: for inference reads (no gradient) on CPU, the same IO model runs in one native call
(``io_mvm`` in ``csrc/analog_mvm.cpp``: the same ATen operations and random draws in the same
order, so the result is bit-identical to the aihwkit path, tested); it saves the Python and
autograd overhead of ~60 small tensor operations. ``TiledAnalogMVM.use_native = False`` (or
``STOXBAR_NO_KERNEL=1``) keeps every read on aihwkit's ``AnalogMVM``, the reference. Settings the
native call does not cover (stochastic rounding, other noise/bound management or MVM types) take
the aihwkit path. Per-chip-slot state (batched chips) reads in its chip form where the slots of a chip
share their conductances (:meth:`TiledAnalogMVM.chip_read`): each chip's W and noise variance once and
the slots' F in one native pass, the same read up to the order of the sums (docs/native.md §2).

The read's energy events: :func:`read_drive` (the cells' drive integral, per tile) is recorded by
the sink (:mod:`~stoxbar.crossbar.tile`'s ``EventSink``) and priced by the one cost model.

May import: torch, aihwkit, stoxbar.core.native, stoxbar.core.validation, stoxbar.crossbar.state,
stoxbar.peripherals (types only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import AnalogMVType, BoundManagementType, NoiseManagementType
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

from stoxbar.core import native
from stoxbar.crossbar.state import CrossbarState, check_finite
from stoxbar.core.validation import ConfigError

if TYPE_CHECKING:
    from stoxbar.crossbar.recorder import EventSink
    from stoxbar.peripherals.config import PeripheryConfig

# noise / bound management types of the native read (csrc/analog_mvm.h)
_NM = {NoiseManagementType.NONE: 0, NoiseManagementType.ABS_MAX: 1, NoiseManagementType.MAX: 2,
       NoiseManagementType.CONSTANT: 3}
_BM = {BoundManagementType.NONE: 0, BoundManagementType.ITERATIVE: 1}
# the steps whose physics the native read implements: a subclass overriding one reads through torch
_PHYSICS = ("_matmul", "_noise", "_compute_analog_mv", "_prepare_input", "_finalize_output",
            "_compute_noise_management", "matmul")


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


class _Rounds:
    """Per-call counter of array reads (bound-management rounds), passed down aihwkit's pipeline."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class TiledAnalogMVM(AnalogMVM):
    """aihwkit's AnalogMVM with tiled layouts, the device's read noise and round counting (module docstring)."""

    use_native: bool = True  # False: every read through aihwkit's AnalogMVM (the reference); a switch, not physics

    @classmethod
    def native_capable(cls) -> bool:
        """True if this class's physics is the native kernel's (no physics step overridden) and it is on."""
        return cls.use_native and all(getattr(cls, m).__func__ is getattr(TiledAnalogMVM, m).__func__
                                      for m in _PHYSICS)

    @classmethod
    def record_drive(cls, state: CrossbarState, x_t: Tensor, rounds: int, io_pars: Any,
                     periphery: "PeripheryConfig", drive: Tensor, wire: Tensor) -> None:
        """Add one read's drive integral per tile to ``drive`` and the part of it the line wires
        dissipate to ``wire`` (both float64 ``[T * J]``, S). Ideal wires: :func:`read_drive`, no wire
        part. A read model with its own circuit (line parasitics) overrides this."""
        read_drive(state, x_t, rounds, io_pars, periphery, out=drive)

    @classmethod
    def own_drive(cls) -> bool:
        """True if this read model computes its drive itself (:meth:`record_drive` overridden)."""
        return cls.record_drive.__func__ is not TiledAnalogMVM.record_drive.__func__

    # -- the pipeline (aihwkit's, with per-call physics as arguments) ---------------------------
    @classmethod
    def matmul(cls, weight: Tensor, input_: Tensor, io_pars: IOParameters, trans: bool = False,  # type: ignore[override]
               is_test: bool = False, noise_var: Optional[Tensor] = None, rounds: Optional[_Rounds] = None,
               physics: Any = None, **fwd_pars: Any) -> Tensor:
        """aihwkit's IO-managed MVM; ``noise_var`` (weight's layout, weight units^2) is the cells' read
        noise; ``rounds`` (if given) counts the array reads."""
        if io_pars.is_perfect or io_pars.mv_type == AnalogMVType.IDEAL:  # aihwkit's shortcut, with read noise
            return cls._matmul(weight, input_, trans, noise_var=noise_var, physics=physics)
        return super().matmul(weight, input_, io_pars, trans, is_test, noise_var=noise_var, rounds=rounds,
                              physics=physics, **fwd_pars)

    @classmethod
    def _compute_analog_mv(cls, weight: Tensor, input_: Tensor, trans: bool, scale: Any, scaling: bool,  # type: ignore[override]
                           is_test: bool, io_pars: IOParameters, noise_var: Optional[Tensor] = None,
                           rounds: Optional[_Rounds] = None, physics: Any = None, **fwd_pars: Any) -> Tuple[bool, Tensor]:
        """One array read (aihwkit's step, with the read noise passed to :meth:`_matmul`)."""
        if rounds is not None:
            rounds.n += 1
        if io_pars.mv_type != AnalogMVType.ONE_PASS:
            raise ConfigError(f"forward.mv_type = {io_pars.mv_type}: STO tiles read in one pass (ONE_PASS) only")
        prepared = cls._prepare_input(input_=input_, scale=scale, scaling=scaling,
                                      with_asymmetry=io_pars.inp_asymmetry != 0.0, io_pars=io_pars)
        out = cls._matmul(weight, prepared, trans, noise_var=noise_var, physics=physics)
        return cls._finalize_output(out_values=out, io_pars=io_pars, **fwd_pars)

    @classmethod
    def _finalize_output(cls, out_values: Tensor, io_pars: Any, out_noise_values: Optional[Tensor] = None,  # type: ignore[override]
                         **kwargs: Any) -> Tensor:
        """aihwkit's output step, with ``out_noise_values`` of shape [O] or [T, O] on tiled outputs."""
        if out_noise_values is not None and out_values.ndim >= 3:
            shape = (1,) * (out_values.ndim - out_noise_values.ndim) + tuple(out_noise_values.shape)
            out_values = out_values + torch.randn_like(out_values) * out_noise_values.view(shape)
            out_noise_values = out_values.new_zeros(1)  # the base adds nothing more (values given)
        return super()._finalize_output(out_values, io_pars, out_noise_values=out_noise_values, **kwargs)

    @classmethod
    def _matmul(cls, weight: Tensor, input_: Tensor, trans: bool = False,  # type: ignore[override]
                noise_var: Optional[Tensor] = None, physics: Any = None) -> Tensor:
        """The array: ``x W^T`` per tile plus Gaussian read noise of variance ``sum_j noise_var_ij x_j^2``.

        ``physics`` is what :meth:`read_physics` added for a subclass (unused here).
        """
        if weight.ndim == 3 and input_.ndim == 3:  # shared tiled weights [T, O, X]
            # contiguous [B, T, O]: the noise draws below (and aihwkit's) then take torch's fast fill
            out = torch.bmm(input_.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1).contiguous()
        elif weight.ndim == 4:  # one state per sample [B, T, O, X]; x^T W^T: a GEMM, not a (slow) batched GEMV
            out = torch.matmul(input_.unsqueeze(-2), weight.transpose(-1, -2)).squeeze(-2)
        elif noise_var is not None:
            raise ConfigError(f"read noise on a weight of shape {tuple(weight.shape)}: STO tiles read tiled "
                              "weights [T, O, X] or [B, T, O, X]")
        else:
            return super()._matmul(weight, input_, trans)
        return out if noise_var is None else out + cls._noise(input_, noise_var, out)

    @classmethod
    def _noise(cls, input_: Tensor, noise_var: Tensor, out: Tensor) -> Tensor:
        """One draw of the read noise on outputs like ``out`` ``[B, T, O]``: std ``sqrt(sum_j var_ij x_j^2)``."""
        if noise_var.ndim == 3:  # shared variance [T, O, X]
            sq = (input_ * input_).transpose(0, 1)
            v = torch.bmm(sq, noise_var.transpose(1, 2)).transpose(0, 1)
        else:
            v = torch.matmul((input_ * input_).unsqueeze(-2), noise_var.transpose(-1, -2)).squeeze(-2)
        return v.clamp_min(0).sqrt() * torch.randn_like(out)

    @classmethod
    def for_state(cls, state: CrossbarState, periphery: "PeripheryConfig", vectors: int) -> type:
        """The read model that serves a read of ``vectors`` inputs on ``state``: this class (default). A read
        model whose best method depends on the state (e.g. the full wire solve, which switches to its
        cached transfer matrix once the state has served enough reads) returns another class here."""
        return cls

    @classmethod
    def array_weight(cls, state: CrossbarState, periphery: "PeripheryConfig") -> Tensor:
        """The weight the array presents to the read, ``[T, O, X]`` or ``[B, T, O, X]`` (weight units): the
        conductances' own (ideal wires), in the state's reused read buffer (the read consumes it at once).
        A read model whose array law is a linear map of other weights (e.g. first-order wire drop)
        overrides this and keeps the native read."""
        return state.effective_weight(scratch=True)

    @classmethod
    def chip_read(cls, state: CrossbarState, periphery: "PeripheryConfig") -> Optional[Tuple[Tensor, ...]]:
        """The read of per-chip-slot state in its chip form for the native kernel: ``(long-term weights per
        chip [C, T, O, X], their read-noise variance or None, each slot's chip [B], the slots' short-term
        state [B, T, O, X])`` (:meth:`CrossbarState.chip_weights`), or None (no such state, a read model
        with its own :meth:`array_weight` or :meth:`read_physics`, a gradient to keep). The kernel forms no
        slot's W + F (each slot a copy of its chip's W): the same read as :meth:`array_weight`'s up to the
        order of the sums."""
        own = (cls.array_weight.__func__ is not TiledAnalogMVM.array_weight.__func__
               or cls.read_physics.__func__ is not TiledAnalogMVM.read_physics.__func__)
        g_st = state.g_st
        if (own or g_st is None or g_st.requires_grad or not g_st.is_contiguous() or not cls.native_capable()
                or not native.usable(g_st)):
            return None
        chips = state.chip_weights()
        return None if chips is None else (*chips, g_st)

    @classmethod
    def read_physics(cls, state: CrossbarState, periphery: "PeripheryConfig") -> Dict[str, Any]:
        """The per-call physics this read model takes from the crossbar state (keyword arguments of
        :meth:`tiled_matmul` / :meth:`native_read`): here the device's read-noise variance. A read model
        that needs more (wire resistances, the pair conductances) extends the dict."""
        return {"noise_var": state.read_noise_var()}

    # -- entry points ---------------------------------------------------------------------------
    @classmethod
    def _native_pars(cls, weight: Tensor, x_tiled: Tensor, noise_var: Optional[Tensor],
                     io_pars: IOParameters) -> Optional[tuple]:
        """The native call's IO parameters for this read, or None when it must take the torch path
        (switched off or physics overridden, a gradient to keep, not a tiled input, no usable kernel,
        IO settings it lacks)."""
        if not cls.native_capable() or x_tiled.ndim != 3 or (torch.is_grad_enabled() and (
                weight.requires_grad or x_tiled.requires_grad)):
            return None
        if not native.usable(weight, x_tiled, *(() if noise_var is None else (noise_var,))):
            return None
        return _native_io(io_pars)

    @classmethod
    def native_read(cls, weight: Tensor, x_tiled: Tensor, io_pars: IOParameters, noise_var: Optional[Tensor] = None,
                    g_col: Optional[Tensor] = None, drive: Optional[Tensor] = None, drive_mode: int = 0,
                    shrink: float = 0.25, chip: Optional[Tuple[Tensor, Tensor, float]] = None) -> Optional[tuple]:
        """One inference read in one native call, with its checks and its recorded event, or None when the
        native read does not cover it (gradient, other IO settings or physics, no kernel). ``chip``: ``(each
        slot's chip [B], the slots' short-term state [B, T, O, X], its scale to weight units)`` when ``weight``
        and ``noise_var`` are per chip (:meth:`chip_read`).

        Returns ``(partial outputs [B, T, O], rounds, status)``: status 1 = the input holds NaN or inf
        (nothing read, no random draw), 2 = the output overflowed, 0 = fine; then, with ``g_col``
        ``[1 or B, T, J, X]`` (S) and ``drive`` (float64 ``[T * J]``) given, the read drive integral
        (:func:`read_drive`; ``drive_mode`` 0 amplitude, 1 PWM) was added to ``drive``.
        """
        pars = cls._native_pars(weight, x_tiled, noise_var, io_pars)
        if pars is None or (chip is not None and not native.usable(weight, chip[1])):
            return None
        slot_chip, st, alpha = chip if chip is not None else (None, None, 1.0)
        out, rounds, status = native.extension().io_mvm_read(weight, x_tiled.contiguous(), noise_var, *pars, g_col,
                                                             drive, int(drive_mode), float(shrink), st, slot_chip,
                                                             float(alpha))
        return out, rounds, status

    @classmethod
    def tiled_matmul(cls, weight: Tensor, x_tiled: Tensor, io_pars: IOParameters, is_test: bool = True,
                     noise_var: Optional[Tensor] = None, physics: Any = None, **kwargs: Any) -> Tuple[Tensor, int]:
        """(partial outputs ``[B, T, O]``, array reads taken) of a tiled MVM through aihwkit's IO model
        (native when possible). ``noise_var`` and ``physics``: :meth:`read_physics`."""
        pars = cls._native_pars(weight, x_tiled, noise_var, io_pars) if all(v is None for v in kwargs.values()) else None
        if pars is not None:
            out, rounds = native.extension().io_mvm(weight, x_tiled, noise_var, *pars)
            return out, rounds
        count = _Rounds()
        out = cls.matmul(weight, x_tiled, io_pars, False, is_test=is_test, noise_var=noise_var, rounds=count,
                         physics=physics, **kwargs)
        o = weight.shape[-2]
        if out.shape[-1] != o:  # aihwkit's all-zero-input shortcut sizes by weight.shape[0]
            out = x_tiled.new_zeros(x_tiled.shape[:-1] + (o,))
        return out, count.n


# -- the training read's gradient path and perturbations -------------------------------------------
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
    if modifier.per_batch_sample and w.ndim != 3:
        raise ConfigError("modifier.per_batch_sample = True: not supported together with a short-term "
                          "state (the weights are already per sample); set it to False")
    return TorchSimulatorTile.modify_weight(w, modifier, batch)


# -- the read of a crossbar state ---------------------------------------------------------------------
def input_drive(x_t: Tensor, io_pars: Any, periphery: PeripheryConfig) -> Tensor:
    """Normalised row drive per (vector, tile, row): x^2 (amplitude), |x| (PWM), bit count (bit-serial)."""
    nm = io_pars.noise_management
    if nm == NoiseManagementType.ABS_MAX:
        scale = x_t.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(x_t.dtype).tiny)
    elif nm == NoiseManagementType.CONSTANT and io_pars.nm_thres > 0:
        scale = io_pars.nm_thres
    else:
        scale = 1.0
    xn = (x_t / scale).clamp(-1.0, 1.0)
    mode = periphery.dac.mode
    if mode == "pwm":
        return xn.abs()
    if mode == "bit_serial":
        k = torch.round(xn.abs() * (2 ** (periphery.dac.bits - 1) - 1)).to(torch.int64)
        ones = torch.zeros_like(xn)
        for b in range(periphery.dac.bits):
            ones += ((k >> b) & 1).to(xn.dtype)
        return ones
    return xn * xn


def read_drive(state: CrossbarState, x_t: Tensor, rounds: int, io_pars: Any, periphery: PeripheryConfig,
               out: Optional[Tensor] = None) -> Tensor:
    """``drive_g_s`` per tile ``[T * J]`` (S, float64) of one read of ``x_t [N, T, X]`` that took ``rounds`` array reads.

    Sum over vectors and cells of the normalised row drive times the cell conductance (each term
    formed in the state's precision, summed in float64: the native read, which computes the same
    sum in the same call, gives the same numbers up to summation order). Bound management halves
    the input scale each repeat: round r drives 1/4**r of the first (amplitude) or 1/2**r (PWM,
    bit-serial). With ``out`` (float64) given, the result is added to it (and returned).
    """
    shrink = 0.25 if periphery.dac.mode == "multibit" else 0.5
    weight = (1.0 - shrink**rounds) / (1.0 - shrink)  # sum of shrink**r over the rounds
    if out is None:
        out = torch.zeros(state.n_tiles, dtype=torch.float64, device=state.g_pos.device)
    g_col = state.abs_column_conductance().double()  # [B or 1, T, J, X]
    mode = periphery.dac.mode
    if mode != "bit_serial" and io_pars.noise_management == NoiseManagementType.ABS_MAX:
        # (x / max|x|)^2 = x^2 / max(x^2) (amplitude), |x| / max|x| (PWM): the normalisation is
        # folded into one division per vector and tile
        xx = x_t * x_t if mode == "multibit" else x_t.abs()
        s2 = xx.amax(-1, keepdim=True).clamp_min_(torch.finfo(x_t.dtype).tiny)  # [N, T, 1]
        xx, s2 = xx.double(), s2.double()
        if g_col.shape[0] == 1:
            num = torch.bmm(xx.transpose(0, 1), g_col[0].transpose(1, 2)).transpose(0, 1)  # [N, T, J]
        else:
            num = torch.matmul(g_col, xx.unsqueeze(-1)).squeeze(-1)  # [N, T, J]
        return out.add_((num / s2).sum(0).reshape(-1), alpha=weight)
    drive = input_drive(x_t, io_pars, periphery).double()
    if g_col.shape[0] == 1:
        g = (drive.sum(0).unsqueeze(1) * g_col[0]).sum(-1)
    else:
        g = (drive.unsqueeze(2) * g_col).sum((0, -1))
    return out.add_(g.reshape(-1), alpha=weight)


def analog_read(state: CrossbarState, x: Tensor, io_pars: Any, mvm: type, periphery: "PeripheryConfig",
                weight_param: Optional[Tensor] = None,
                is_test: bool = True, modifier: Any = None, out_noise_values: Optional[Tensor] = None,
                sink: Optional["EventSink"] = None) -> Tuple[Tensor, int]:
    """One analog MVM of ``x [N, in]`` over ``state`` through the read model ``mvm`` (the configuration's
    :class:`TiledAnalogMVM` class): (per-tile partial outputs ``[N, T, O]``, read rounds taken),
    recorded in ``sink`` if it records (:func:`record_read`).

    The per-call physics (the device's read noise; a read model's own needs, e.g. the wires of
    ``periphery``) comes from ``mvm.read_physics(state, periphery)`` and is passed as arguments.
    ``weight_param`` (tiled ``[T, O, X]``, or per-tile blocks: :func:`straight_through`) gives the
    straight-through gradient path; ``modifier`` and ``out_noise_values`` are aihwkit's
    training-read perturbations. NaN/inf inputs and an output that overflows raise ``ConfigError``
    (nothing is recorded). An inference read runs in one native call where it can
    (:meth:`TiledAnalogMVM.native_read`: the same result as aihwkit's path, bit for bit, except the chip
    form of per-chip-slot state, :meth:`TiledAnalogMVM.chip_read`, equal up to the order of the sums;
    the checks and the read's drive integral come out of the same call).
    """
    x_t = state.to_tiled(x)
    mvm = mvm.for_state(state, periphery, x_t.shape[0])
    rec = sink if sink is not None and sink.recording else None
    w = physics = None
    if weight_param is None and modifier is None and out_noise_values is None:
        drive = rec._native_drive(io_pars) if rec is not None and not mvm.own_drive() else None
        a = None if drive is None else rec._read_acc()
        chip = mvm.chip_read(state, periphery)
        if chip is not None:  # per-chip W and noise variance, the slots' F: no slot's W + F formed
            args, chip = chip[:2], (chip[2], chip[3], 1.0 / state.device_model.g_range_s)
        else:
            w, physics = mvm.array_weight(state, periphery), mvm.read_physics(state, periphery)
            args = (w, physics["noise_var"])
        got = mvm.native_read(
            args[0], x_t, io_pars, args[1], None if a is None else state.abs_column_conductance().contiguous(),
            None if a is None else a[3], *(drive or (0, 0.25)), chip=chip)
        if got is not None:
            y, rounds, status = got
            if status == 1:
                check_finite("forward: tile input", x)  # raises
            if status == 2:
                _overflow(x)
            if rec is not None:
                if a is None:
                    record_read(rec, x_t, rounds, io_pars, mvm)
                else:
                    rec.count_read(x_t.shape[0], rounds)  # the native call added the drive itself
            return y, rounds
    check_finite("forward: tile input", x)
    if w is None:
        w, physics = mvm.array_weight(state, periphery), mvm.read_physics(state, periphery)
    if weight_param is not None:
        w = straight_through(w, weight_param)
    if modifier is not None:  # aihwkit weight modifier, training reads only
        w = apply_modifier(w, modifier, x.shape[0])
    y, rounds = mvm.tiled_matmul(w, x_t, io_pars, is_test=is_test, out_noise_values=out_noise_values, **physics)
    if not torch.isfinite(y).all():
        _overflow(x)
    if rec is not None:
        record_read(rec, x_t.detach(), rounds, io_pars, mvm)
    return y, rounds


def record_read(sink: "EventSink", x_t: Tensor, rounds: int, io_pars: Any, mvm: type = TiledAnalogMVM) -> None:
    """Record in ``sink`` one read of ``x_t [N, T, X]`` that took ``rounds`` array reads, with its drive
    integral (the read model's :meth:`TiledAnalogMVM.record_drive`); an all-zero input aihwkit
    short-cuts (0 rounds) is still one read."""
    drive = sink.count_read(x_t.shape[0], rounds)
    mvm.record_drive(sink.state, x_t, max(rounds, 1), io_pars, sink.periphery, drive, sink.wire_acc())


def _overflow(x: Tensor) -> None:
    raise ConfigError(
        f"forward: tile output overflowed to inf/NaN (input max |x| = {float(x.abs().max()):.4g}): "
        "scale the inputs so that |x| times the output range stays within float range")


