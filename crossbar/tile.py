"""aihwkit tiles whose synapses are STO memristor pairs.

* :class:`STOSimulatorTile` is the simulator tile (``rpu_config.simulator_tile_class``): it keeps
  the physical state (:class:`~stoxbar.crossbar.state.CrossbarState`, siemens) instead of a bare
  weight matrix, reads it through aihwkit's ``AnalogMVM`` with the IO parameters derived from the
  periphery, and books every event in the energy ledger.
* :class:`STOTile` is the tile module (``rpu_config.tile_class``): aihwkit's
  ``TorchInferenceTile`` plus the short-term plasticity verbs (``set_batch``,
  ``short_term_update``, ``decay``, ``set_bias``).

The aihwkit ``weight`` parameter is kept as the programmed target so aihwkit's optimisers and
hardware-aware training still work: the forward pass uses the conductances' value with the
gradient of ``weight`` (straight-through); after each update the conductances are brought to it
(:mod:`~stoxbar.crossbar.aihwkit_compat`, docs/aihwkit-support.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

from stoxbar.crossbar.aihwkit_compat import STOSimulatorTileCompat, STOTileCompat, apply_modifier
from stoxbar.crossbar.costs import CrossbarCosts
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.crossbar.mvm import TiledAnalogMVM
from stoxbar.crossbar.state import CrossbarState, check_finite

if TYPE_CHECKING:
    from stoxbar.crossbar.config import STORPUConfig


class LedgerMixin:
    """Where a tile or array books its events: ``ledger`` and the names used as keys."""

    ledger: Optional[EnergyLedger] = None
    layer_name: str = "layer"
    tile_name: str = "0.0"

    def attach(self, ledger: Optional[EnergyLedger], layer_name: str) -> None:
        """Book future events of this object in ``ledger`` under ``layer_name``."""
        self.ledger = ledger
        self.layer_name = layer_name


def analog_read(state: CrossbarState, x: Tensor, io_pars: Any, costs: CrossbarCosts, ledger: Optional[EnergyLedger],
                layer: str, tile: str, weight_param: Optional[Tensor] = None, is_test: bool = True,
                modifier: Any = None, out_noise_values: Optional[Tensor] = None) -> Tensor:
    """One analog MVM of ``x [N, in]`` over ``state``: per-tile partial outputs ``[N, T, O]``.

    ``weight_param`` (tiled ``[T, O, X]``) gives the straight-through gradient path.
    """
    check_finite("tile input", x)
    x_t = state.to_tiled(x)
    w = state.effective_weight()
    if weight_param is not None:
        w = w + (weight_param - weight_param.detach())
    if modifier is not None:  # aihwkit weight modifier, training reads only (aihwkit_compat)
        w = apply_modifier(w, modifier, x.shape[0])
    with TiledAnalogMVM.reading(state.read_noise_var()) as mvm:
        y = mvm.tiled_matmul(w, x_t, io_pars, is_test=is_test, out_noise_values=out_noise_values)
        rounds = mvm.rounds
    if ledger is not None and ledger.enabled:
        costs.record_mvm(ledger, layer, tile, state, x_t.detach(), rounds, io_pars)
    return y


class STOSimulatorTile(STOSimulatorTileCompat, TorchSimulatorTile, LedgerMixin):
    """Simulator tile holding one STO crossbar tile's conductances (see module docstring)."""

    def __init__(self, x_size: int, d_size: int, rpu_config: "STORPUConfig", bias: bool = False):
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=TiledAnalogMVM)
        self.state = CrossbarState([x_size], d_size, rpu_config.device)
        self.costs = CrossbarCosts(rpu_config.device, rpu_config.periphery)
        self.programming = rpu_config.periphery.programming

    def set_weights(self, weight: Tensor) -> None:
        """Program ``weight [d, x]`` (|w| <= 1) onto the conductance pairs."""
        self.weight.data = weight.detach().clone().to(self.weight.device, self.weight.dtype)
        pulses, energy = self.state.program(self.weight.data, self.programming)
        self.mark_programmed()
        if self.ledger is not None:
            self.costs.record_program(self.ledger, self.layer_name, self.tile_name, pulses, energy)

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
        y = analog_read(self.state, x_input.reshape(-1, self.x_size), self._f_io, self.costs, self.ledger,
                        self.layer_name, self.tile_name, weight_param, is_test,
                        self.read_modifier(is_test), self.out_noise_values)
        return y.sum(1).reshape(*lead, self.d_size)


class STOTile(STOTileCompat, TorchInferenceTile):
    """aihwkit tile module for STO crossbars, with short-term plasticity verbs."""

    @property
    def state(self) -> CrossbarState:
        """The simulator tile's physical state."""
        return self.tile.state

    def set_batch(self, batch: int) -> None:
        """Allocate short-term state for ``batch`` independent chips."""
        self.tile.state.set_batch(batch)

    def set_bias(self, v_bias: Tensor) -> None:
        """Per-synapse decay bias ``[out, in]`` in volts."""
        self.tile.state.set_bias(v_bias)

    def short_term_update(self, delta_w: Tensor, tiled: bool = False) -> Tensor:
        """Apply ``delta_w`` ([B, out, in], or [B, 1, out, in] if ``tiled``) as pulses; returns levels."""
        st = self.tile.state
        level, n, energy = st.short_term_update(delta_w if tiled else st.tiled_weight(delta_w))
        if self.tile.ledger is not None:
            self.tile.costs.record_short_term(self.tile.ledger, self.tile.layer_name, self.tile.tile_name, st, n, energy)
        return level

    def decay(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds of decay pass under the held bias."""
        energy, held = self.tile.state.decay(dt_s)
        if self.tile.ledger is not None:
            self.tile.costs.record_decay(self.tile.ledger, self.tile.layer_name, self.tile.tile_name,
                                         self.tile.state, energy, held, dt_s)

    def hebbian_step(self, dt_s: float, gam: Tensor, post: Tensor, pre: Tensor) -> Tuple[Tensor, Tensor]:
        """Decay for ``dt_s`` s, then pulse ``gam * post pre^T`` (tiled, ``CrossbarState.hebbian_step``).

        Returns (signed levels [B, 1, out, in], pulses per level [B, L]).
        """
        t = self.tile
        level, counts, decayed, pulsed = t.state.hebbian_step(dt_s, gam, post, pre)
        if t.ledger is not None:
            t.costs.record_hebbian_step(t.ledger, t.layer_name, t.tile_name, t.state, decayed, pulsed, dt_s)
        return level, counts
