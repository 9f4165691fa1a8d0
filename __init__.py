"""stoxbar: hardware-aware STO memristor crossbars on aihwkit, with a costed periphery.

Subpackages: ``devices`` (STO physics, presets), ``peripherals`` (DAC, ADC, drivers, sense,
digital), ``crossbar`` (tiles, batched MVM, energy ledger, ``STORPUConfig``), ``stpn``
(STPN / m-STPN cells, Pong agent, A2C), ``scripts`` (the ``stoxbar`` command).

Importing the package has no side effects and imports nothing heavy: the check that aihwkit's
compiled core matches the installed torch runs when the first STO configuration is built
(:func:`stoxbar.core.compat.ensure_aihwkit`), and ``analyze`` is imported on first use.

May import: any layer of stoxbar, lazily (the package's façade).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy exports: ``from stoxbar import analyze, AnalysisReport`` (imports torch/aihwkit on first use)."""
    if name in ("analyze", "AnalysisReport"):
        from stoxbar import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'stoxbar' has no attribute {name!r}")
