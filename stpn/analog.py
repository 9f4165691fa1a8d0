"""The analog m-STPN layer: the m-STPN cell whose synapses live on STO crossbar tiles.

Per agent step (docs/design.md §4a):

1. digital periphery: z_hat = [x ; h_prev] / max|.| (the DAC range);
2. analog: a = (G_W + G_F) z_hat through DAC -> tiles -> ADC (aihwkit ``AnalogLinear`` on
   ``STORPUConfig``; one chip state F per environment), partial sums accumulated digitally;
3. digital neuron: h = tanh(gain * a + b);
4. the step period passes: F decays at each synapse's bias for ``dt_s`` simulated seconds;
5. digital Hebbian magnitude Gamma * (h z_hat^T), sent to the synapses as discrete short-term
   pulses (only where the update rounds to a pulse).

The Hebbian rule (step 5) is the network's: this module asks the substrate for the generic
operation "decay for dt, then apply the requested change scale * (u v^T)"
(:meth:`~stoxbar.crossbar.substrate.SubstrateOps.decay_and_outer_update`) with scale = Gamma,
u = h (post) and v = z_hat (pre); the crossbar knows no learning rule.

Steps 4-5 give F <- Q-pulses(Lambda F) + dF_q, the digital m-STPN's F <- Lambda F + dF_q (the
pulse lands at the end of the interval, just before the next read). With the ``ideal`` device and
perfect IO the layer reproduces :class:`~stoxbar.stpn.cells.MSTPNCell` (tested).

``chip_device`` (default: ``device``) is the STO device the tiles are made of; ``device`` is the one
the network was trained for. They differ in device studies (e.g. a narrower tau range).

Programming the chip (``program``) is a one-off cost, not a per-step one: :meth:`attach` leaves it
out of the step ledger (it stays pending, :func:`stoxbar.crossbar.pending_events` reports it).

Weights are mapped without digital rescaling (``weight_scaling_omega = 0``): W in weight units is
the conductance difference itself, so F (conductance) and W add on the same scale.

May import: aihwkit, torch, stoxbar.crossbar, stoxbar.peripherals, stoxbar.stpn.cells.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from aihwkit.nn import AnalogLinear
from aihwkit.simulator.parameters.mapping import MappingParameter

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger
from stoxbar.peripherals import PeripheryConfig
from stoxbar.stpn.cells import MSTPNCell

State = Tuple[Tensor, Tensor]


class AnalogMSTPNCell(MSTPNCell):
    """m-STPN cell on STO tiles (see module docstring). Inference only (no gradients)."""

    def __init__(self, n_in: int, hidden: int, device, dt_s: float, periphery: Optional[PeripheryConfig] = None,
                 perfect_io: bool = False, chip_device=None, decay_addressing: str = "per_cell"):
        super().__init__(n_in, hidden, device, dt_s, use_kernel=False, decay_addressing=decay_addressing)
        self.chip_device = chip_device if chip_device is not None else device
        # no drift compensation: a game lasts minutes, the long-term state does not drift within it, and
        # the chip has no compensation circuit to book (aihwkit would scale every output by alpha)
        cfg = STORPUConfig(device=self.chip_device, periphery=periphery or PeripheryConfig(),
                           mapping=MappingParameter(weight_scaling_omega=0.0), drift_compensation=None)
        cfg.forward.is_perfect = perfect_io
        self.rpu_config = cfg
        self.syn = AnalogLinear(self.n_pre, hidden, bias=False, rpu_config=cfg)
        self.syn.eval()
        self._gam_tiled: Optional[Tensor] = None
        self._counts: Optional[Tensor] = None
        self._params: Optional[Tuple[Tensor, Tensor]] = None

    @property
    def array(self):
        """The layer's STO tile array (or single tile)."""
        return self.syn.analog_module

    @property
    def chip(self):
        """Physical state of all tiles (:class:`~stoxbar.crossbar.state.CrossbarState`)."""
        return self.array.state

    def attach(self, ledger: Optional[EnergyLedger], layer: str = "stp", book_programming: bool = False) -> None:
        """Book this layer's events in ``ledger`` under ``layer`` (programming only if ``book_programming``)."""
        attach_ledger(self.syn, ledger, prefix=layer, book_pending=book_programming)

    @torch.no_grad()
    def program(self) -> None:
        """Write the learned W onto the conductances and Lambda onto the bias voltages."""
        self.syn.set_weights(self.W.detach())
        self.array.set_bias(self.v_bias())
        self._gam_tiled = self.chip.tiled_weight(self.gam.detach())
        self._params = (self.lambda_().detach(), self.gam.detach())

    @torch.no_grad()
    def program_chips(self, chips: int, slots_per_chip: int, generator: Optional[torch.Generator] = None) -> list:
        """Program the learned W onto ``chips`` chip instances at once (each its own programming draws,
        ``CrossbarState.program_chips``), ``slots_per_chip`` games per chip; call after :meth:`program`
        (the biases and Gamma are the same on every chip). Returns (pulses, J) per chip."""
        if self._params is None:
            raise RuntimeError("program() the analog cell before program_chips()")
        costs = self.chip.program_chips(self.W.detach(), chips, slots_per_chip,
                                        self.rpu_config.periphery.programming, generator)
        self.array._after_state_change()
        dev = self.chip.g_pos.device  # the fixed step tensors follow the chips' torch device
        self._gam_tiled = self._gam_tiled.to(dev)
        self._params = tuple(p.to(dev) for p in self._params)
        return costs

    def v_bias(self, device=None) -> Tensor:
        """Bias (V) realising each learned tau on the chip's device (default), clamped to its range.

        ``device`` is the one the network was trained for (it fixes the learned taus);
        ``chip_device`` is the one the tiles are made of; the decay on the tiles follows its law.
        """
        return super().v_bias(self.chip_device if device is None else device)

    @classmethod
    def from_cell(cls, cell: MSTPNCell, periphery: PeripheryConfig, chip_device=None) -> "AnalogMSTPNCell":
        """A programmed analog copy of a trained m-STPN cell on tiles of ``chip_device`` (default: its own)."""
        analog = cls(cell.n_in, cell.hidden, cell.device, cell.dt_s, periphery, chip_device=chip_device,
                     decay_addressing=cell.decay_addressing)
        analog.load_state_dict(cell.state_dict(), strict=False)
        analog.h_feedback = cell.h_feedback
        analog.program()
        return analog

    def step_params(self) -> Tuple[Tensor, Tensor]:
        """(Lambda, Gamma) fixed at programming time (the chip holds them as biases and digital Gamma)."""
        if self._params is None:
            raise RuntimeError("program() the analog cell before running it")
        return self._params

    def initial_state(self, batch: int) -> State:
        """Zero h; one zeroed chip (short-term state) per environment."""
        self.array.set_batch(batch)
        # F lives on the chips; the state carries a zero-stride placeholder of F's shape.
        dev = self.chip.g_pos.device
        return (torch.zeros(batch, self.hidden, device=dev),
                torch.zeros(1, device=dev).expand(batch, self.hidden, self.n_pre))

    def reset_state(self, state: State, done: Tensor) -> State:  # type: ignore[override]
        """Zero h and the chips' F where ``done``."""
        h, f = state
        self.chip.reset_short_term(done)
        return h * (~done.bool()).to(h.dtype).unsqueeze(1), f

    def keep_slots(self, state: State, keep: Tensor) -> State:
        """Keep the environments where ``keep [B]``: their h and their chip slots (F and, per chip, G)."""
        h, _ = state
        self.array.keep_slots(keep)
        h = h[keep]
        return h, torch.zeros(1, device=h.device).expand(h.shape[0], self.hidden, self.n_pre)

    def mvm(self, z_hat: Tensor, F: Tensor) -> Tensor:
        """Analog read of (G_W + G_F) z_hat on the tiles (F lives on the chips)."""
        return self.syn(z_hat)

    def plastic_update(self, F: Tensor, h: Tensor, z_hat: Tensor, params=None) -> Tuple[Tensor, Tensor]:
        """Decay for one step period, then the Hebbian request Gamma * (h z_hat^T) as device pulses.

        The rule is this network's; the substrate only decays and applies the requested
        outer-product change. Returns (F dummy, levels).
        """
        if self._gam_tiled is None:
            raise RuntimeError("program() the analog cell before running it")
        level, self._counts = self.array.decay_and_outer_update(self.dt_s, self._gam_tiled, h,
                                                                self.chip.to_tiled(z_hat), levels=self.record_levels)
        return F, level  # level None unless recorded: the chip counted the pulses (level_counts)

    def level_counts(self, idx: Optional[Tensor]) -> Tensor:
        """Pulses per level of the last update, [B, L], as the chip counted them while pulsing."""
        return self._counts

    @torch.no_grad()
    def short_term_weights(self) -> Tensor:
        """F of every chip in weight units, [B, H, P] (for checks)."""
        return self.chip.from_tiled(self.chip.g_st) / self.chip_device.g_range_s
