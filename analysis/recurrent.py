"""Recurrent torch layers onto STO tiles: ``nn.LSTM`` / ``nn.GRU`` -> aihwkit's analog recurrent layers.

aihwkit's ``convert_to_analog`` maps Linear and Conv layers only; a plain ``nn.LSTM`` or
``nn.GRU`` runs as one fused CPU op that neither the op counter nor torch's flop counter can see
inside. ``convert_layers`` (:mod:`~stoxbar.analysis.convert`) replaces each with :class:`AnalogRecurrent`: aihwkit's
``AnalogRNN`` (``AnalogLSTMCell`` / ``AnalogGRUCell``, whose ``weight_ih`` and ``weight_hh`` are
``AnalogLinear`` layers on the given ``STORPUConfig``) holding the torch layer's weights and biases
(aihwkit's gate order and gate equations are torch's), called the way the torch layer is called
(``batch_first``, optional initial state, the same outputs). The gate nonlinearities and the
elementwise cell update stay digital and are counted by the op counter.

Refused, with the reason: bidirectional layers and LSTM projections (``proj_size``), which
aihwkit's analog RNN does not express with torch's state layout.

May import: torch, aihwkit, stoxbar.core.validation.
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
from aihwkit.nn import AnalogGRUCell, AnalogLSTMCell, AnalogRNN
from torch import Tensor, nn

from stoxbar.core.validation import ConfigError

__all__ = ["AnalogRecurrent", "RECURRENT_CELLS"]

RECURRENT_CELLS = {nn.LSTM: AnalogLSTMCell, nn.GRU: AnalogGRUCell}


class AnalogRecurrent(nn.Module):
    """An ``nn.LSTM`` / ``nn.GRU`` on aihwkit's ``AnalogRNN`` (module docstring); ``forward`` as torch's."""

    def __init__(self, layer: nn.RNNBase, rpu_config: Any, name: str = "model") -> None:
        super().__init__()
        if layer.bidirectional:
            raise ConfigError(f"{name} = {type(layer).__name__}(bidirectional=True): not converted; aihwkit's "
                              "bidirectional analog RNN keeps its states per direction, not in torch's layout; "
                              "allowed: bidirectional=False")
        if getattr(layer, "proj_size", 0):
            raise ConfigError(f"{name}.proj_size = {layer.proj_size}: not converted; aihwkit's analog LSTM cell "
                              "has no projection; allowed: 0")
        self.kind = type(layer).__name__
        self.batch_first = layer.batch_first
        self.num_layers, self.hidden_size = layer.num_layers, layer.hidden_size
        self.rnn = AnalogRNN(RECURRENT_CELLS[type(layer)], layer.input_size, layer.hidden_size, bias=layer.bias,
                             rpu_config=rpu_config, num_layers=layer.num_layers, dropout=layer.dropout)
        with torch.no_grad():
            for k, analog in enumerate(self.rnn.rnn.layers):
                for part in ("ih", "hh"):
                    w = getattr(layer, f"weight_{part}_l{k}").detach().clone()
                    b = getattr(layer, f"bias_{part}_l{k}").detach().clone() if layer.bias else None
                    getattr(analog.cell, f"weight_{part}").set_weights(w, b)

    def forward(self, x: Tensor, hx: Any = None) -> Tuple[Tensor, Any]:
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        if self.batch_first:
            x = x.transpose(0, 1)  # aihwkit's layers step over dim 0
        batch = x.shape[1]
        lstm = self.kind == "LSTM"
        if hx is None:
            zero = x.new_zeros(self.num_layers, batch, self.hidden_size)
            hx = (zero, zero) if lstm else zero
        elif unbatched:
            hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        states = [(hx[0][k], hx[1][k]) for k in range(self.num_layers)] if lstm else list(hx.unbind(0))
        out, finals = self.rnn(x, states)
        if self.batch_first:
            out = out.transpose(0, 1)
        if lstm:
            h_n = (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        else:
            h_n = torch.stack(list(finals))
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            h_n = tuple(h.squeeze(1) for h in h_n) if lstm else h_n.squeeze(1)
        return out, h_n
