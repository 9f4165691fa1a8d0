"""``nn.MultiheadAttention`` onto STO tiles: its projections on tiles, its attention matmuls digital.

torch's ``nn.MultiheadAttention`` keeps its q/k/v projection in one raw parameter
(``in_proj_weight``) that no converter maps, and at inference it runs as one fused op. ``convert_layers`` (:mod:`~stoxbar.analysis.convert`)
replaces each with :class:`AnalogMultiheadAttention`, which holds the four projections as ``nn.Linear``
layers with the same weights (``convert_to_analog`` then puts them on tiles) and computes the
attention itself in plain torch ops, so the activation-activation matmuls (``Q K^T`` and the
weighted sum over ``V``) and the softmax run on the digital periphery and are counted as digital
MACs, not as one add per output. Outputs and masks follow torch's ``forward`` (inference: attention
dropout is not applied); refused, with the reason: ``add_bias_kv`` and ``add_zero_attn``.

May import: torch, stoxbar.core.validation.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from stoxbar.core.validation import ConfigError

__all__ = ["AnalogMultiheadAttention"]


def _linear(weight: Tensor, bias: Optional[Tensor]) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


class AnalogMultiheadAttention(nn.Module):
    """An ``nn.MultiheadAttention`` with its projections as ``nn.Linear`` layers (module docstring)."""

    def __init__(self, mha: nn.MultiheadAttention, name: str = "model") -> None:
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ConfigError(f"{name} = MultiheadAttention(add_bias_kv={mha.bias_k is not None}, "
                              f"add_zero_attn={mha.add_zero_attn}): not converted; the extra key/value rows are not "
                              "mapped; allowed: both False")
        e = mha.embed_dim
        self.num_heads, self.batch_first, self.embed_dim = mha.num_heads, mha.batch_first, e
        if mha._qkv_same_embed_dim:
            wq, wk, wv = mha.in_proj_weight.detach().chunk(3)
        else:
            wq, wk, wv = (getattr(mha, f"{p}_proj_weight").detach() for p in "qkv")
        bq, bk, bv = mha.in_proj_bias.detach().chunk(3) if mha.in_proj_bias is not None else (None,) * 3
        self.q_proj, self.k_proj, self.v_proj = _linear(wq, bq), _linear(wk, bk), _linear(wv, bv)
        self.out_proj = _linear(mha.out_proj.weight.detach(),
                                None if mha.out_proj.bias is None else mha.out_proj.bias.detach())

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        L, n, _ = query.shape
        S, h = key.shape[0], self.num_heads
        hd = self.embed_dim // h

        def heads(t: Tensor, length: int) -> Tensor:  # (length, n, E) -> (n*h, length, hd)
            return t.reshape(length, n * h, hd).transpose(0, 1)

        q = heads(self.q_proj(query), L) * (1.0 / math.sqrt(hd))
        k, v = heads(self.k_proj(key), S), heads(self.v_proj(value), S)
        scores = torch.bmm(q, k.transpose(1, 2))  # activation x activation: digital MACs
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).triu(1)
        if attn_mask is not None:
            mask = attn_mask if attn_mask.dim() == 3 else attn_mask.unsqueeze(0)
            scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        if key_padding_mask is not None:
            pad = key_padding_mask.view(n, 1, 1, S).expand(n, h, 1, S).reshape(n * h, 1, S)
            scores = scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else scores + pad
        attn = torch.softmax(scores, dim=-1)
        out = self.out_proj(torch.bmm(attn, v).transpose(0, 1).reshape(L, n, self.embed_dim))
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        weights = None
        if need_weights:
            weights = attn.view(n, h, L, S)
            weights = weights.mean(dim=1) if average_attn_weights else weights
            if unbatched:
                weights = weights.squeeze(0)
        return out, weights
