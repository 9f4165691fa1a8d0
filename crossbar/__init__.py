"""Tiled STO crossbars on aihwkit: conductance state, batched analog MVM, energy ledger."""

from __future__ import annotations

from torch import nn

from stoxbar.crossbar.array import STOTileArray
from stoxbar.crossbar.config import STORPUConfig
from stoxbar.crossbar.costs import CrossbarCosts
from stoxbar.crossbar.ledger import EnergyLedger, write_json_atomic
from stoxbar.crossbar.state import CrossbarState
from stoxbar.crossbar.tile import STOSimulatorTile, STOTile

__all__ = [
    "STORPUConfig", "STOTile", "STOSimulatorTile", "STOTileArray", "CrossbarState", "CrossbarCosts",
    "EnergyLedger", "write_json_atomic", "attach_ledger", "sto_modules",
]


def sto_modules(model: nn.Module):
    """Yield (layer name, module) for every STO tile array or stand-alone STO tile in ``model``."""
    arrays = [m for m in model.modules() if isinstance(m, STOTileArray)]
    inside = {id(t) for a in arrays for t in a.modules() if isinstance(t, STOTile)}
    for name, module in model.named_modules():
        if isinstance(module, STOTileArray) or (isinstance(module, STOTile) and id(module) not in inside):
            yield name or "layer", module


def attach_ledger(model: nn.Module, ledger: EnergyLedger | None, prefix: str = "") -> EnergyLedger | None:
    """Book every STO tile event of ``model`` in ``ledger`` (layer key = module path)."""
    for name, module in sto_modules(model):
        inner = ".".join(part for part in name.split(".") if part != "analog_module")
        layer = ".".join(part for part in (prefix, inner) if part) or "layer"
        if isinstance(module, STOTileArray):
            module.attach(ledger, layer)
        else:
            module.tile.attach(ledger, layer)
    return ledger
