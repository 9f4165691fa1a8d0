"""Tiled STO crossbars on aihwkit: a generic physical substrate (program, read, short-term pulses,
decay under a bias), per-tile events, the one cost model and the energy ledger.

Module per concept: ``state`` (the conductances and their one owner), ``substrate`` (short-term
operations), ``programming`` (write-verify / open-loop / pulsed update), ``drift`` (retention),
``persistence`` (save/load), ``conv`` (indexed convolution), ``tile``/``array`` (aihwkit tiles),
``config`` (``STORPUConfig``, the top: nothing in crossbar imports it).

May import: aihwkit, torch, stoxbar.devices, stoxbar.peripherals, stoxbar.core.validation,
stoxbar.crossbar.* (it re-exports the layer's API).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from stoxbar.crossbar.ledger import EnergyLedger

# The layer's API, imported on first use (PEP 562): a client of the digital path (``crossbar.fused``,
# ``crossbar.ledger``, a network in float) runs without aihwkit, e.g. on a GPU machine that has
# torch but not aihwkit's compiled core (benchmarks/gpu_measure.py).
_LAZY = {
    "STOTileArray": "array", "STORPUConfig": "config", "Cost": "costs", "area": "costs", "book": "costs",
    "cost": "costs", "Events": "events", "EnergyLedger": "ledger", "write_json_atomic": "ledger",
    "EventSink": "recorder", "flush_events": "recorder", "CrossbarState": "state", "STOSimulatorTile": "tile",
    "STOTile": "tile",
}

__all__ = [
    "STORPUConfig", "STOTile", "STOSimulatorTile", "STOTileArray", "CrossbarState", "Events", "Cost", "cost",
    "area", "book", "EnergyLedger", "write_json_atomic", "attach_ledger", "sto_modules", "pending_events",
    "EventSink", "flush_events", "layer_key",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


def sto_modules(model: nn.Module):
    """Yield (layer name, module) for every STO tile array or stand-alone STO tile in ``model``."""
    from stoxbar.crossbar.array import STOTileArray
    from stoxbar.crossbar.tile import STOTile

    arrays = [m for m in model.modules() if isinstance(m, STOTileArray)]
    inside = {id(t) for a in arrays for t in a.modules() if isinstance(t, STOTile)}
    for name, module in model.named_modules():
        if isinstance(module, STOTileArray) or (isinstance(module, STOTile) and id(module) not in inside):
            yield name or "layer", module


def layer_key(name: str, prefix: str = "") -> str:
    """Ledger layer key of the module path ``name``: aihwkit's ``analog_module`` hops dropped, ``prefix``
    first ("layer" if both are empty)."""
    inner = ".".join(part for part in name.split(".") if part != "analog_module")
    return ".".join(part for part in (prefix, inner) if part) or "layer"


def attach_ledger(model: nn.Module, ledger: EnergyLedger | None, prefix: str = "",
                  book_pending: bool = True) -> EnergyLedger | None:
    """Book every STO tile event of ``model`` in ``ledger`` (layer key = module path, tile key "i.j").

    Programming done before (``convert_to_analog``, layer constructors, ``set_weights``) is booked
    now unless ``book_pending`` is False (it then stays pending: :func:`pending_events`).
    """
    from stoxbar.crossbar.array import STOTileArray  # a lazy name is not a global until first asked for

    for name, module in sto_modules(model):
        layer = layer_key(name, prefix)
        if isinstance(module, STOTileArray):
            module.attach(ledger, layer, book_pending)
        else:
            module.tile.attach(ledger, layer, book_pending)
    return ledger


def pending_events(model: nn.Module, prefix: str = ""):
    """(layer, tile, Events) of programming of ``model`` not yet booked in a ledger."""
    out = []
    for name, module in sto_modules(model):
        layer = layer_key(name, prefix)
        for key, ev in module.pending_events():
            out.append((layer, key, ev))
    return out
