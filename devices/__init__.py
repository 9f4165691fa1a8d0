"""The SrTiO3 memristor: physics (`STODevice`), presets, vectorised dynamics, figures.

``STORPUConfig`` (the aihwkit RPU config built on this device) is defined in
:mod:`stoxbar.crossbar.config`, next to the tiles it creates, and re-exported here lazily so that
``from stoxbar.devices import STODevice, STORPUConfig, presets`` works as aihwkit users expect
without this package importing the crossbar layer at import time.
"""

from stoxbar.devices import presets
from stoxbar.devices.sto import STODevice

__all__ = ["STODevice", "STORPUConfig", "presets"]


def __getattr__(name: str):
    if name == "STORPUConfig":
        from stoxbar.crossbar.config import STORPUConfig

        return STORPUConfig
    raise AttributeError(f"module 'stoxbar.devices' has no attribute {name!r}")
