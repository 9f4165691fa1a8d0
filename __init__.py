"""stoxbar: hardware-aware STO memristor crossbars on aihwkit, with a costed periphery.

Subpackages: ``devices`` (STO physics, presets), ``peripherals`` (DAC, ADC, drivers, sense,
digital), ``crossbar`` (tiles, batched MVM, energy ledger, ``STORPUConfig``), ``stpn``
(STPN / m-STPN cells, Pong agent, A2C), ``scripts`` (the ``stoxbar`` command).
"""

import os as _os

from stoxbar.compat import check_aihwkit as _check_aihwkit

__version__ = "0.1.0"

if not _os.environ.get("STOXBAR_SKIP_AIHWKIT_CHECK"):
    _check_aihwkit()
