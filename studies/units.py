"""Units and descriptions of a study's columns: its metrics (``UNITS``) and the parameters it varies
(a ``device.*`` field's unit comes from that field's metadata on any registered device class).

Used by the spec (to check plot metrics), the table, the plots and the report; it imports none of them.

May import: stoxbar.devices.presets.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Tuple

from stoxbar.devices.presets import DEVICE_CLASSES

# metric name -> (unit, description); per-component energy columns follow the ``energy_*`` rules
UNITS: Dict[str, Tuple[str, str]] = {
    "synapses": ("1", "synapses of the STP layer"),
    "tiles": ("1", "crossbar tiles of the STP layer"),
    "area_m2": ("m^2", "STP layer area: tiles x (array + converters + drivers + sense)"),
    "area_adc_share": ("1", "ADC share of the STP layer area"),
    "mvm_latency_s": ("s", "one MVM of the STP layer (largest tile, tiles in parallel), one read round, the cost model"),
    "mvm_rel_error": ("1", "||y_analog - y_float|| / ||y_float|| of the STP layer MVM, mean over samples"),
    "mvm_rel_error_std": ("1", "spread (std) of the relative MVM error over samples"),
    "mvm_samples": ("1", "recorded layer inputs used for the MVM error"),
    "ir_drop_rel_error": ("1", "MVM error of the wires alone, full solve, one random read of the STP layer's shape"),
    "bias_wire_drop_max_v": ("V", "largest drop of the held decay bias along its wires (full solve)"),
    "bias_wire_drop_rms_v": ("V", "RMS drop of the held decay bias along its wires (full solve)"),
    "bias_tau_rel_error_max": ("1", "largest relative error of tau the held bias's wire drop causes"),
    "latency_write_s_per_step": ("s", "write phase of the short-term updates per agent step (ledger)"),
    "latency_wake_s_per_step": ("s", "wake-up of the power-gated blocks before each agent step (ledger)"),
    "score_mean": ("points", "agent points - opponent points per game, mean over games"),
    "score_std": ("points", "standard deviation of the score over games"),
    "score_ci95_lower": ("points", "lower end of the 95 % bootstrap CI of the mean score"),
    "score_ci95_upper": ("points", "upper end of the 95 % bootstrap CI of the mean score"),
    "score_min": ("points", "lowest score of the games"),
    "games": ("1", "games played"),
    "truncated_games": ("1", "games stopped at max_steps before the end"),
    "agent_steps": ("1", "agent steps played (frameskip 4)"),
    "steps_per_game": ("1", "agent steps per game, mean"),
    "wall_s_per_step": ("s", "wall-clock simulation time per agent step"),
    "speed_vs_real_time": ("1", "simulated play time / wall time"),
    "latency_mvm_s_per_step": ("s", "STP-layer MVM latency per agent step incl. bound-management repeats (ledger)"),
    "read_rounds_per_step": ("1", "array reads per agent step (bound management repeats a clipped read)"),
    "trial_wall_s": ("s", "wall time of the whole trial"),
}


def unit_of(column: str) -> Tuple[str, str]:
    """(unit, description) of a metric or parameter column."""
    if column in UNITS:
        return UNITS[column]
    if column == "energy_digital_accel_j_per_game":
        return "J", "digital-accelerator baseline energy per game (docs/energy-model.md §9.1)"
    m = re.match(r"digital_ratio_(\w+)$", column)
    if m:
        return "1", f"digital-accelerator baseline energy / memristive energy at boundary {m.group(1)}"
    m = re.match(r"energy_gpu_measured_b(\d+)_j_per_game$", column)
    if m:
        return "J", f"GPU energy per game measured at {m.group(1)} game(s) at a time (docs/paper-energy.md §2.3)"
    m = re.match(r"energy_gpu_(latency|dedicated)_j_per_game$", column)
    if m:
        return "J", f"GPU {m.group(1)}-tier energy per game (docs/paper-energy.md §2)"
    m = re.match(r"energy_(\w+?)_j_per_game_std$", column)
    if m:
        return "J", f"standard deviation across the trial's games of each game's energy at boundary {m.group(1)}"
    m = re.match(r"energy_(\w+?)_j_per_(game|step)$", column)
    if m:
        return "J", f"energy at boundary {m.group(1)} per {m.group(2)}"
    m = re.match(r"energy_system\.(.+)_j_per_game$", column)
    if m:
        return "J", f"system energy of component {m.group(1)} per game"
    m = re.match(r"gpu_ratio_measured_b(\d+)_(\w+)$", column)
    if m:
        return "1", (f"measured GPU energy ({m.group(1)} game(s) at a time) / memristive energy at boundary "
                     f"{m.group(2)} (docs/paper-energy.md §2.3)")
    m = re.match(r"gpu_ratio_(latency|dedicated)_(\w+)$", column)
    if m:
        return "1", f"GPU {m.group(1)}-tier energy / memristive energy at boundary {m.group(2)}"
    m = re.match(r"gpu_ratio_(\w+)$", column)
    if m:
        return "1", f"GPU baseline (roofline tier) energy / memristive energy at boundary {m.group(1)}"
    if column.startswith(("device.", "periphery.", "agent.")):
        return _param_unit(column), "parameter"
    for suffix, unit in (("_j", "J"), ("_s", "s"), ("_m2", "m^2"), ("_w", "W")):
        if column.endswith(suffix):
            return unit, "task metric"
    return "", ""


def _param_unit(path: str) -> str:
    parts = path.split(".")
    if parts[0] == "device":  # the field's metadata on the first registered device class that has it
        meta = next((f.metadata for cls in DEVICE_CLASSES.values() for f in dataclasses.fields(cls)
                     if f.name == parts[1]), {})
        scale = meta.get("scale", 1.0)
        unit = meta.get("unit", "")
        if unit and scale == 1.0:
            return unit
    name = parts[-1]
    for suffix, unit in (("_s", "s"), ("_v", "V"), ("_j", "J"), ("_hz", "Hz"), ("_m2", "m^2"), ("_nm", "nm"),
                         ("_a", "A"), ("_f", "F"), ("bits", "bit"), ("_std", "rel")):
        if name.endswith(suffix):
            return unit
    return "1"
