"""The short-term substrate operations shared by a tile module and a tile array.

``set_batch``, ``set_bias``, ``hold``, ``apply_short_term``, ``decay`` and the fused
``decay_and_outer_update`` run on the object's :class:`~stoxbar.crossbar.state.CrossbarState` and
send what happened (pulses per tile and level, bias energy) to its event sink
(``_sink()``: the simulator tile of a tile module, or the array itself).

May import: torch, stoxbar.crossbar.{state,parasitics}.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from torch import Tensor

from stoxbar.crossbar.parasitics import held_bias_cells
from stoxbar.crossbar.state import CrossbarState


class SubstrateOps:
    """The short-term substrate operations shared by a tile module and a tile array.

    Subclasses give ``_sink()`` (where events go).
    """

    state: CrossbarState

    def _sink(self) -> Any:  # pragma: no cover - abstract (an EventSink, crossbar/tile.py)
        raise NotImplementedError

    def _after_state_change(self) -> None:
        """Hook: re-point per-tile views after the state's tensors were replaced."""

    def set_batch(self, batch: int) -> None:
        """Allocate (zeroed) short-term state for ``batch`` independent chips."""
        self.state.set_batch(batch)
        self._after_state_change()

    def keep_slots(self, keep: Tensor) -> None:
        """Keep only the batch slots where ``keep [B]`` is true (``CrossbarState.keep_slots``)."""
        self.state.keep_slots(keep)
        self._after_state_change()

    def set_bias(self, v_bias: Tensor) -> Any:
        """Set and hold the decay bias ``[out, in]`` (V) as the periphery's ``bias_addressing`` can
        hold it (its rails and duty; the rail of a linear supply or of per-cell access); returns
        the projection's :class:`~stoxbar.crossbar.bias.BiasReport`."""
        p = self._sink().periphery
        linear = p.bias_addressing == "per_cell" or p.bias_driver.supply == "linear"
        rail = p.bias_driver.v_rail_v
        rail = self.state.device_model.v_bias_max_v if rail is None else rail
        drop = None
        if p.parasitics.mode != "off":  # the held bias's network solved in full: the cells hold what the wires leave
            def drop(state, held):
                return held_bias_cells(state, held, p.parasitics, p.bias_addressing)
        report = self.state.set_bias(v_bias, p.bias_addressing, p.bias_rails_v, p.bias_duty,
                                     rail if linear else None, wire_drop=drop)
        self._after_state_change()
        return report

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

    def decay_and_outer_update(self, dt_s: float, scale: Tensor, u: Tensor, v: Tensor,
                               levels: bool = True) -> Tuple[Optional[Tensor], Tensor]:
        """Decay for ``dt_s`` s, then apply ``scale * (u v^T)`` (tiled; ``CrossbarState.decay_and_outer_update``).

        Returns (signed levels [B, T, O, X], pulses per level [B, L]); ``levels=False``: the levels are not
        kept (None; the counts and the events are the same).
        """
        recording = self._sink().recording
        level, counts, bias_j, tiles = self.state.decay_and_outer_update(dt_s, scale, u, v, per_tile=recording,
                                                                         levels=levels)
        if recording:
            self._emit_decay(dt_s, bias_j)
            self._emit_pulses(tiles)
        return level, counts
