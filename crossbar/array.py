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
substrate operations are those of :class:`~stoxbar.crossbar.substrate.SubstrateOps`.

Device moves: ``.to()``/``.cuda()`` (or any ``_apply``) replace every tensor, the views included;
the array re-binds its tiles' views to its moved state afterwards (:meth:`STOTileArray._apply`),
so tiles and array stay one state on any device.

May import: torch, aihwkit, stoxbar.crossbar.{state,tile,read,recorder,events,substrate,persistence,conv}; never
crossbar.config (the configuration is duck-typed: crossbar/persistence.py ``is_sto_config``).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.tiles.array import TileModuleArray

import stoxbar.crossbar.conv as conv
import stoxbar.crossbar.persistence as persistence
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.state import CrossbarState
from stoxbar.crossbar.read import analog_read
from stoxbar.crossbar.recorder import EventSink
from stoxbar.crossbar.substrate import SubstrateOps


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


class STOTileArray(TileModuleArray, EventSink, SubstrateOps):
    """Tiled STO layer with shared state and a batched forward (see module docstring)."""

    supports_indexed: bool = True  # aihwkit's indexed convolutions (crossbar/conv.py)
    set_indexed = conv.set_indexed
    is_indexed = conv.is_indexed
    analog_bias: bool = False  # STO layers keep the bias digital (aihwkit's convolutions ask)
    _sync_seen: Optional[Tuple] = None

    def __init__(self, out_size: int, in_size: int, rpu_config: Any, bias: bool = False, **kwargs: Any):
        super().__init__(out_size, in_size, rpu_config, bias, **kwargs)
        self.rpu_config = rpu_config
        self.state = CrossbarState(self.in_sizes, out_size, rpu_config.device, out_sizes=self.out_sizes)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self._o_starts = [sum(self.out_sizes[:j]) for j in range(len(self.out_sizes))]
        self._bind_tiles()
        for *_, tile in self._tiles():  # their constructor's programming was of states now replaced
            tile.tile._pending.clear()
        self.register_load_state_dict_post_hook(STOTileArray._after_load)

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
        self.state.bind_views([(tile.tile.state, (slice(i, i + 1), slice(o0, o0 + n_out), slice(0, n_in)))
                               for i, j, n_in, o0, n_out, tile in self._tiles()])
        for i, j, n_in, o0, n_out, tile in self._tiles():
            tile.tile.tile_name = f"{i}.{j}"
            tile.tile.row_tile, tile.tile.row_tiles = i, len(self.in_sizes)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), a copying _apply: views re-bound after
        out = super()._apply(fn, recurse)
        self._bind_tiles()
        self.__dict__.pop("_scales_cache", None)
        return out

    @property
    def is_cuda(self) -> bool:
        return self.state.g_pos.is_cuda

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
        """Digital output scales per tile, ``[T, O]`` (None if all tiles have none): mapping scales
        times learned output scales (``tile.get_scales()``), times aihwkit's drift-compensation
        ``alpha`` in eval reads (``post_forward`` of aihwkit's inference tile).

        Reused while every tile holds the same scale tensors, unmodified (a cache that keeps them).
        """
        compensate = not self.training and getattr(self.rpu_config, "drift_compensation", None) is not None
        found = []
        for i, j, n_in, o0, n_out, tile in self._tiles():
            parts = (_attr(tile, "mapping_scales"), _attr(tile, "out_scaling_alpha"),
                     _attr(tile, "alpha") if compensate else None)
            found.append((i, o0, n_out, tuple(p for p in parts if p is not None)))
        key = [(p, p._version) for *_, parts in found for p in parts]
        hit = self.__dict__.get("_scales_cache")
        if hit is not None and hit[2] == (like.dtype, like.device, compensate) and len(hit[0]) == len(key) and all(
                a is b and va == vb for (a, va), (b, vb) in zip(hit[0], key)):
            return hit[1]
        scales = None
        with torch.no_grad():
            for i, o0, n_out, parts in found:
                if not parts:
                    continue
                if scales is None:
                    scales = like.new_ones(len(self.in_sizes), self.out_size)
                s = parts[0].to(like.dtype)
                for p in parts[1:]:
                    s = s * p.to(like.dtype)
                scales[i, o0:o0 + n_out] = s
        self._scales_cache = (key, scales, (like.dtype, like.device, compensate))
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
        if (y := conv.forward_indexed(self, x_input, self.forward)) is not None:  # aihwkit's indexed convolutions
            return y
        if not self.uses_fast_path():
            return super().forward(x_input, tensor_view)
        first = self._tiles()[0][5]
        io_pars = first.rpu_config.forward  # what the tile reads with (aihwkit's set_config)
        self.sync_device()  # a plain torch optimiser changed the weights: program them first
        lead = x_input.shape[:-1]
        x = x_input.reshape(-1, self.in_size)
        y, _ = analog_read(self.state, x, io_pars, first.tile._analog_mvm, self.periphery, self._weight_param(),
                           is_test=not self.training, modifier=self.read_modifier(False) if self.training else None,  # none in eval
                           out_noise_values=self.out_noise_values(), sink=self)
        scales = self._scales(y)
        y = (y * scales).sum(1) if scales is not None else y.sum(1)
        y = y.reshape(*lead, self.out_size)
        if self.bias is not None:
            y = y + self.bias
        return y

    # -- training: the conductances follow the tiles' trained weights -------------------------------
    def _weight_key(self) -> Tuple:
        ws = self.__dict__.get("_sync_weights")
        if ws is None:  # the tiles' weight parameters (reset when tiles are rebuilt on load)
            ws = self.__dict__["_sync_weights"] = [tile.tile.weight for *_, tile in self._tiles()]
        return tuple((w.data_ptr(), w._version) for w in ws)

    def sync_device(self) -> None:
        """Bring every tile's conductances to its trained weight (plain torch optimisers).

        One version check for the whole array on the hot path; per tile only if a weight changed.
        """
        if self._sync_seen is not None and self._weight_key() == self._sync_seen:
            return
        for *_, tile in self._tiles():
            tile.check_written()
            tile.sync_device()
        self._sync_seen = self._weight_key()

    def read_modifier(self, is_test: bool) -> Any:
        return self.array[0][0].tile.read_modifier(is_test)

    def out_noise_values(self) -> Optional[Tensor]:
        """Per-column output noise ``[T, O]`` of the tiles, or None."""
        if self.__dict__.get("_no_out_noise") is None:
            self.__dict__["_no_out_noise"] = all(t.tile.out_noise_values is None for *_, t in self._tiles())
        if self.__dict__["_no_out_noise"]:
            return None
        vals = None
        for i, j, n_in, o0, n_out, tile in self._tiles():
            v = tile.tile.out_noise_values
            if v is None:
                continue
            if vals is None:
                vals = v.new_full((len(self.in_sizes), self.out_size), float(tile.rpu_config.forward.out_noise))
            vals[i, o0:o0 + n_out] = v
        return vals

    # -- save/load (crossbar/persistence.py) --------------------------------------------------------
    def get_extra_state(self) -> Any:
        return persistence.extra_state(self.state)

    def set_extra_state(self, extra: Any) -> None:
        self._loaded_extra = extra  # applied after loading (the state may be rebuilt first): _after_load

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the short-term state was saved: nothing to restore
        state_dict.setdefault(prefix + "_extra_state", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _after_load(module: "STOTileArray", incompatible: Any) -> None:
        """After loading: rebuild the shared state for the loaded device if needed, rebind views."""
        cfg = module.array[0][0].rpu_config
        if cfg.device != module.state.device_model or module.periphery != cfg.periphery:
            module.state = persistence.state_for_device(module.state, cfg.device)
            module.flush()
            module.device, module.periphery = cfg.device, cfg.periphery
            module.rpu_config = cfg
        persistence.load_extra_state(module.state, module.__dict__.pop("_loaded_extra", None))
        module.state.invalidate()
        module._bind_tiles()
        module.__dict__.pop("_sync_weights", None)
        module.__dict__.pop("_no_out_noise", None)
        module._sync_seen = None
