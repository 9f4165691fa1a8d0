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


def __getattr__(name: str):
    """Lazy exports: ``from stoxbar import analyze, AnalysisReport`` (imports torch/aihwkit on first use)."""
    if name in ("analyze", "AnalysisReport"):
        from stoxbar import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'stoxbar' has no attribute {name!r}")
