"""Golden values of the composed cost model, and the read-noise law (issue 15 item 5).

The numbers below pin what the default configuration (``STORPUConfig()``: the ``sto_2024`` device,
the default ``PeripheryConfig``) costs, through public behaviour only: the CLI ``stoxbar energy``,
``stoxbar.analyze``, the Pong ledger of ``stoxbar play``'s path, ``crossbar.costs`` and the tile
forward. Doubling any constant that enters the default energy, latency, area or read noise makes
at least one test here fail (checked by a scripted mutation run; see the lead's report of issue 15).

How the golden literals were produced: at commit d979529 (one torch thread, CPU), by running the
command or the calls each block's comment names -- the same calls the tests make -- and printing
the results with ``repr``. A deliberate change of the cost model updates them the same way, and says
so (README and BENCHMARKS quote some of these numbers).

Tolerances: ``EXACT`` (rel 1e-9) for quantities that are counts times constants; ``STATE``
(rel 1e-6) for sums over float32 conductance states (cell reads, the bias integral and the bias
drivers' share of it), whose last digits may move with the summation order of another BLAS
build. A doubled constant moves a number by a factor 2, far outside either.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from stoxbar import analyze
from stoxbar.crossbar import EnergyLedger, STORPUConfig
from stoxbar.crossbar import costs
from stoxbar.devices import presets
from stoxbar.devices.sto import STODevice
from stoxbar.peripherals import PeripheryConfig
from stoxbar.scripts.cli import main as cli

EXACT = 1e-9
STATE = 1e-6
STATE_COMPONENTS = {"cell_read", "bias", "bias_driver"}
README = Path(__file__).resolve().parents[1] / "README.md"


def _rel(component: str) -> float:
    return STATE if component in STATE_COMPONENTS else EXACT


def _check(name: str, actual: float, expected: float, rel: float = EXACT) -> None:
    assert math.isclose(actual, expected, rel_tol=rel, abs_tol=0.0), f"{name}: {actual!r} != golden {expected!r}"


def _check_dict(name: str, actual: dict, expected: dict, rel_of=lambda k: EXACT) -> None:
    assert set(actual) == set(expected), f"{name}: keys {sorted(actual)} != golden {sorted(expected)}"
    for k, v in expected.items():
        _check(f"{name}[{k!r}]", actual[k], v, rel_of(k))


# ------------------------------------------------------------------------------------------------------
# stoxbar energy --layer 2656x64 (the README's table)
# golden: `stoxbar energy --layer 2656x64 --json F` (seed 0), entries of F keyed (tile, component):
# (count, energy J, time s). Layer "layer"; events "mvm" / "short_term_update" + "decay".
MVM_ENTRIES = {
    ('0.0', 'adc'): (384.0, 6e-10, 0.0),
    ('0.0', 'cell_read'): (170112.0, 7.850818397193201e-11, 0.0),
    ('0.0', 'dac'): (1329.0, 6.634368e-10, 3.8778125e-07),
    ('0.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('0.0', 'row_driver'): (1329.0, 1.00376712e-10, 0.0),
    ('0.0', 'sense'): (384.0, 9.8679e-11, 0.0),
    ('1.0', 'adc'): (384.0, 6e-10, 0.0),
    ('1.0', 'cell_read'): (170112.0, 7.982510062020658e-11, 0.0),
    ('1.0', 'dac'): (1329.0, 6.634368e-10, 3.8778125e-07),
    ('1.0', 'digital_accum'): (64.0, 2.5317145809457796e-12, 0.0),
    ('1.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('1.0', 'row_driver'): (1329.0, 1.00376712e-10, 0.0),
    ('1.0', 'sense'): (384.0, 9.8679e-11, 0.0),
    ('2.0', 'adc'): (384.0, 6e-10, 0.0),
    ('2.0', 'cell_read'): (170112.0, 7.697407212428522e-11, 0.0),
    ('2.0', 'dac'): (1329.0, 6.634368e-10, 3.8778125e-07),
    ('2.0', 'digital_accum'): (64.0, 2.5317145809457796e-12, 0.0),
    ('2.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('2.0', 'row_driver'): (1329.0, 1.00376712e-10, 0.0),
    ('2.0', 'sense'): (384.0, 9.8679e-11, 0.0),
    ('3.0', 'adc'): (384.0, 6e-10, 0.0),
    ('3.0', 'cell_read'): (170112.0, 7.774163785634505e-11, 0.0),
    ('3.0', 'dac'): (1329.0, 6.634368e-10, 3.8778125e-07),
    ('3.0', 'digital_accum'): (64.0, 2.5317145809457796e-12, 0.0),
    ('3.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('3.0', 'row_driver'): (1329.0, 1.00376712e-10, 0.0),
    ('3.0', 'sense'): (384.0, 9.8679e-11, 0.0),
    ('4.0', 'adc'): (384.0, 6e-10, 0.0),
    ('4.0', 'cell_read'): (169728.0, 7.722761481534326e-11, 0.0),
    ('4.0', 'dac'): (1326.0, 6.619392e-10, 3.8778125e-07),
    ('4.0', 'digital_accum'): (64.0, 2.5317145809457796e-12, 0.0),
    ('4.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('4.0', 'row_driver'): (1326.0, 1.0015012800000001e-10, 0.0),
    ('4.0', 'sense'): (384.0, 9.8679e-11, 0.0),
    ('5.0', 'adc'): (384.0, 6e-10, 0.0),
    ('5.0', 'cell_read'): (169728.0, 7.681937717481496e-11, 0.0),
    ('5.0', 'dac'): (1326.0, 6.619392e-10, 3.8778125e-07),
    ('5.0', 'digital_accum'): (64.0, 2.5317145809457796e-12, 0.0),
    ('5.0', 'digital_subtract'): (64.0, 2.126798348854013e-12, 0.0),
    ('5.0', 'row_driver'): (1326.0, 1.0015012800000001e-10, 0.0),
    ('5.0', 'sense'): (384.0, 9.8679e-11, 0.0),
}
MVM_TOTAL_J = 9.26402205356078e-09
ST_ENTRIES = {
    ('0.0', 'bias'): (3780.2666666666664, 1.1741374209346678e-05, 0.06666666666666667),
    ('0.0', 'bias_driver'): (0.06666666666666667, 1.1748040876013344e-05, 0.0),
    ('0.0', 'bias_refresh'): (3780.2666666666664, 1.4766666666666667e-09, 0.0),
    ('0.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('0.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('0.0', 'st_pulse'): (17446.0, 1.54215e-08, 0.0),
    ('0.0', 'half_select'): (17446.0, 5.9141452499999994e-06, 0.0),
    ('0.0', 'st_write_driver'): (17446.0, 6.280078949999999e-09, 0.21793744600000003),
    ('1.0', 'bias'): (3780.2666666666664, 1.1715233900494275e-05, 0.06666666666666667),
    ('1.0', 'bias_driver'): (0.06666666666666667, 1.1721900567160941e-05, 0.0),
    ('1.0', 'bias_refresh'): (3780.2666666666664, 1.4766666666666667e-09, 0.0),
    ('1.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('1.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('1.0', 'st_pulse'): (17419.0, 1.51125e-08, 0.0),
    ('1.0', 'half_select'): (17419.0, 5.79564375e-06, 0.0),
    ('1.0', 'st_write_driver'): (17419.0, 6.170916599999999e-09, 0.21763741900000003),
    ('2.0', 'bias'): (3780.2666666666664, 1.1737312001183949e-05, 0.06666666666666667),
    ('2.0', 'bias_driver'): (0.06666666666666667, 1.1743978667850615e-05, 0.0),
    ('2.0', 'bias_refresh'): (3780.2666666666664, 1.4766666666666667e-09, 0.0),
    ('2.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('2.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('2.0', 'st_pulse'): (17451.0, 1.5343e-08, 0.0),
    ('2.0', 'half_select'): (17451.0, 5.884040499999999e-06, 0.0),
    ('2.0', 'st_write_driver'): (17451.0, 6.270712949999999e-09, 0.21819745100000001),
    ('3.0', 'bias'): (3780.2666666666664, 1.1723347918723287e-05, 0.06666666666666667),
    ('3.0', 'bias_driver'): (0.06666666666666667, 1.1730014585389953e-05, 0.0),
    ('3.0', 'bias_refresh'): (3780.2666666666664, 1.4766666666666667e-09, 0.0),
    ('3.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('3.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('3.0', 'st_pulse'): (17445.0, 1.5311499999999998e-08, 0.0),
    ('3.0', 'half_select'): (17445.0, 5.8719602499999994e-06, 0.0),
    ('3.0', 'st_write_driver'): (17445.0, 6.24361485e-09, 0.217957445),
    ('4.0', 'bias'): (3771.733333333333, 1.1753314868076688e-05, 0.06666666666666667),
    ('4.0', 'bias_driver'): (0.06666666666666667, 1.1759981534743354e-05, 0.0),
    ('4.0', 'bias_refresh'): (3771.733333333333, 1.4733333333333332e-09, 0.0),
    ('4.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('4.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('4.0', 'st_pulse'): (17534.0, 1.539e-08, 0.0),
    ('4.0', 'half_select'): (17534.0, 5.902065e-06, 0.0),
    ('4.0', 'st_write_driver'): (17534.0, 6.267166649999999e-09, 0.219647534),
    ('5.0', 'bias'): (3771.733333333333, 1.169032310066858e-05, 0.06666666666666667),
    ('5.0', 'bias_driver'): (0.06666666666666667, 1.1696989767335246e-05, 0.0),
    ('5.0', 'bias_refresh'): (3771.733333333333, 1.4733333333333332e-09, 0.0),
    ('5.0', 'leakage'): (0.06666666666666667, 3.740138837333334e-05, 0.0),
    ('5.0', 'power_gating_wake'): (1.0, 5.600208256000002e-10, 1e-08),  # wake_time_s 10 ns per wake-up (issue 17)
    ('5.0', 'st_pulse'): (17518.0, 1.5491e-08, 0.0),
    ('5.0', 'half_select'): (17518.0, 5.940798499999999e-06, 0.0),
    ('5.0', 'st_write_driver'): (17518.0, 6.309916949999999e-09, 0.21917751800000002),
}
ST_TOTAL_J = 0.0004006206208522239
MVM_LATENCY_S = 3.8778125e-07  # the busiest tile's read (all six tiles read in parallel)


@pytest.fixture(scope="module")
def energy_run(tmp_path_factory):
    """``stoxbar energy --layer 2656x64 --json F`` run twice in-process: (JSON, stdout) of each run."""
    import contextlib
    import io

    runs = []
    for k in range(2):
        path = tmp_path_factory.mktemp("energy") / f"e{k}.json"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert cli(["energy", "--layer", "2656x64", "--json", str(path)]) == 0
        runs.append((json.loads(path.read_text()), buf.getvalue()))
    return runs


def _entries(part: dict) -> dict:
    out = {}
    for e in part["entries"]:
        assert e["layer"] == "layer"
        key = (e["tile"], e["component"])
        assert key not in out
        out[key] = (e["count"], e["energy_j"], e["time_s"], e["event"])
    return out


def test_energy_2656x64_table_matches_golden_per_tile_component_and_event(energy_run):
    data, _ = energy_run[0]
    assert data["layer"] == [2656, 64] and data["preset"] == "sto_2024"
    for part, golden, total, events in (("mvm", MVM_ENTRIES, MVM_TOTAL_J, {"mvm"}),
                                        ("short_term_step", ST_ENTRIES, ST_TOTAL_J,
                                         {"short_term_update", "decay"})):
        got = _entries(data[part])
        assert set(got) == set(golden), part
        assert {v[3] for v in got.values()} == events
        for key, (count, energy, time_s) in golden.items():
            c, e, t, _ = got[key]
            _check(f"{part} {key} count", c, count, EXACT)
            _check(f"{part} {key} energy", e, energy, _rel(key[1]))
            _check(f"{part} {key} time", t, time_s, EXACT)
        _check(f"{part} total", data[part]["total_j"], total, STATE)
    # the read latency: the six tiles read in parallel (every tile took the same 3 rounds)
    led = EnergyLedger()
    for e in data["mvm"]["entries"]:
        led.add(e["layer"], e["tile"], e["component"], e["event"], e["count"], e["energy_j"], e["time_s"])
    _check("mvm latency", led.latency_s(event="mvm"), MVM_LATENCY_S)


def test_energy_2656x64_is_deterministic_run_to_run(energy_run):
    (a, out_a), (b, out_b) = energy_run
    # seed 0: the same noise, the same bound-management rounds (stdout: all but its "wrote PATH" line)
    assert a == b and out_a.splitlines()[:-1] == out_b.splitlines()[:-1]


def test_energy_2656x64_equals_the_readme_table(energy_run):
    """The README's printed table is what the command prints today, line for line."""
    _, out = energy_run[0]
    lines = README.read_text().splitlines()
    start = lines.index("    $ stoxbar energy --layer 2656x64") + 1
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line[4:])
    printed = [ln for ln in out.splitlines() if not ln.startswith("wrote ")]
    assert printed == block


def test_energy_2656x64_composes_the_documented_unit_costs(energy_run):
    """Hand-computed from the sources' constants (docs/peripherals-energy.md §1, §5): each component of the
    README table is count x unit cost, so a change of any one unit cost shows here by name."""
    data, _ = energy_run[0]

    def by_comp(part):
        out = {}
        for e in data[part]["entries"]:
            c, j = out.get(e["component"], (0.0, 0.0))
            out[e["component"]] = (c + e["count"], j + e["energy_j"])
        return out

    mvm, st = by_comp("mvm"), by_comp("short_term_step")
    rows, rounds, tiles, cols = 2656, 3, 6, 64
    assert mvm["dac"][0] == rows * rounds == mvm["row_driver"][0]  # 7968: bound management read 3 times
    conv = tiles * rounds * 2 * cols  # every physical column (pair member) converted each round
    assert mvm["adc"][0] == conv == mvm["sense"][0] == 2304
    t_pwm = 2**7 / 1e9  # 8-bit PWM: 128 slots of 1 ns
    _check("dac", mvm["dac"][1], 7968 * 3.9e-6 * t_pwm)  # ISAAC 1-bit DAC 3.9 uW over the window
    _check("adc", mvm["adc"][1], 2304 * 2e-3 / 1.28e9)  # ISAAC 8-bit ADC: 2 mW / 1.28 GS/s
    _check("sense", mvm["sense"][1], 2304 * (2e-6 * t_pwm + 10e-6 / 1024 * 100e-9))  # TIA + ISAAC S+H
    c_row = 0.2e-15 * 1024 + 5e-15  # a row line spans the 1024 physical columns of a 512 x 512 tile
    _check("row_driver", mvm["row_driver"][1], 7968 * c_row * 0.6**2)
    add8, add32 = 0.03e-12, 0.1e-12  # Horowitz 45 nm adds; other widths on the power law through them

    def add(bits):
        return add8 * (bits / 8) ** (math.log(add32 / add8) / math.log(4))

    _check("digital_subtract", mvm["digital_subtract"][1], tiles * cols * add(9))  # 8-bit ADC word + sign
    _check("digital_accum", mvm["digital_accum"][1], (tiles - 1) * cols * add(8 + 3))  # 6 row-tiles: 3 bits
    dev = presets.sto_2024()
    g_mean = mvm["cell_read"][1] / (0.6**2 * t_pwm)  # sum over cell reads of drive x G (S)
    assert 0 < g_mean < mvm["cell_read"][0] * dev.g_max_s  # bounded by every read at g_max, full drive
    # short-term update: pulse energies V^2 G t on 50 nS, plus the write driver per pulse
    n_pulses = st["st_pulse"][0]
    assert n_pulses == st["st_write_driver"][0] == 104813
    # issue 17 pt 5: a pulse charges its row line (all 1024 physical columns of the 512 x 512 tile) to V
    # and swings its column line (512 rows) by V/2 (the V/2 scheme), + 20 fJ; levels are 1 V and 2 V
    c_row, c_col = 0.2e-15 * 1024 + 5e-15, 0.2e-15 * 512 + 5e-15
    per_volt2 = c_row + c_col / 4
    assert n_pulses * (per_volt2 * 1.0 + 20e-15) < st["st_write_driver"][1] < n_pulses * (per_volt2 * 4.0 + 20e-15)
    # half-selected cells: the selected row's 1023 other cells and the column's 511 other cells at V/2 take
    # (1/2)^2 of the pulse's own V^2 G t each: exactly 1534 / 4 times the pulses' device energy
    assert st["half_select"][0] == n_pulses
    _check("half_select", st["half_select"][1], st["st_pulse"][1] * 1534 / 4)
    assert 0.5e-12 * n_pulses < st["st_pulse"][1] < 4e-12 * n_pulses  # levels 0.5, 1, 2, 4 pJ
    # decay: bias held on every device of every pair for dt; per_cell addressing (the default since
    # issue 17): every cell draws from the 0.6 V rail through its access device (loss 0.6/0.3 - 1 of the
    # 0.3 V bias) + 100 nW for the one rail driver per tile; every cell's 25 fF hold node refreshed at
    # 1 V every 64 ms
    dt = 4 / 60
    _check("bias device-seconds", st["bias"][0], 2 * rows * cols * dt)
    _check("bias_driver events", st["bias_driver"][0], tiles * dt)
    _check("bias_driver", st["bias_driver"][1], st["bias"][1] * (0.6 / 0.3 - 1) + 100e-9 * tiles * dt, STATE)
    _check("bias_refresh", st["bias_refresh"][1], 2 * rows * cols * dt / 64e-3 * 25e-15 * 1.0**2)
    # static power (issue 17.4): per 512 x 512 tile 128 ADCs x 0.2 mW, 512 DACs x 0.39 uW, 1024 x (S+H 0.97 nW +
    # TIA 2 uW), 2048 drivers x 1 nW, 2 buffers x 0.075 mW, gated to 2 %, + 1 uW bias references; 20 ns wake-up
    gated = 128 * 0.2e-3 + 512 * 0.390625e-6 + 1024 * (9.7e-10 + 2e-6) + 2048 * 1e-9 + 2 * 0.075e-3
    _check("leakage", st["leakage"][1], tiles * (0.02 * gated + 1e-6) * dt)
    _check("power_gating_wake", st["power_gating_wake"][1], tiles * gated * 20e-9)
    g_bias = st["bias"][1] / (0.3**2 * 2 * rows * cols * dt)  # mean conductance under the 0.3 V bias
    assert dev.g_min_s < g_bias < dev.g_max_s
    # the read latency by hand: per round the line rise (1 ns) + the PWM window; then one conversion
    # (128 ADCs per tile for the 1024 physical columns, 8 columns each: here 128 columns, one each)
    _check("latency", MVM_LATENCY_S, rounds * (1e-9 + t_pwm) + 1 / 1.28e9)


# ------------------------------------------------------------------------------------------------------
# area and a full-scale tile read (crossbar.costs, the one cost model)
# golden: costs.area(costs.layer_layout(2656, 64, p), p) and
#         costs.cost(costs.full_scale_read(p, d), d, p) with p = PeripheryConfig(), d = sto_2024()
AREA_2656X64_M2 = {'array': 3.145728e-08, 'dac': 5.09952e-10, 'row_driver': 6.144e-09, 'adc': 9.216e-07, 'tia': 1.2288e-07, 'sample_hold': 2.4e-10, 'write_driver': 4.608e-08, 'bias_driver': 3e-11, 'bias_cell_access': 1.9327352832000003e-08, 'total': 1.148268584832e-06}
FULL_SCALE_READ = {'dac': (512, 2.555904e-10), 'row_driver': (512, 3.8670336e-11),
                   'cell_read': (524288, 1.3522436095999999e-09), 'adc': (1024, 1.6e-09),
                   'sense': (1024, 2.63144e-10), 'digital_subtract': (512, 1.7014386790832106e-11)}
FULL_SCALE_LATENCY_S = 1.3525e-07


def test_area_and_full_scale_read_golden():
    p, d = PeripheryConfig(), presets.sto_2024()
    layout = costs.layer_layout(2656, 64, p)
    assert layout == [(443, 64)] * 4 + [(442, 64)] * 2
    a = costs.area(layout, p)
    _check_dict("area", a, AREA_2656X64_M2)
    # by hand, one 512 x 512 tile (1024 physical columns): 0.01 um^2 cells, ISAAC's 8-bit ADC 1200 um^2
    # (128 ADCs sharing 8 columns each), 0.166 um^2 DAC and 2 um^2 read driver per row, a 20 um^2 TIA and
    # ISAAC's S+H per converted column, 5 um^2 write drivers per row and column line
    per_tile = {"array": 512 * 1024 * 0.01e-12, "adc": 128 * 1200e-12, "dac": 512 * 0.166e-12,
                "row_driver": 512 * 2e-12, "tia": 1024 * 20e-12, "sample_hold": 1024 * 0.00004e-6 / 1024,
                "write_driver": 1536 * 5e-12, "bias_driver": 5e-12,  # per_cell: one rail driver per tile
                "bias_cell_access": 512 * 1024 * 6 * 32e-9**2}  # a 6 F^2 1T1C hold node per cell, F = 32 nm
    for k, v in per_tile.items():
        _check(f"area {k} by hand", a[k], 6 * v)
    c = costs.cost(costs.full_scale_read(p, d), d, p)
    assert c.event == "mvm"
    assert set(c.parts) == set(FULL_SCALE_READ)
    for k, (count, energy) in FULL_SCALE_READ.items():
        _check(f"full scale {k} count", c.parts[k][0], count)
        _check(f"full scale {k}", c.parts[k][1], energy)
    _check("full-scale read latency", c.latency_s, FULL_SCALE_LATENCY_S)
    # a full-scale read: every cell pair at g_min + g_max for the whole 128 ns window at 0.6 V
    _check("full-scale cell read by hand", c.parts["cell_read"][1], 512 * 512 * (d.g_min_s + d.g_max_s) * 0.36 * 128e-9)


def test_sto_device_defaults_are_the_sto_2024_preset():
    """``STODevice()``'s field defaults are documented as the ``sto_2024`` preset: they must stay one set of
    numbers (a value changed in one place only would make the two silently disagree)."""
    assert STODevice() == presets.sto_2024()
    assert STORPUConfig().device == presets.sto_2024()


# ------------------------------------------------------------------------------------------------------
# one analyze report of a small CNN
# golden: _small_cnn_report() below (analyze of the CNN on STORPUConfig()), printed with repr
CNN_TOTAL_J = 6.098917304513152e-05  # issue 17: programming pulses drive full lines, half-selected cells
CNN_INFERENCE_J = 4.983886931527975e-09
CNN_PROGRAMMING_J = 6.09841891582e-05
CNN_LATENCY_S = 9.5475625e-06
CNN_AREA_M2 = 3.82756194944e-07  # per_cell bias addressing (issue 17): one rail driver + a hold node per cell
CNN_BY_LAYER = {'0': 5.6611742763825704e-06, '1': 7.2864e-10, '2': 5.4648e-10, '3': 1.8e-10,
                '4': 5.532640352688975e-05, '5': 1.4012185920015943e-10}
CNN_BY_TILE = {'0/0.0': 5.659404651972914e-06, '4/0.0': 5.532633468144464e-05}
CNN_BY_COMPONENT = {'adc': 9.625e-10, 'cell_read': 5.3382780027940455e-12, 'dac': 3.59424e-10,
                    'digital_add': 1.6869854771159116e-11, 'digital_compare': 1.512e-11, 'digital_mult': 6.16e-11,
                    'digital_softmax': 9.012185920015943e-11, 'digital_subtract': 1.023521705385994e-11,
                    'lt_half_select': 6.0787818e-05, 'lt_program': 1.9637115819999999e-07, 'row_driver': 5.438016e-11,
                    'sense': 1.582975625e-10,
                    'sram': 3.2499999999999993e-09}
CNN_LAYER_LATENCY_S = {'0': 9.28878125e-06, '4': 2.5878125e-07}
CNN_LAYER_PROGRAMMING_J = {'0': 5.6579698549e-06, '4': 5.53262193033e-05}
CNN_DIGITAL_OPS = {'mult': 308.0, 'add': 308.0, 'compare': 504.0, 'softmax': 20.0}
CNN_TILE_AREA_M2 = 1.91378097472e-07


def _small_cnn_report():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10),
                          nn.Softmax(-1))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the read noise
    return analyze(model, x, rpu_config=STORPUConfig())


def test_analyze_small_cnn_golden():
    rep = _small_cnn_report()
    state_rel = lambda k: STATE if k in STATE_COMPONENTS else EXACT  # noqa: E731
    _check("total", rep.total_j, CNN_TOTAL_J, STATE)
    _check("forward", rep.inference_j, CNN_INFERENCE_J, STATE)
    _check("programming", rep.programming_j, CNN_PROGRAMMING_J)
    _check("latency", rep.latency_s, CNN_LATENCY_S)
    _check("area", rep.area_m2, CNN_AREA_M2)
    _check_dict("by_component", rep.by_component, CNN_BY_COMPONENT, state_rel)
    _check_dict("by_layer", rep.by_layer, CNN_BY_LAYER, lambda k: STATE)
    _check_dict("by_tile", rep.by_tile, CNN_BY_TILE, lambda k: STATE)
    _check_dict("layer latency", {k: v["latency_s"] for k, v in rep.layers.items() if v["kind"] == "analog"},
                CNN_LAYER_LATENCY_S)
    _check_dict("layer programming", {k: v["programming_j"] for k, v in rep.layers.items() if v["programming_j"]},
                CNN_LAYER_PROGRAMMING_J)
    assert rep.digital_ops == CNN_DIGITAL_OPS
    assert [(k, v["kind"], v["tiles"], v["input_vectors"]) for k, v in rep.layers.items()] == [
        ("0", "analog", 1, 72), ("1", "digital", 0, 0), ("2", "digital", 0, 0), ("3", "digital", 0, 0),
        ("4", "analog", 1, 2), ("5", "digital", 0, 0)]
    # cross-checks that are not sums of the same entries: two one-tile layers of the default 512 x 512
    # tile (the area above, by hand: 1/6 of the 2656x64 layer's six tiles); the conv reads 2 x 6 x 6 = 72
    # patches, one row-tile each
    _check("area = 2 tiles", rep.area_m2, 2 * CNN_TILE_AREA_M2)
    _check("tile area", CNN_TILE_AREA_M2, AREA_2656X64_M2["total"] / 6)
    # the conv's latency: 72 patch reads, the first of each round pipelined; the linear layer: 2 vectors.
    # Each read is >= 1 round of (1 ns line rise + 128 ns PWM window)
    assert CNN_LAYER_LATENCY_S["0"] >= 72 * 129e-9 and CNN_LAYER_LATENCY_S["4"] >= 2 * 129e-9
    # programming: write-verify from g_min, per pulse 9 pJ device energy (3 V x 100 nS x 10 us) + the driver
    # charging the full row line (1024 physical columns) to 3 V, swinging the 512-cell column line by V/2, 20 fJ
    # fixed, + the 511 + 1023 half-selected cells at 1.5 V for the pulse's 10 us on 100 nS (V/2 scheme)
    drv = (0.2e-15 * 1024 + 5e-15) * 3.0**2 + (0.2e-15 * 512 + 5e-15) * 1.5**2 + 20e-15
    half = (511 + 1023) * 1.5**2 * 100e-9 * 10e-6
    per_pulse = 3.0**2 * 100e-9 * 10e-6 + drv + half
    pulses = CNN_PROGRAMMING_J / per_pulse
    assert abs(pulses - round(pulses)) < 1e-6 * pulses and pulses > 1000
    _check("lt_half_select by hand", CNN_BY_COMPONENT["lt_half_select"], round(pulses) * half)


def test_analyze_small_cnn_is_deterministic_run_to_run():
    a, b = _small_cnn_report().to_dict(), _small_cnn_report().to_dict()
    a.pop("ledger"), b.pop("ledger")
    assert a == b


# ------------------------------------------------------------------------------------------------------
# the Pong ledger: the shipped m-STPN on the analog chip, 10 agent steps (greedy, seed 0)
# golden: the calls of _pong_ledger below, energy_report(...) printed with repr
PONG_STEPS = 10
PONG_BOUNDARIES = {  # regenerated for the default agent of session 37 (pong/checkpoints/pong_mstpn: the m-STPN's
    # fourth annealed fine-tune); before, session 32's and session 30's fine-tunes, session 29's hebbstop agent, issue 17's per_cell addressing
    'synapse_only': {'bias': 0.0008255835632246651, 'cell_read': 2.6079800803201495e-10, 'st_pulse': 5.291e-08},
    'array': {'adc': 2.1599999999999998e-08, 'bias': 0.0008255835632246651, 'bias_driver': 0.000507681005898579, 'bias_refresh': 8.853333333333333e-08, 'cell_read': 2.6079800803201495e-10, 'dac': 2.38657536e-08, 'digital_accum': 1.2658572904728897e-10, 'digital_compare': 5.099519999999999e-08, 'digital_mult': 6.79936e-07, 'digital_subtract': 1.276079009312408e-10, 'half_select': 2.0290985e-05, 'leakage': 0.0022440833024000005, 'power_gating_wake': 3.360124953600001e-08, 'row_driver': 3.6108426239999998e-09, 'sense': 3.5524440000000002e-09, 'sram': 2.1588e-06, 'st_pulse': 5.291e-08, 'st_write_driver': 1.672327035e-08},
    'system': {'adc': 2.1599999999999998e-08, 'agent.digital_divide': 2.8938918889240606e-07, 'agent.sram': 3.5279999999999993e-07, 'bias': 0.0008255835632246651, 'bias_driver': 0.000507681005898579, 'bias_refresh': 8.853333333333333e-08, 'cell_read': 2.6079800803201495e-10, 'dac': 2.38657536e-08, 'digital_accum': 1.2658572904728897e-10, 'digital_compare': 5.099519999999999e-08, 'digital_mult': 6.79936e-07, 'digital_subtract': 1.276079009312408e-10, 'encoder.digital_add': 4.925121237086454e-09, 'encoder.digital_compare': 2.6976000000000003e-09, 'encoder.digital_mac': 2.734093558031784e-06, 'encoder.sram': 6.212000000000001e-07, 'half_select': 2.0290985e-05, 'heads.digital_add': 3.834057902536163e-12, 'heads.digital_mac': 1.1413797057623144e-09, 'heads.sram': 7.375e-09, 'leakage': 0.0022440833024000005, 'neuron.digital_add': 3.56019662378358e-11, 'neuron.digital_compare': 1.5935999999999997e-09, 'neuron.digital_divide': 1.0893107790507801e-07, 'neuron.digital_mult': 1.28e-10, 'neuron.digital_nonlinear': 2.24e-10, 'neuron.sram': 2.3885e-07, 'power_gating_wake': 3.360124953600001e-08, 'row_driver': 3.6108426239999998e-09, 'sense': 3.5524440000000002e-09, 'sram': 2.1588e-06, 'st_pulse': 5.291e-08, 'st_write_driver': 1.672327035e-08},
}
PONG_TOTALS = {'array': 0.003600773499608326, 'synapse_only': 0.0008256367340226732, 'system': 0.003605136887570122}
PONG_GPU = {'stp_step': 0.0032967261318585213, 'encoder': 0.00017099583179487176, 'heads': 2.0302716623794214e-06}
PONG_GPU_TOTAL_J = 0.0034697522353157725
# (layer, component, event) -> count; 10 steps of the 2656 x 64 layer on 6 tiles
PONG_COUNTS = {('stp', 'dac', 'mvm'): 47808.0, ('stp', 'row_driver', 'mvm'): 47808.0, ('stp', 'cell_read', 'mvm'): 6119424.0, ('stp', 'adc', 'mvm'): 13824.0, ('stp', 'sense', 'mvm'): 13824.0, ('stp', 'digital_subtract', 'mvm'): 3840.0, ('stp', 'digital_accum', 'mvm'): 3200.0, ('stp', 'st_pulse', 'short_term_update'): 31802.0, ('stp', 'st_write_driver', 'short_term_update'): 31802.0, ('stp', 'half_select', 'short_term_update'): 31802.0, ('stp', 'leakage', 'decay'): 3.9999999999999996, ('stp', 'power_gating_wake', 'decay'): 60.0, ('stp', 'bias', 'decay'): 226645.3333333333, ('stp', 'bias_driver', 'decay'): 3.9999999999999996, ('stp', 'bias_refresh', 'decay'): 226645.3333333333, ('agent', 'digital_divide', 'step'): 70560.0, ('agent', 'sram', 'step'): 35280.0, ('encoder', 'digital_add', 'step'): 89920.0, ('encoder', 'digital_mac', 'step'): 10731520.0, ('encoder', 'sram', 'step'): 62120.0, ('encoder', 'digital_compare', 'step'): 89920.0, ('neuron', 'digital_add', 'step'): 650.0, ('neuron', 'digital_compare', 'step'): 53120.0, ('neuron', 'digital_divide', 'step'): 26560.0, ('neuron', 'digital_mult', 'step'): 640.0, ('neuron', 'digital_nonlinear', 'step'): 640.0, ('neuron', 'sram', 'step'): 23885.0, ('stp', 'digital_compare', 'step'): 1699840.0, ('stp', 'digital_mult', 'step'): 3399680.0, ('stp', 'sram', 'step'): 215880.0, ('heads', 'digital_add', 'step'): 70.0, ('heads', 'digital_mac', 'step'): 4480.0, ('heads', 'sram', 'step'): 737.5}
PONG_READ_ROUNDS = 18  # the stp layer's read rounds over the 10 steps: aihwkit's bound management re-read 8 clipped reads
PONG_READ_LATENCY_S = 2.3298124999999997e-06  # the stp layer's reads over the 10 steps (busiest tile)
PONG_WRITE_LATENCY_S = 0.347503229  # its write phases: the busiest tile's pulses, one at a time (~35 ms per step)


def _pong_ledger():
    from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, load_agent
    from stoxbar.pong.evaluate import build_analog_cell, energy_report, play_games

    torch.manual_seed(0)
    agent, _ = load_agent(SHIPPED_CHECKPOINT)
    device = presets.get_preset(agent.arch.device_preset)
    periphery = PeripheryConfig()
    ledger = EnergyLedger()
    build_analog_cell(agent, device, periphery).attach(ledger, "stp")
    result = play_games(agent, 1, 0, True, PONG_STEPS, periphery, ledger, sticky=0.0)  # the pinned protocol
    return agent, result, energy_report(result, agent.arch, analog=True)


def test_pong_ledger_10_steps_golden():
    agent, result, energy = _pong_ledger()
    assert agent.arch.device_preset == "sto_2024" and result.steps == [PONG_STEPS]
    for name, golden in PONG_BOUNDARIES.items():
        rel = lambda k: STATE if k in STATE_COMPONENTS else EXACT  # noqa: E731
        _check_dict(f"{name} by component", energy[name]["by_component"], golden, rel)
        _check(f"{name} total", energy[name]["total_j"], PONG_TOTALS[name], STATE)
    must = {"bias", "bias_driver", "st_pulse", "st_write_driver", "sense", "adc", "dac", "row_driver", "cell_read"}
    assert must <= {k for k, v in energy["array"]["by_component"].items() if v > 0}
    _check_dict("gpu baseline", energy["gpu_baseline"]["by_component"], PONG_GPU)
    _check("gpu baseline total", energy["gpu_baseline"]["total_j"], PONG_GPU_TOTAL_J)
    counts = {k: e.count for k, e in result.ledger.totals(("layer", "component", "event")).items()}
    _check_dict("counts", counts, PONG_COUNTS)
    _check("stp read latency", result.ledger.latency_s(layer="stp", event="mvm"), PONG_READ_LATENCY_S)
    _check("stp write latency", result.ledger.latency_s(layer="stp", event="short_term_update"), PONG_WRITE_LATENCY_S)
    # per read round, the same 2656 x 64 layer as the README's `stoxbar energy` table: its one-MVM components
    # per round are that table's (PONG_READ_ROUNDS rounds here: one per step and the re-reads of clipped reads
    # by bound management; 3 rounds there); each round converts every input and reads every output once
    rounds = counts[("stp", "dac", "mvm")] / 2656
    assert rounds == PONG_READ_ROUNDS and counts[("stp", "adc", "mvm")] == rounds * 768
    arr = energy["array"]["by_component"]
    for comp in ("dac", "row_driver"):
        mvm_per_round = sum(v[1] for k, v in MVM_ENTRIES.items() if k[1] == comp) / 3
        _check(f"{comp} per round = README per round", arr[comp] / rounds, mvm_per_round)
    _check("adc per round", arr["adc"] / rounds, sum(v[1] for k, v in MVM_ENTRIES.items() if k[1] == "adc") / 3)
    # ten decay intervals of one agent step (4 frames at 60 Hz) on every device of the 169,984 pairs
    _check("bias device-seconds", counts[("stp", "bias", "decay")], PONG_STEPS * 2 * 169_984 * 4 / 60)


def test_pong_ledger_is_deterministic_run_to_run():
    e1, e2 = _pong_ledger()[2], _pong_ledger()[2]
    assert e1 == e2


# ------------------------------------------------------------------------------------------------------
# the read-noise law: each cell read is G (1 + s xi), s = device.read_noise_std
def _noise_z(device, grad: bool):
    """Output error of the tile forward against float, over many draws, divided by the law's std."""
    cfg = STORPUConfig(device=device)
    cfg.forward.is_perfect = True  # no DAC/ADC quantisation, no output noise: the read noise alone
    n_in, n_out, n = 128, 32, 2000
    gen = torch.Generator().manual_seed(3)
    w = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0])[torch.randint(0, 5, (n_out, n_in), generator=gen)]
    w[:, 0] = 1.0  # max |w| = 1 in every row: the weights map 1:1 onto the conductance window
    from aihwkit.nn import AnalogLinear

    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
    layer.set_weights(w)
    assert torch.equal(layer.get_weights()[0], w)  # write-verify: every device on its target
    x_row = torch.rand(n_in, generator=gen) * 2 - 1
    x = x_row.expand(n, n_in).contiguous()
    torch.manual_seed(4)
    if grad:  # a training read (aihwkit's Python path, straight-through weights)
        layer.train()
        y = layer(x.requires_grad_(True)).detach()
    else:  # an inference read
        layer.eval()
        with torch.no_grad():
            y = layer(x)
    err = (y - x_row @ w.t()).double()  # [n, out]: n independent draws per output
    # the law (devices/base.py): one side of each pair at g_min, the other at g_min + |w| g_range; the
    # column current's noise variance sum_j s^2 (G+^2 + G-^2) x_j^2, in weight units (/ g_range^2)
    d = device
    g_hi = (d.g_min_s + w.abs().double() * d.g_range_s)
    var = (d.read_noise_std / d.g_range_s) ** 2 * ((g_hi**2 + d.g_min_s**2) * x_row.double() ** 2).sum(1)
    return err / var.sqrt()


@pytest.mark.parametrize("grad", [False, True], ids=["inference_read", "training_read"])
def test_read_noise_matches_read_noise_std(grad):
    """The tile's output error against float follows ``read_noise_std``: the mean of z^2 over M = 64,000
    standard-normal draws is chi^2_M / M, mean 1 and std sqrt(2 / M) = 0.0056; 5 std of it bounds the
    estimate at +-2.8 % (std +-1.4 %). A law with the std doubled or halved gives 4 or 1/4: refused."""
    z = _noise_z(presets.sto_2024(), grad)
    m = z.numel()
    bound = 5 * math.sqrt(2 / m)
    v = float((z * z).mean())
    assert abs(v - 1) < bound, f"mean z^2 = {v:.4f}: the read noise does not follow read_noise_std"
    assert abs(float(z.mean())) < 5 / math.sqrt(m)  # unbiased
    # the test's power: the same data measured against a doubled or halved std is refused
    assert abs(v / 4 - 1) > bound and abs(v * 4 - 1) > bound
    # and the noise is per draw, not a fixed offset: the columns' errors are uncorrelated over draws
    zc = z - z.mean(0)
    corr = float((zc[:, 0] * zc[:, 1]).mean() / (zc[:, 0].std() * zc[:, 1].std()))
    assert abs(corr) < 5 / math.sqrt(z.shape[0])


def test_read_noise_off_when_the_device_has_none():
    """With ``read_noise_std = 0`` (the ideal device) and perfect IO the tile read equals float."""
    from dataclasses import replace

    dev = replace(presets.sto_2024(), read_noise_std=0.0)
    cfg = STORPUConfig(device=dev)
    cfg.forward.is_perfect = True
    from aihwkit.nn import AnalogLinear

    layer = AnalogLinear(16, 4, bias=False, rpu_config=cfg).eval()
    w = torch.linspace(-1, 1, 64).reshape(4, 16)
    layer.set_weights(w)
    x = torch.rand(50, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ w.t(), atol=1e-5, rtol=0)
