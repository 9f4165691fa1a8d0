"""Energy, latency and area of any torch model on STO tiles (``analyze``), and the digital op counter.

Modules, by job:

* :mod:`~stoxbar.analysis.ops` -- the digital op table and the op counter (a ``TorchDispatchMode``
  that sees the aten ops a forward pass runs outside the tiles; :class:`OpWatch` puts a model
  under it);
* :mod:`~stoxbar.analysis.digital_cost` -- counted op kinds and memory traffic to joules and ledger
  entries;
* :mod:`~stoxbar.analysis.digital_baseline` -- the digital-accelerator baseline of counted work;
* :mod:`~stoxbar.analysis.recurrent`, :mod:`~stoxbar.analysis.attention`, :mod:`~stoxbar.analysis.convert`
  -- ``nn.LSTM`` / ``nn.GRU`` / ``nn.MultiheadAttention`` onto tiles before ``convert_to_analog``;
* :mod:`~stoxbar.analysis.report` -- :class:`AnalysisReport`, built from a run's ledger;
* :mod:`~stoxbar.analysis.run` -- :func:`analyze` itself (and the programming it books).

Users: ``from stoxbar import analyze``, ``stoxbar energy --model``, the studies' task entry points,
the Pong step's digital work (:mod:`stoxbar.pong.accounting`) and ``examples/``.

May import: torch, aihwkit, stoxbar.core.validation, stoxbar.peripherals, stoxbar.crossbar.
"""

from stoxbar.analysis.attention import AnalogMultiheadAttention
from stoxbar.analysis.convert import convert_layers
from stoxbar.analysis.digital_baseline import baseline_cost, tally_work
from stoxbar.analysis.digital_cost import book_tally, digital_energy, sram_energy_j, tally_entries
from stoxbar.analysis.ops import OP_KINDS, DigitalOpCounter, OpTally, OpWatch
from stoxbar.analysis.recurrent import AnalogRecurrent
from stoxbar.analysis.report import AnalysisReport, tile_area_m2
from stoxbar.analysis.run import analyze, book_programming

__all__ = ["analyze", "AnalysisReport", "DigitalOpCounter", "OpWatch", "OpTally", "digital_energy", "sram_energy_j",
           "tally_entries", "book_tally", "book_programming", "tile_area_m2", "OP_KINDS", "baseline_cost", "tally_work",
           "convert_layers", "AnalogRecurrent", "AnalogMultiheadAttention"]
