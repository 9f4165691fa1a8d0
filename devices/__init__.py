"""Device models: the plug-in contract (`MemristiveDevice`), the SrTiO3 memristor (`STODevice`),
presets (a registry: `register_preset`, `get_preset`), vectorised dynamics; figures in
:mod:`stoxbar.devices.figures` (imported on use: matplotlib is heavy).

A new device is one module (a frozen dataclass subclassing `MemristiveDevice`) plus one preset
registered with `register_preset`; see ``docs/device-physics.md`` §9. ``STORPUConfig`` (the aihwkit
RPU config built on a device) lives one layer up, in :mod:`stoxbar.crossbar.config`, next to the
tiles it creates: ``from stoxbar.crossbar import STORPUConfig``.

May import: stoxbar.devices, stoxbar.core.validation.
"""

from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices import dynamics, presets
from stoxbar.devices.presets import PRESETS, get_preset, ideal, register_preset, sto_2024
from stoxbar.devices.sto import MAX_ST_LEVELS, STODevice

__all__ = ["MemristiveDevice", "register_preset", "STODevice", "dynamics", "presets", "PRESETS", "get_preset",
           "ideal", "sto_2024", "MAX_ST_LEVELS"]
