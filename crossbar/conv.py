"""Indexed convolution on STO tiles: aihwkit's ``AnalogConv1d/3d`` and mapped convolutions.

aihwkit hands a tile that says ``supports_indexed`` the fold indices of a convolution
(``set_indexed``) and then images instead of patch matrices; the convolution is then one MVM
over the patches the indices gather (autograd end to end). A tile module and a tile array bind
the same three functions (``set_indexed = conv.set_indexed``, ...), defined once here.

May import: torch, stoxbar.core.validation.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from stoxbar.core.validation import ConfigError


def set_indexed(module: Any, indices: Tensor, image_sizes: Any) -> None:
    """Store aihwkit's fold indices (``0`` = zero padding, ``k >= 2`` = input element ``k - 2``)."""
    if len(image_sizes) not in (3, 5, 7):
        raise ConfigError(f"image_sizes = {list(image_sizes)!r}: expected 3, 5 or 7 sizes "
                          "[C_in, (D_in), H_in, (W_in), (D_out), H_out, (W_out)]")
    module.image_sizes = list(image_sizes)  # aihwkit's attribute (aihwkit drops it when pickling) ...
    module._sto_image_sizes = list(image_sizes)  # ... ours survives torch.save(model)
    module._sto_fold = indices.detach().to(torch.long)


def is_indexed(module: Any) -> bool:
    """True once :func:`set_indexed` gave ``module`` fold indices."""
    return getattr(module, "_sto_fold", None) is not None


def forward_indexed(module: Any, x_input: Tensor, mvm: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
    """A convolution as one MVM over the patches the fold indices gather, or None if ``x_input``
    is not an image (``ndim < 3``) or ``module`` has no fold indices.

    ``x_input [N, C, *spatial]`` -> patches ``[N * P, in]`` -> ``mvm`` -> ``[N, out, *spatial_out]``.
    """
    if x_input.ndim < 3 or not is_indexed(module):
        return None
    n = x_input.shape[0]
    flat = x_input.reshape(n, -1)
    ext = torch.cat([flat.new_zeros(n, 2), flat], 1)
    fold = module._sto_fold.to(flat.device)
    if int(fold.max()) > ext.shape[1] - 1:
        raise ConfigError(f"input of {flat.shape[1]} elements per sample: smaller than the convolution's fold "
                          "indices expect (aihwkit recomputes them when the input size changes)")
    cols = ext[:, fold].view(n, module.in_size, -1).transpose(1, 2)  # [N, patches, in]
    patches = cols.shape[1]
    out = mvm(cols.reshape(n * patches, module.in_size)).view(n, patches, module.out_size).transpose(1, 2)
    sizes = module._sto_image_sizes
    k = (len(sizes) - 1) // 2
    return out.reshape(n, module.out_size, *sizes[-k:])
