"""Device models: the plug-in contract (`MemristiveDevice`), the SrTiO3 memristor (`STODevice`),
presets (a registry: `register_preset`, `get_preset`), vectorised dynamics, figures.

A new device is one module (a frozen dataclass subclassing `MemristiveDevice`) plus one preset
registered with `register_preset`; see ``docs/device-physics.md`` §9.

``STORPUConfig`` (the aihwkit RPU config built on this device) is defined in
:mod:`stoxbar.crossbar.config`, next to the tiles it creates, and re-exported here lazily so that
``from stoxbar.devices import STODevice, STORPUConfig, presets`` works as aihwkit users expect
without this package importing the crossbar layer at import time.
"""

from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices import dynamics, presets
from stoxbar.devices.dynamics import STOArray
from stoxbar.devices.figures import describe, device_figure
from stoxbar.devices.presets import PRESETS, get_preset, ideal, register_preset, sto_2024
from stoxbar.devices.sto import MAX_ST_LEVELS, STODevice

__all__ = ["MemristiveDevice", "register_preset", "STODevice", "STORPUConfig", "STOArray", "dynamics", "presets", "PRESETS", "get_preset", "ideal",
           "sto_2024", "describe", "device_figure", "MAX_ST_LEVELS"]


def __getattr__(name: str):
    if name == "STORPUConfig":
        from stoxbar.crossbar.config import STORPUConfig

        return STORPUConfig
    raise AttributeError(f"module 'stoxbar.devices' has no attribute {name!r}")
