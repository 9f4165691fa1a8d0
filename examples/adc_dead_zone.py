"""Why a coarse ADC breaks the shipped agent: the outputs it reads as zero (converter_resolution's 3-bit rows)

The ``converter_resolution`` study found that a 3-bit ADC costs the session-32 default agent ~20 points with a
4- to 8-bit DAC, but only ~2 with a 3-bit DAC too (``studies/results/converter_resolution/NOTES.md``). This
script reads the shipped m-STPN's analog STP layer (the chip of ``stoxbar play``) on layer inputs recorded from
a digital game (``studies.metrics.record_layer_inputs``, the study's own ``mvm_error`` inputs) at several ADC /
DAC resolutions and reports, against the float MVM of the same inputs:

* the relative MVM error ``||y - y_float|| / ||y_float||`` (the study's ``mvm_rel_error``);
* the fraction of the layer's outputs the chip returns as exactly 0 (every row-tile's partial sum rounded to
  0 by the ADC: |partial| below half an ADC step, ``out_bound / (2^bits - 2)`` with aihwkit's ``out_res``);
* the gain ``<y, y_float> / <y_float, y_float>`` (1: no systematic shrinkage) and the correlation.

Two variants isolate the cause: the ADC-input noise (``periphery.out_noise``) raised (dither), and aihwkit's
iterative bound management (``periphery.bound_management``: on an output at the ADC's bound the read is repeated
with the input halved) switched off. Found (``studies/results/converter_resolution/NOTES.md``): with an 8-bit DAC
the shipped layer's reads clip and are repeated at half the input, which halves every partial sum against the
3-bit ADC's step; a 3-bit DAC zeroes the smallest inputs and no read clips.

Usage: ``python examples/adc_dead_zone.py [--small] [--samples N] [--checkpoint PATH]``.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Sequence, Tuple

import torch

from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from stoxbar.studies.metrics import analog_reads, build_agent, record_layer_inputs
from stoxbar.studies.spec import build_point, checkpoint_arch

# (ADC bits, DAC bits, ADC-input noise std in aihwkit units, bound management); 0.04 and "iterative" are the
# periphery's defaults
Setting = Tuple[int, int, float, str]
SETTINGS: Tuple[Setting, ...] = (
    (8, 8, 0.04, "iterative"), (4, 8, 0.04, "iterative"), (4, 3, 0.04, "iterative"), (3, 8, 0.04, "iterative"),
    (3, 4, 0.04, "iterative"), (3, 3, 0.04, "iterative"), (3, 8, 0.5, "iterative"), (3, 8, 1.0, "iterative"),
    (8, 8, 0.04, "none"), (3, 8, 0.04, "none"), (3, 3, 0.04, "none"))
SMALL: Tuple[Setting, ...] = ((8, 8, 0.04, "iterative"), (3, 8, 0.04, "iterative"), (3, 3, 0.04, "iterative"),
                              (3, 8, 0.04, "none"))


@torch.no_grad()
def read_stats(checkpoint: str, settings: Sequence[Setting], samples: int,
               seed: int = 0) -> List[Dict[str, float]]:
    """One row per (adc_bits, dac_bits, out_noise, bound_management): mean over the recorded inputs of the MVM error, the fraction
    of outputs read as 0, the gain and the correlation against float."""
    ckpt, arch = load_checkpoint(checkpoint), checkpoint_arch(checkpoint)
    recorded = None
    rows = []
    for adc, dac, noise, bm in settings:
        cfg = build_point(arch, arch.device_preset, {}, {"periphery.adc.bits": adc, "periphery.dac.bits": dac,
                                                         "periphery.out_noise": noise,
                                                         "periphery.bound_management": bm})
        agent = build_agent(ckpt, cfg, seed)
        if recorded is None:  # the same inputs for every setting
            recorded = record_layer_inputs(agent, samples, seed)
        acc = {"error": 0.0, "zero_fraction": 0.0, "gain": 0.0, "correlation": 0.0}
        for y, yf in analog_reads(agent, cfg, recorded):  # the study's mvm_error reads, per input
            y, yf = y.flatten(), yf.flatten()
            acc["error"] += float((y - yf).norm() / yf.norm().clamp_min(1e-30))
            acc["zero_fraction"] += float((y == 0).double().mean())
            acc["gain"] += float((y * yf).sum() / (yf * yf).sum().clamp_min(1e-30))
            acc["correlation"] += float(torch.corrcoef(torch.stack([y, yf]))[0, 1])
        rows.append({"adc_bits": adc, "dac_bits": dac, "out_noise": noise, "bound_management": bm,
                     **{k: v / len(recorded) for k, v in acc.items()}})
    return rows


def main(argv: Sequence[str] = ()) -> List[Dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="four settings, 4 inputs (seconds)")
    ap.add_argument("--samples", type=int, default=32, help="recorded layer inputs (default 32, as the study)")
    ap.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    args = ap.parse_args(list(argv))
    rows = read_stats(args.checkpoint, SMALL if args.small else SETTINGS, 4 if args.small else args.samples)
    print("| ADC bits | DAC bits | ADC-input noise | bound management | MVM error | outputs read as 0 | gain "
          "| correlation |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['adc_bits']} | {r['dac_bits']} | {r['out_noise']} | {r['bound_management']} | {r['error']:.1%} "
              f"| {r['zero_fraction']:.1%} "
              f"| {r['gain']:.3f} | {r['correlation']:.3f} |")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
