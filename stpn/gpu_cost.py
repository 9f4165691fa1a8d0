"""GPU roofline cost of one STPN / m-STPN step: the network's own count of bytes and FLOPs.

The GPU model itself (``GPUSpec``, :func:`~stoxbar.peripherals.gpu_baseline.roofline_cost`, the
latency and dedicated tiers) is generic and lives in peripherals; what one step of this network
moves and computes belongs to the network. May import: stoxbar.peripherals, stoxbar.core.validation.
"""

from __future__ import annotations

from stoxbar.peripherals.gpu_baseline import DTYPE_BYTES, GPUCost, GPUSpec, roofline_cost
from stoxbar.core.validation import check_choice, check_int


def stpn_step_bytes_flops(hidden: int, presyn: int, batch: int, dtype: str = "fp32") -> tuple[int, int]:
    """(bytes, FLOPs) of one STPN step (docs/stpn.md §1.1), H = hidden, P = presyn, B = batch.

    Bytes: read W, Lambda, Gamma (H*P each, once per batch) and b (H); per sample read F and
    write F (H*P each), read z (P), write h (H).
    FLOPs per sample: S = W + F (HP); row L2 norms (2HP + H); MVM S z (2HP); divide by n and
    tanh (~2H, tanh counted as 1 FLOP-equivalent: assumption); F / n (HP);
    F update Lambda*F~ + Gamma*(h z^T) (4HP): 10HP + 3H.
    """
    check_int("hidden", hidden, 1, None)
    check_int("presyn", presyn, 1, None)
    check_int("batch", batch, 1, None)
    size = DTYPE_BYTES[check_choice("dtype", dtype, tuple(DTYPE_BYTES))]
    hp = hidden * presyn
    elements = 3 * hp + hidden + batch * (2 * hp + presyn + hidden)
    flops = batch * (10 * hp + 3 * hidden)
    return elements * size, flops


def stpn_step_cost(hidden: int, presyn: int, batch: int = 1, dtype: str = "fp32",
                   spec: GPUSpec | None = None) -> GPUCost:
    """GPU cost of one STPN step for ``batch`` independent sequences (see stpn_step_bytes_flops)."""
    spec = GPUSpec() if spec is None else spec
    nbytes, flops = stpn_step_bytes_flops(hidden, presyn, batch, dtype)
    return roofline_cost("stpn_step", dtype, nbytes, flops, spec)
