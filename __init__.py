"""stoxbar: hardware-aware STO memristor crossbars on aihwkit, with a costed periphery.

Subpackages: ``devices`` (STO physics, presets), ``peripherals`` (DAC, ADC, drivers, sense,
digital), ``crossbar`` (tiles, batched MVM, energy ledger, ``STORPUConfig``), ``stpn``
(STPN / m-STPN cells, Pong agent, A2C), ``scripts`` (the ``stoxbar`` command).
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _is_command() -> bool:
    """True when this process is the ``stoxbar`` console command or ``python -m stoxbar.…`` (whose
    ``argv[0]`` is ``-m`` while its package imports), not a library user's import."""
    first = _sys.argv[0] if _sys.argv else ""
    return _os.path.basename(first) == "stoxbar" or first == "-m"


# Ctrl-C while the ``stoxbar`` command imports torch / aihwkit: one line and exit 130
# (docs/reliability.md §1), not the traceback of whichever import was running. A library user's
# ``import stoxbar`` keeps its KeyboardInterrupt.
try:
    from stoxbar.compat import check_aihwkit as _check_aihwkit

    if not _os.environ.get("STOXBAR_SKIP_AIHWKIT_CHECK"):
        _check_aihwkit()
except KeyboardInterrupt:
    if not _is_command():
        raise
    print("stoxbar: interrupted", file=_sys.stderr)
    raise SystemExit(130) from None


def __getattr__(name: str):
    """Lazy exports: ``from stoxbar import analyze, AnalysisReport`` (imports torch/aihwkit on first use)."""
    if name in ("analyze", "AnalysisReport"):
        from stoxbar import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'stoxbar' has no attribute {name!r}")
