"""A layer's STO tiles run as one batched analog operation.

aihwkit's ``TileModuleArray`` loops over its tiles in Python. :class:`STOTileArray` keeps the
same tiles (so ``analog_summary``, ``array[i][j]`` and per-tile access work as in aihwkit) but
holds their conductances in one :class:`~stoxbar.crossbar.state.CrossbarState`; each tile's
state tensors are *views* into it. The forward pass is then a single call of aihwkit's IO-managed
MVM over all tiles (per-tile DAC ranges, ADCs and noise), followed by the digital partial-sum
accumulation across row-tiles.

Difference to the per-tile loop: iterative bound management repeats a read for the whole layer
when any tile's ADC clips (aihwkit's torch tile already does this batch-wide); with
``bound_management = none`` the two are identical. The events say what this simulation did:
every tile of the layer is re-read as often as the batched MVM took rounds.

Events are booked per tile (key ``"i.j"`` = ``array[i][j]``), through the one cost model; the
substrate operations are those of :class:`~stoxbar.crossbar.tile.SubstrateOps`.

May import: aihwkit, stoxbar.crossbar.{state,tile,events,recorder,aihwkit_compat}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.tiles.array import TileModuleArray

from stoxbar.crossbar.aihwkit_compat import STOTileArrayCompat
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.state import CrossbarState
from stoxbar.crossbar.recorder import EventSink
from stoxbar.crossbar.tile import SubstrateOps, analog_read

if TYPE_CHECKING:
    from stoxbar.crossbar.config import STORPUConfig


def _attr(module: torch.nn.Module, name: str) -> Any:
    """``getattr(module, name)`` as ``nn.Module`` resolves it (instance dict, parameters, buffers), without
    its ``__getattr__`` call on the hot path."""
    d = module.__dict__
    if name in d:
        return d[name]
    for store in ("_parameters", "_buffers"):
        held = d.get(store)
        if held is not None and name in held:
            return held[name]
    return getattr(module, name)


class STOTileArray(STOTileArrayCompat, TileModuleArray, EventSink, SubstrateOps):
    """Tiled STO layer with shared state and a batched forward (see module docstring)."""

    def __init__(self, out_size: int, in_size: int, rpu_config: "STORPUConfig", bias: bool = False, **kwargs: Any):
        super().__init__(out_size, in_size, rpu_config, bias, **kwargs)
        self.rpu_config = rpu_config
        self.state = CrossbarState(self.in_sizes, out_size, rpu_config.device, out_sizes=self.out_sizes)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self._o_starts = [sum(self.out_sizes[:j]) for j in range(len(self.out_sizes))]
        self._bind_tiles()
        for *_, tile in self._tiles():  # their constructor's programming was of states now replaced
            tile.tile._pending.clear()

    # -- tiles as views --------------------------------------------------------------------
    def _tiles(self) -> List[tuple]:
        """(row-tile i, column-tile j, rows, first output, outputs, tile module) of every tile (a fixed list)."""
        found = self.__dict__.get("_tile_list")
        if found is None:
            found = [(i, j, n_in, o0, n_out, tile)
                     for i, (n_in, row) in enumerate(zip(self.in_sizes, self.array))
                     for j, (o0, n_out, tile) in enumerate(zip(self._o_starts, self.out_sizes, row))]
            self.__dict__["_tile_list"] = found
        return found

    def _bind_tiles(self) -> None:
        """Point every tile's state tensors at its block of the shared state."""
        self.__dict__.pop("_tile_list", None)  # (re)built from the modules now
        st = self.state
        st._views = [tile.tile.state for *_, tile in self._tiles()]
        for i, j, n_in, o0, n_out, tile in self._tiles():
            ts = tile.tile.state
            ts._version += 1  # its tensors are new views: drop derived caches
            block = (slice(i, i + 1), slice(o0, o0 + n_out), slice(0, n_in))
            ts.g_pos = st.g_pos[block]
            ts.g_neg = st.g_neg[block]
            ts.v_bias = st.v_bias[block]
            ts.g_st = None if st.g_st is None else st.g_st[(slice(None),) + block]
            ts.hold_bias = st.hold_bias
            tile.tile.tile_name = f"{i}.{j}"
            tile.tile.row_tile, tile.tile.row_tiles = i, len(self.in_sizes)

    def attach(self, ledger, layer_name: str, book_pending: bool = True) -> None:  # type: ignore[override]
        EventSink.attach(self, ledger, layer_name, book_pending)
        for *_, tile in self._tiles():
            tile.tile.attach(ledger, layer_name, book_pending)

    def pending_events(self) -> List[Tuple[str, Events]]:  # type: ignore[override]
        """(tile key, events) of programming not yet booked in a ledger, all tiles."""
        return [pe for *_, tile in self._tiles() for pe in tile.tile.pending_events()]

    # -- substrate operations (SubstrateOps) --------------------------------------------------
    def _sink(self) -> EventSink:
        return self

    def _blocks(self) -> List[Tuple[str, int, int, int, int]]:
        return [(key, n, c, i, self.state.tiles) for key, i, _, n, c in self.state.tile_blocks()]

    def _after_state_change(self) -> None:
        self._bind_tiles()

    # -- forward -------------------------------------------------------------------------------------
    def _scales(self, like: Tensor) -> Optional[Tensor]:
        """Digital output scales per tile, ``[T, O]`` (None if all tiles have none).

        Reused while every tile holds the same scale tensors, unmodified (a cache that keeps them).
        """
        found = []
        for i, j, n_in, o0, n_out, tile in self._tiles():
            m, a = _attr(tile, "mapping_scales"), _attr(tile, "out_scaling_alpha")  # = tile.get_scales(),
            found.append((i, o0, n_out, m if a is None else (a if m is None else (m * a).detach())))  # no_grad
        key = [(s, None if s is None else s._version) for *_, s in found]
        hit = self.__dict__.get("_scales_cache")
        if hit is not None and hit[2] == (like.dtype, like.device) and len(hit[0]) == len(key) and all(
                a is b and va == vb for (a, va), (b, vb) in zip(hit[0], key)):
            return hit[1]
        scales = None
        for i, o0, n_out, s in found:
            if s is None:
                continue
            if scales is None:
                scales = like.new_ones(len(self.in_sizes), self.out_size)
            scales[i, o0:o0 + n_out] = s.to(like.dtype)
        self._scales_cache = (key, scales, (like.dtype, like.device))
        return scales

    def _weight_param(self) -> Optional[list]:
        """The tiles' aihwkit weight parameters and their blocks of the tiled layout (gradient path), or None."""
        if not (torch.is_grad_enabled() and self.training):
            return None
        return [(tile.tile.weight, (i, slice(o0, o0 + n_out), slice(0, n_in)))
                for i, j, n_in, o0, n_out, tile in self._tiles()]

    def uses_fast_path(self) -> bool:
        """False when a tile needs aihwkit's per-tile periphery (learned input ranges)."""
        if self.rpu_config.mapping.learn_out_scaling:
            return False
        return all(tile.input_range is None for *_, tile in self._tiles())

    def forward(self, x_input: Tensor, tensor_view: Optional[Tuple] = None) -> Tensor:
        if (y := self.indexed_forward(x_input)) is not None:  # aihwkit's indexed convolutions
            return y
        if not self.uses_fast_path():
            return super().forward(x_input, tensor_view)
        io_pars = self._tiles()[0][5].rpu_config.forward  # what the tile reads with (aihwkit's set_config)
        self.sync_device()  # a plain torch optimiser changed the weights: program them first
        lead = x_input.shape[:-1]
        x = x_input.reshape(-1, self.in_size)
        y, _ = analog_read(self.state, x, io_pars, self._weight_param(), is_test=not self.training,
                           modifier=self.read_modifier(False) if self.training else None,  # none in eval
                           out_noise_values=self.out_noise_values(), sink=self)
        scales = self._scales(y)
        y = (y * scales).sum(1) if scales is not None else y.sum(1)
        y = y.reshape(*lead, self.out_size)
        if self.bias is not None:
            y = y + self.bias
        return y
