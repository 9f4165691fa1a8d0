"""Energy boundaries of the Pong m-STPN chip, and its first-principles GPU baseline.

The analog STP layer books its own events (ledger layer ``stp``: DAC, drivers, cell reads, ADC,
sense, partial sums, pulses, bias). This module adds the digital work around it, per agent step:

* layer ``stp``, component ``digital_hebbian``: Gamma * (h z^T) magnitude and its quantisation to a
  pulse level (2 mults + 1 compare per synapse; the paper keeps this off the memristors);
  component ``sram``: the memory reads that work needs every step -- the per-synapse Gamma
  (169,984 int8 values for the paper's layer) plus h and z_hat (one byte each);
* layer ``neuron``: presynaptic normalisation (max-abs + one mult per input), gain, bias, tanh;
* layers ``encoder`` and ``heads``: the conv encoder and actor/critic heads as int8 MACs (one
  8-bit mult + one 16-bit accumulate each, Horowitz 45 nm via ``DigitalPeriphery``) plus reading
  their weights once per step from SRAM (64-bit words).

Every energy here comes from the digital cost model that :func:`stoxbar.analysis.analyze` uses
for any model (``digital_energy`` per op kind, ``sram_energy_j`` per byte moved), so the Pong
boundaries are one use of it; the op counts per step are the m-STPN's (checked against the ops
torch runs in tests/test_analyze_pong.py).

Boundaries (nested by construction: each is a superset of the previous one's components):

* ``synapse_only`` - the paper's: decay bias + short-term pulses + cell reads of the STP synapses;
* ``array`` - plus every peripheral of the STP layer (DAC, ADC, drivers, sense, digital periphery);
* ``system`` - plus neuron operations, encoder and heads.

May import: stoxbar.analysis, stoxbar.crossbar, stoxbar.peripherals, stoxbar.stpn.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Tuple

from stoxbar.analysis import digital_energy, sram_energy_j
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.peripherals import DigitalPeriphery, GPUSpec, dense_layer_cost
from stoxbar.stpn.gpu_cost import stpn_step_cost

SYNAPSE_COMPONENTS = ("bias", "st_pulse", "cell_read")
CONV_LAYERS = ((1, 16, 8, 20), (16, 32, 4, 9))  # (in ch, out ch, kernel, output side): 84 -> 20 -> 9


def conv_macs() -> int:
    """Multiply-accumulates of the paper's conv encoder per frame (1,073,152)."""
    return sum(c_out * side * side * c_in * k * k for c_in, c_out, k, side in CONV_LAYERS)


def conv_params() -> int:
    """Weights + biases of the conv encoder (9,264)."""
    return sum(c_out * c_in * k * k + c_out for c_in, c_out, k, _ in CONV_LAYERS)


def record_digital_step(ledger: EnergyLedger, digital: DigitalPeriphery, n_in: int, hidden: int,
                        n_actions: int, extra_encoder_macs: int = 0, batch: int = 1) -> None:
    """Book the digital work of ``batch`` agent steps (see module docstring); int8 values, 16-bit sums.

    The entries depend only on the arguments, so they are computed once per configuration
    (:func:`digital_step_entries`) and the same numbers are booked every step.
    """
    try:
        entries = _cached_entries(digital, n_in, hidden, n_actions, extra_encoder_macs, batch)
    except TypeError:  # an unhashable digital model: compute every time
        entries = digital_step_entries(digital, n_in, hidden, n_actions, extra_encoder_macs, batch)
    for entry in entries:
        ledger.add(*entry)


def digital_step_entries(digital: DigitalPeriphery, n_in: int, hidden: int, n_actions: int,
                         extra_encoder_macs: int = 0, batch: int = 1) -> Tuple[tuple, ...]:
    """The ledger entries (layer, tile, component, event, count, energy J) of ``batch`` agent steps."""
    p = n_in + hidden
    syn = hidden * p * batch
    out = [("stp", "all", "digital_hebbian", "step", syn,
            digital_energy(digital, "mult", 2 * syn) + digital_energy(digital, "compare", syn))]
    gamma_bytes = syn + (hidden + p) * batch  # Gamma per synapse, post h and pre z_hat: one byte each
    out.append(("stp", "all", "sram", "gamma_read", gamma_bytes / 8, sram_energy_j(digital, gamma_bytes)))
    out.append(("neuron", "all", "normalise", "step", p * batch,
                digital_energy(digital, "compare", p * batch) + digital_energy(digital, "mult", p * batch)))
    out.append(("neuron", "all", "activation", "step", hidden * batch,
                digital_energy(digital, "mult", hidden * batch) + digital_energy(digital, "add", hidden * batch)
                + digital_energy(digital, "nonlinear", hidden * batch)))
    for layer, macs, params in (("encoder", conv_macs() + extra_encoder_macs, conv_params() + extra_encoder_macs),
                                ("heads", hidden * (n_actions + 1), (hidden + 1) * (n_actions + 1))):
        out.append((layer, "all", "digital_mac", "step", macs * batch, digital_energy(digital, "mac", macs * batch)))
        words = math.ceil(params / 8) * batch  # int8 weights, 8 per 64-bit SRAM word
        out.append((layer, "all", "sram", "step", words, sram_energy_j(digital, 8 * words)))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _cached_entries(digital: DigitalPeriphery, n_in: int, hidden: int, n_actions: int, extra_encoder_macs: int,
                    batch: int) -> Tuple[tuple, ...]:
    return digital_step_entries(digital, n_in, hidden, n_actions, extra_encoder_macs, batch)


def boundaries(ledger: EnergyLedger) -> Dict[str, Dict[str, object]]:
    """``synapse_only`` / ``array`` / ``system`` totals and per-component joules (nested)."""
    stp = ledger.by_component(layer="stp")
    synapse = {c: stp.get(c, 0.0) for c in SYNAPSE_COMPONENTS}
    system: Dict[str, float] = {}
    for (layer, comp), e in ledger.totals(("layer", "component")).items():
        key = comp if layer == "stp" else f"{layer}.{comp}"
        system[key] = system.get(key, 0.0) + e.energy_j
    out = {}
    for name, parts in (("synapse_only", synapse), ("array", stp), ("system", system)):
        out[name] = {"total_j": math.fsum(parts.values()), "by_component": dict(sorted(parts.items()))}
    return out


def gpu_baseline(n_in: int, hidden: int, n_actions: int, steps: int, dtype: str = "fp32",
                 spec: GPUSpec | None = None, extra_encoder_macs: int = 0) -> Dict[str, object]:
    """GPU energy of ``steps`` agent steps at batch 1 (STP step + conv encoder + heads)."""
    spec = spec or GPUSpec()
    stp = stpn_step_cost(hidden, n_in + hidden, 1, dtype, spec)
    enc = dense_layer_cost(1, 1, 1, dtype, spec, flops=2.0 * (conv_macs() + extra_encoder_macs),
                           weight_bytes=(conv_params() + extra_encoder_macs) * (2 if dtype == "fp16" else 4),
                           label="conv encoder")
    heads = dense_layer_cost(hidden, n_actions + 1, 1, dtype, spec, label="heads")
    parts = {"stp_step": stp.energy_j * steps, "encoder": enc.energy_j * steps, "heads": heads.energy_j * steps}
    return {"total_j": math.fsum(parts.values()), "by_component": parts, "gpu": spec.name, "dtype": dtype,
            "assumptions": stp.assumptions()}
