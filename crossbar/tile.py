"""aihwkit tiles whose synapses are STO memristor pairs, with the generic substrate operations.

* :class:`STOSimulatorTile` is the simulator tile (``rpu_config.simulator_tile_class``): it keeps
  the physical state (:class:`~stoxbar.crossbar.state.CrossbarState`, siemens) instead of a bare
  weight matrix, reads it through aihwkit's ``AnalogMVM`` with the IO parameters derived from the
  periphery, and records what every operation did (:class:`~stoxbar.crossbar.events.Events`).
* :class:`STOTile` is the tile module (``rpu_config.tile_class``): aihwkit's
  ``TorchInferenceTile`` plus the substrate operations of :class:`SubstrateOps`.

Substrate operations (units in brackets; none knows a learning rule):

* program ``set_weights(w)`` (weight units, write-verify or open-loop as the periphery says);
* read: the forward pass (an MVM, through DAC -> array -> ADC);
* ``apply_short_term(request)``: a requested conductance change (weight units) discretised by the
  device into pulses;
* ``decay(dt_s)`` [s] under the held bias; ``set_bias(v)`` [V] sets and holds it, ``hold(on)``;
* ``decay_and_outer_update(dt_s, scale, u, v)``: decay for ``dt_s``, then apply the requested
  change ``scale * (u v^T)`` (the rows and columns driven as in a crossbar outer-product update).

Events are recorded by the tile's :class:`~stoxbar.crossbar.recorder.EventSink` and booked in the
attached :class:`~stoxbar.crossbar.ledger.EnergyLedger` through the one cost model
(:func:`~stoxbar.crossbar.costs.cost`), per tile (key ``"i.j"``), when the owner flushes them
(:func:`~stoxbar.crossbar.recorder.flush_events`). Programming done while no
ledger is attached (aihwkit's ``convert_to_analog``, a layer's constructor) is kept as pending
events and booked when a ledger is attached (:meth:`~stoxbar.crossbar.recorder.EventSink.pending_events` reports them).

The aihwkit ``weight`` parameter is kept as the programmed target so aihwkit's optimisers and
hardware-aware training still work: the forward pass uses the conductances' value with the
gradient of ``weight`` (straight-through); after each update the conductances are brought to it
(:mod:`~stoxbar.crossbar.aihwkit_compat`, docs/aihwkit-support.md).

May import: aihwkit, stoxbar.devices, stoxbar.peripherals, stoxbar.crossbar.{state,events,recorder,mvm,aihwkit_compat}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import NoiseManagementType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

from stoxbar.crossbar.aihwkit_compat import STOSimulatorTileCompat, STOTileCompat, apply_modifier, straight_through
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.mvm import TiledAnalogMVM
from stoxbar.crossbar.recorder import EventSink
from stoxbar.crossbar.state import CrossbarState, check_finite
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.validation import ConfigError

if TYPE_CHECKING:
    from stoxbar.crossbar.config import STORPUConfig


def record_read(sink: EventSink, x_t: Tensor, rounds: int, io_pars: Any, nm_scale: Optional[Tensor] = None) -> None:
    """Record in ``sink`` one read of ``x_t [N, T, X]`` that took ``rounds`` array reads, with its drive
    integral (:func:`read_drive`)."""
    drive = sink.count_read(x_t.shape[0], rounds)
    read_drive(sink.state, x_t, max(rounds, 1), io_pars, sink.periphery, out=drive, nm_scale=nm_scale)


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
               out: Optional[Tensor] = None, nm_scale: Optional[Tensor] = None) -> Tensor:
    """``drive_g_s`` per tile ``[T * J]`` (S, float64) of one read of ``x_t [N, T, X]`` that took ``rounds`` array reads.

    Sum over vectors and cells of the normalised row drive times the cell conductance (each term
    formed in the state's precision, summed in float64: the native read, which computes the same
    sum in the same call, gives the same numbers up to summation order). Bound management halves
    the input scale each repeat: round r drives 1/4**r of the first (amplitude) or 1/2**r (PWM,
    bit-serial). With ``out`` (float64) given, the result is added to it (and returned).
    ``nm_scale`` is the abs-max input scale aihwkit used for this read (``[N, T, 1]``), if known.
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
        if nm_scale is not None and nm_scale.shape == x_t.shape[:-1] + (1,):
            s2 = nm_scale * nm_scale if mode == "multibit" else nm_scale  # aihwkit set its zeros to 1
        else:
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


def analog_read(state: CrossbarState, x: Tensor, io_pars: Any, weight_param: Optional[Tensor] = None,
                is_test: bool = True, modifier: Any = None, out_noise_values: Optional[Tensor] = None,
                sink: Optional[EventSink] = None) -> Tuple[Tensor, int]:
    """One analog MVM of ``x [N, in]`` over ``state``: (per-tile partial outputs ``[N, T, O]``, read
    rounds taken), recorded in ``sink`` if it records (:func:`record_read`).

    ``weight_param`` (tiled ``[T, O, X]``, or per-tile blocks: :func:`straight_through`) gives the
    straight-through gradient path; ``modifier``
    and ``out_noise_values`` are aihwkit's training-read perturbations (aihwkit_compat). NaN/inf
    inputs and an output that overflows raise ``ConfigError`` (nothing is recorded). An inference
    read runs in one native call where it can (:meth:`TiledAnalogMVM.native_read`: the same result
    as aihwkit's path; the checks and the read's drive integral come out of the same call).
    """
    x_t = state.to_tiled(x)
    w = state.effective_weight()
    rec = sink if sink is not None and sink.recording else None
    if weight_param is None and modifier is None and out_noise_values is None:
        drive = rec._native_drive(io_pars) if rec is not None else None
        a = None if drive is None else rec._read_acc()
        got = TiledAnalogMVM.native_read(
            w, x_t, io_pars, state.read_noise_var(), None if a is None else state.abs_column_conductance().contiguous(),
            None if a is None else a[3], *(drive or (0, 0.25)))
        if got is not None:
            y, rounds, status = got
            if status == 1:
                check_finite("forward: tile input", x)  # raises
            if status == 2:
                _overflow(x)
            if rec is not None:
                if a is None:
                    record_read(rec, x_t, rounds, io_pars)
                else:
                    rec.count_read(x_t.shape[0], rounds)
            return y, rounds
    check_finite("forward: tile input", x)
    if weight_param is not None:
        w = straight_through(w, weight_param)
    if modifier is not None:  # aihwkit weight modifier, training reads only (aihwkit_compat)
        w = apply_modifier(w, modifier, x.shape[0])
    with TiledAnalogMVM.reading(state.read_noise_var()) as mvm:
        y = mvm.tiled_matmul(w, x_t, io_pars, is_test=is_test, out_noise_values=out_noise_values)
        rounds, nm_scale = mvm.rounds, mvm.nm_scale
    if not torch.isfinite(y).all():
        _overflow(x)
    if rec is not None:
        record_read(rec, x_t.detach(), rounds, io_pars, nm_scale)
    return y, rounds


def _overflow(x: Tensor) -> None:
    raise ConfigError(
        f"forward: tile output overflowed to inf/NaN (input max |x| = {float(x.abs().max()):.4g}): "
        "scale the inputs so that |x| times the output range stays within float range")


class STOSimulatorTile(STOSimulatorTileCompat, TorchSimulatorTile, EventSink):
    """Simulator tile holding one STO crossbar tile's conductances (see module docstring)."""

    def __init__(self, x_size: int, d_size: int, rpu_config: "STORPUConfig", bias: bool = False):
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=TiledAnalogMVM)
        self.state = CrossbarState([x_size], d_size, rpu_config.device)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self.programming = rpu_config.periphery.programming

    def set_weights(self, weight: Tensor) -> None:
        """Program ``weight [d, x]`` (|w| <= 1) onto the conductance pairs."""
        self.weight.data = weight.detach().clone().to(self.weight.device, self.weight.dtype)
        pulses, energy = self.state.program(self.weight.data, self.programming)
        self.mark_programmed()
        self.emit(self.tile_name, Events("program", self.x_size, self.d_size, self.row_tile, self.row_tiles,
                                         program_pulses=pulses, program_device_j=energy))

    def get_weights(self) -> Tensor:
        """Weights the conductances hold now (long-term part), ``[d, x]``."""
        return self.state.from_tiled(self.state.weights()).detach().cpu()

    def forward(self, x_input: Tensor, bias: bool = False, in_trans: bool = False, out_trans: bool = False,
                is_test: bool = False, non_blocking: bool = False) -> Tensor:
        if in_trans or out_trans or bias:
            raise NotImplementedError("STO tiles support plain (non-transposed, digital-bias) MVMs only")
        self.sync_device()  # a plain torch optimiser changed the weights: program them first
        lead = x_input.shape[:-1]
        weight_param = self.weight.unsqueeze(0) if (torch.is_grad_enabled() and self.weight.requires_grad) else None
        y, _ = analog_read(self.state, x_input.reshape(-1, self.x_size), self._f_io, weight_param,
                           is_test, self.read_modifier(is_test), self.out_noise_values, sink=self)
        return y.sum(1).reshape(*lead, self.d_size)


class SubstrateOps:
    """The short-term substrate operations shared by a tile module and a tile array.

    Subclasses give ``_sink()`` (where events go).
    """

    state: CrossbarState

    def _sink(self) -> EventSink:  # pragma: no cover - abstract
        raise NotImplementedError

    def _after_state_change(self) -> None:
        """Hook: re-point per-tile views after the state's tensors were replaced."""

    def set_batch(self, batch: int) -> None:
        """Allocate (zeroed) short-term state for ``batch`` independent chips."""
        self.state.set_batch(batch)
        self._after_state_change()

    def set_bias(self, v_bias: Tensor) -> None:
        """Set and hold the per-synapse decay bias ``[out, in]`` (V)."""
        self.state.set_bias(v_bias)
        self._after_state_change()

    def hold(self, on: bool = True) -> None:
        """Hold (or release) the decay bias."""
        self.state.hold(on)
        self._after_state_change()

    def _emit_pulses(self, tile_counts: Tensor) -> None:
        sink = self._sink()
        if sink.recording:
            sink.record_pulses(tile_counts)

    def _emit_decay(self, dt_s: float, bias_energy_j: Optional[Tensor]) -> None:
        sink = self._sink()
        if sink.recording:
            sink.record_decay(dt_s, self.state.chips, bias_energy_j)

    def apply_short_term(self, request: Tensor, tiled: bool = False) -> Tensor:
        """Apply the requested change ``request`` ([B, out, in], or [B, T, O, X] if ``tiled``, weight
        units) as device pulses; returns the signed levels (tiled)."""
        st = self.state
        level, tiles = st.apply_short_term(request if tiled else st.tiled_weight(request))
        self._emit_pulses(tiles)
        return level

    short_term_update = apply_short_term  # earlier name of the same operation

    def decay(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds of decay pass under the held bias."""
        self._emit_decay(dt_s, self.state.decay(dt_s))

    def decay_and_outer_update(self, dt_s: float, scale: Tensor, u: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        """Decay for ``dt_s`` s, then apply ``scale * (u v^T)`` (tiled; ``CrossbarState.decay_and_outer_update``).

        Returns (signed levels [B, T, O, X], pulses per level [B, L]).
        """
        recording = self._sink().recording
        level, counts, bias_j, tiles = self.state.decay_and_outer_update(dt_s, scale, u, v, per_tile=recording)
        if recording:
            self._emit_decay(dt_s, bias_j)
            self._emit_pulses(tiles)
        return level, counts


class STOTile(STOTileCompat, TorchInferenceTile, SubstrateOps):
    """aihwkit tile module for STO crossbars, with the substrate operations."""

    @property
    def state(self) -> CrossbarState:  # type: ignore[override]
        """The simulator tile's physical state."""
        return self.tile.state

    def _sink(self) -> EventSink:
        return self.tile

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return self.tile.pending_events()
