"""``stoxbar.analyze``: any torch model on STO tiles -> energy, latency, area and breakdowns."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from aihwkit.nn import AnalogLinear
from aihwkit.nn.conversion import convert_to_analog

from stoxbar import analyze
from stoxbar.analysis import AnalysisReport, digital_energy, sram_energy_j, tile_area_m2
from stoxbar.core.entry_points import load_entry_point
from stoxbar.crossbar import EnergyLedger, STORPUConfig
from stoxbar.peripherals import DigitalPeriphery, PeripheryConfig
from stoxbar.core.validation import ConfigError


def small_cfg(rows: int = 16, cols: int = 8) -> STORPUConfig:
    return STORPUConfig(periphery=PeripheryConfig(tile_rows=rows, tile_cols=cols))


def mlp(n_in: int = 20, hidden: int = 12, n_out: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out), nn.Softmax(-1))


def test_report_keys_sums_and_json():
    rep = analyze(mlp(), torch.rand(4, 20), rpu_config=small_cfg())
    assert isinstance(rep, AnalysisReport)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    for key in ("total_j", "latency_s", "area_m2", "by_layer", "by_tile", "by_component"):
        assert key in d
    assert rep.total_j > 0 and rep.latency_s > 0 and rep.area_m2 > 0
    # numbers, not re-sums (the ledger refuses negative entries and sums its own parts): 20 -> 12 on 2 x 2
    # tiles of 16 x 8, 12 -> 5 on one; 4 vectors, each converting every physical column once (one round)
    # at ISAAC's 1.5625 pJ; 10 pJ per 64-bit SRAM word moved; the total is golden
    assert [rep.layers[k]["tiles"] for k in rep.layers] == [4, 0, 1, 0]
    assert math.isclose(rep.area_m2, 5 * tile_area_m2(small_cfg().periphery), rel_tol=1e-12)
    comp = rep.ledger.totals(("component",))
    assert comp[("adc",)].count == 4 * (4 * 12 + 10)
    assert math.isclose(comp[("adc",)].energy_j, comp[("adc",)].count * 2e-3 / 1.28e9, rel_tol=1e-9)
    assert math.isclose(comp[("sram",)].energy_j, comp[("sram",)].count * 10e-12, rel_tol=1e-9)
    # (issue 17: +the programmed lines' half-selected cells, 8.8e-7 J, and the full row line per programming pulse)
    assert math.isclose(rep.total_j, 1.0016678640337873e-06, rel_tol=1e-6)
    analog_j = sum(j for layer, j in rep.by_layer.items() if rep.layers[layer]["kind"] == "analog")
    digital_tile_j = sum(e.energy_j for (t,), e in rep.ledger.totals(("tile",)).items() if t == "digital"
                         ) - sum(e.energy_j for (layer, t), e in rep.ledger.totals(("layer", "tile")).items()
                                 if t == "digital" and rep.layers[layer]["kind"] == "digital")
    assert math.isclose(sum(rep.by_tile.values()) + digital_tile_j, analog_j, rel_tol=1e-9)
    assert "table" not in d and "layer" in rep.table()


def test_digital_ops_are_counted_from_the_ops_run_and_not_double_counted():
    torch.manual_seed(0)
    model = nn.Sequential(AnalogLinear(20, 12, bias=True, rpu_config=small_cfg()), nn.ReLU(),
                          nn.Linear(12, 5), nn.Softmax(-1))  # the second Linear stays digital
    batch = 3
    rep = analyze(model, torch.rand(batch, 20))
    ops = rep.digital_ops
    assert ops["compare"] == batch * 12                 # ReLU: one compare per hidden value
    assert ops["softmax"] == batch * 5
    assert ops["mac"] == batch * 12 * 5                 # only the digital Linear's MACs (flop counter / 2)
    # analog layer: its bias add and output scale are digital, its matmul is not
    assert ops["add"] == batch * 12 + batch * 5        # analog bias + digital Linear's bias (addmm)
    assert ops["mult"] == batch * 12                    # output scales of the analog layer
    comps = {c for (layer, c) in rep.ledger.totals(("layer", "component")) if layer == "0"}
    assert {"dac", "adc", "cell_read", "digital_add", "digital_mult"} <= comps
    assert "digital_mac" not in comps


def test_digital_cost_matches_the_periphery_model():
    model = nn.Sequential(AnalogLinear(8, 4, bias=False, rpu_config=small_cfg()), nn.Tanh())
    rep = analyze(model, torch.rand(2, 8), act_bits=8)
    d = DigitalPeriphery()
    parts = rep.ledger.by_component(layer="1")
    assert math.isclose(parts["digital_nonlinear"], d.tanh_j(8, 8), rel_tol=1e-12)
    # tanh reads 8 values and writes 8, one byte each
    assert math.isclose(parts["sram"], sram_energy_j(d, 16), rel_tol=1e-12)
    assert math.isclose(digital_energy(d, "mac", 10), d.energy_j("mult", 8, 10) + d.accumulate_j(None, 10))


def test_pooling_and_conv_counts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
    rep = analyze(model, torch.rand(2, 1, 8, 8), rpu_config=small_cfg(rows=32, cols=8))
    # max-pool 2x2: 3 compares per output value (2 x 4 x 3 x 3 outputs); ReLU: 2 x 4 x 6 x 6
    assert rep.digital_ops["compare"] == 2 * 4 * 6 * 6 + 3 * 2 * 4 * 3 * 3
    assert rep.layers["0"]["kind"] == "analog" and rep.layers["0"]["input_vectors"] == 2 * 6 * 6
    assert "mac" not in rep.digital_ops                 # both conv and linear ran on the tiles


def test_per_tile_breakdown_of_a_split_layer():
    cfg = small_cfg(rows=16, cols=8)
    model = convert_to_analog(mlp(40, 12, 5), cfg)  # layer 0: 40 inputs -> 3 row-tiles, 12 outputs -> 2 col-tiles
    rep = analyze(model, torch.rand(2, 40))
    assert rep.layers["0"]["tiles"] == 6
    tiles0 = {k for k in rep.by_tile if k.startswith("0/") and k != "0/all"}
    assert tiles0 == {f"0/{i}.{j}" for i in range(3) for j in range(2)}
    assert all(rep.by_tile[k] > 0 for k in tiles0)
    # latency: per layer the busiest tile's busy time (tiles in parallel), layers in sequence
    times = rep.ledger.totals(("layer", "event", "tile"), event="mvm")
    per_layer = {}
    for (layer, _, _), e in times.items():
        per_layer[layer] = max(per_layer.get(layer, 0.0), e.time_s)
    assert math.isclose(rep.latency_s, sum(per_layer.values())) and rep.latency_s > 0
    assert math.isclose(rep.layers["0"]["area_m2"], 6 * tile_area_m2(cfg.periphery))
    assert tile_area_m2(cfg.periphery) > tile_area_m2(small_cfg(rows=8, cols=8).periphery)


def test_programming_energy_booked_through_convert_to_analog():
    cfg = small_cfg(rows=32, cols=16)  # one tile per layer
    float_model = mlp()
    model = convert_to_analog(float_model, cfg)  # programs the tiles before any ledger exists
    rep = analyze(model, torch.rand(2, 20))
    assert rep.programming_j > 0
    assert math.isclose(rep.total_j, rep.inference_j + rep.programming_j)
    # write-verify from reset: ceil(sum |G - g_min| / lt_dg_s) pulses per tile, device + driver energy
    dev = cfg.device
    sim = model[0].analog_module.tile
    st = sim.state
    pulses = math.ceil(float(((st.g_pos - dev.g_min_s).abs() + (st.g_neg - dev.g_min_s).abs()).sum()) / dev.lt_dg_s)
    # the driver charges the full row line (2 x 16 physical columns) and swings the 32-cell column line by
    # V/2; the pulse half-selects the line's other 31 + 31 cells at V/2 (issue 17: the write path)
    wd, v = cfg.periphery.write_driver, dev.lt_pulse_v
    e_drv = wd.long_term_pulse_j(v, 32) + wd.line_capacitance_f(32) * (v / 2) ** 2
    e_half = (31 + 31) * dev.lt_pulse_energy_j / 4
    parts = rep.ledger.totals(("layer", "component"), layer="0")
    booked, half = parts[("0", "lt_program")], parts[("0", "lt_half_select")]
    assert booked.count == half.count == pulses > 0
    assert math.isclose(booked.energy_j, pulses * (dev.lt_pulse_energy_j + e_drv), rel_tol=1e-9)
    assert math.isclose(half.energy_j, pulses * e_half, rel_tol=1e-9)
    # a second analysis into the same ledger does not book programming again
    shared = EnergyLedger()
    first = analyze(model, torch.rand(2, 20), ledger=shared)
    again = analyze(model, torch.rand(2, 20), ledger=shared)
    assert math.isclose(first.programming_j, rep.programming_j) and again.programming_j == 0.0  # booked once
    assert math.isclose(shared.total_j, first.total_j + again.total_j, rel_tol=1e-9)
    # the float model was not converted in place
    assert not any(isinstance(m, AnalogLinear) for m in float_model.modules())
    assert not analyze(model, torch.rand(2, 20), programming=False).programming_j


def test_ledger_is_restored_and_results_match_plain_forward():
    model = convert_to_analog(mlp(), small_cfg())
    own = EnergyLedger()
    from stoxbar.crossbar import attach_ledger, flush_events

    attach_ledger(model, own, prefix="mine")
    n, before_j = len(own), own.total_j  # (programming the tiles kept pending may be booked here)
    analyze(model, torch.rand(2, 20))
    assert len(own) == n and own.total_j == before_j  # nothing of the analysis leaks into it
    with torch.no_grad():
        model(torch.rand(2, 20))
    assert own.total_j == before_j  # the read is recorded, booked when its owner flushes
    flush_events(model)
    assert own.total_j > before_j and all(k[0].startswith("mine") for k, _ in own.items())


def test_gpu_baseline_of_the_same_work():
    from stoxbar.peripherals import GPUSpec

    rep = analyze(mlp(), torch.rand(4, 20), rpu_config=small_cfg(), gpu=GPUSpec())
    assert rep.gpu_j > 0 and rep.to_dict()["gpu_j"] == rep.gpu_j


def test_short_term_decay_with_dt():
    model = nn.Sequential(AnalogLinear(8, 4, bias=False, rpu_config=small_cfg()))
    tiles = model[0].analog_module
    tiles.set_batch(1)
    tiles.set_bias(torch.full((4, 8), 0.3))
    rep = analyze(model, torch.rand(1, 8), dt_s=0.5)
    assert rep.by_component["bias"] > 0 and rep.by_component["bias_driver"] > 0
    assert rep.latency_s < 0.5  # decay time is an interval, not compute latency


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="no analog layers"):
        analyze(mlp(), torch.rand(2, 20))
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        analyze(lambda x: x, torch.rand(2, 20))
    model = convert_to_analog(mlp(), small_cfg())
    with pytest.raises(ConfigError, match=r"example_input shape \[2, 7\].*20 features"):
        analyze(model, torch.rand(2, 7))
    with pytest.raises(ConfigError, match="expected a torch.Tensor"):
        analyze(model, [[1.0] * 20])
    with pytest.raises(ConfigError, match="NaN"):
        analyze(model, torch.full((1, 20), float("nan")))
    with pytest.raises(ConfigError, match="STORPUConfig"):
        analyze(mlp(), torch.rand(2, 20), rpu_config=object())
    with pytest.raises(ConfigError, match="no Linear or Conv"):
        analyze(nn.Sequential(nn.ReLU()), torch.rand(2, 20), rpu_config=small_cfg())


def test_entry_points(tmp_path):
    src = tmp_path / "models.py"
    src.write_text("import torch\ndef good():\n    return torch.nn.Linear(3, 2)\nvalue = 3\n"
                   "def bad():\n    raise RuntimeError('no weights here')\n")
    assert load_entry_point(f"{src}:good")().out_features == 2
    assert load_entry_point("stoxbar.analysis:analyze") is analyze
    with pytest.raises(ConfigError, match="FILE_OR_MODULE:NAME"):
        load_entry_point("no_colon")
    with pytest.raises(ConfigError, match="no callable 'value'"):
        load_entry_point(f"{src}:value")
    with pytest.raises(ConfigError, match="importing no_such_mod_xyz failed"):
        load_entry_point("no_such_mod_xyz:f")


def test_energy_command_with_a_model(tmp_path, capsys):
    from stoxbar.scripts.cli import main

    src = tmp_path / "zoo.py"
    src.write_text("import torch\n"
                   "def cnn():\n    torch.manual_seed(0)\n"
                   "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),"
                   " torch.nn.Linear(2 * 4 * 4, 3))\n"
                   "def broken():\n    raise RuntimeError('factory failed')\n"
                   "def not_a_model():\n    return 42\n")
    js = tmp_path / "out.json"
    assert main(["energy", "--model", f"{src}:cnn", "--input-shape", "1,1,6,6", "--tile", "16x8",
                 "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["total_j"] > 0 and set(data["by_layer"]) >= {"0", "1", "3"}
    assert "0/0.0" in data["by_tile"]
    assert "component" in capsys.readouterr().out
    for argv, match in (
            ([f"{src}:broken", "1,1,6,6"], "factory raised RuntimeError: factory failed"),
            ([f"{src}:not_a_model", "1,1,6,6"], "returned int; expected a torch.nn.Module"),
            ([f"{src}:cnn", "1,a"], "input-shape"),
            ([f"{src}:cnn", "1,3,6,6"], r"example_input shape \[1, 3, 6, 6\]")):
        cli_error(capsys, ["energy", "--model", argv[0], "--input-shape", argv[1]], match)


def cli_error(capsys, argv, match: str) -> None:
    """The CLI rejects ``argv`` with one clear message (raised, or printed with a non-zero exit)."""
    import re

    from stoxbar.scripts.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except ConfigError as exc:
        assert re.search(match, str(exc)), str(exc)
        return
    assert rc != 0
    err = capsys.readouterr().err
    assert re.search(match, err), err


# -- studies over a task that is not Pong ---------------------------------------------------------
TASK_STUDY = """
name = "digits_tiny"
task = "{task}"
seeds = [0]
[base]
set = {{ "periphery.tile_rows" = 64, "periphery.tile_cols" = 64 }}
[[grid]]
"periphery.adc.bits" = [3, 8]
[task_args]
epochs = 4
hidden = 16
[plots]
metrics = ["accuracy_chip", "energy_per_image_j"]
"""


def test_study_over_a_non_pong_task_end_to_end(tmp_path):
    from pathlib import Path

    from stoxbar.studies import load_study
    from stoxbar.studies.runner import run_study
    from stoxbar.studies.table import read_table

    task = Path(__file__).resolve().parents[1] / "examples" / "digits_task.py"
    path = tmp_path / "s.toml"
    path.write_text(TASK_STUDY.format(task=f"{task}:digits_mlp"))
    study = load_study(str(path), str(tmp_path / "out"))
    assert study.task.endswith("digits_task.py:digits_mlp") and dict(study.task_args) == {"epochs": 4, "hidden": 16}
    counts = run_study(study, workers=2, progress=False)
    assert counts["ok"] == 2 and counts["failed"] == 0, list((tmp_path / "out" / "trials").glob("*"))
    rows = {r["periphery.adc.bits"]: r for r in read_table(tmp_path / "out" / "results.csv")}
    for r in rows.values():
        assert 0.0 <= r["accuracy_chip"] <= 1.0 and r["energy_per_image_j"] > 0 and r["area_m2"] > 0
    # a 3-bit ADC loses accuracy against the 8-bit one (same seed, same float network)
    assert rows[3]["accuracy_float"] == rows[8]["accuracy_float"]
    assert rows[3]["accuracy_chip"] < rows[8]["accuracy_chip"]
    cols = (tmp_path / "out" / "columns.csv").read_text()
    assert "energy_per_image_j,J" in cols
    from stoxbar.studies.report import write_report

    page = write_report(str(tmp_path / "out")).read_text()
    assert "accuracy_chip" in page and "energy_per_image_j [" in page  # (displayed in J or pJ ...)
    assert list((tmp_path / "out" / "plots").glob("*.png"))


def test_task_study_validation(tmp_path):
    from stoxbar.studies import StudyError, load_study

    src = tmp_path / "t.py"
    src.write_text("def ok(config, seed):\n    return {'x': 1.0}\ndef bad(config, seed):\n    return 3\n")
    def study(body: str):
        p = tmp_path / "s.toml"
        p.write_text('name = "t"\n' + body + '\n[[grid]]\n"periphery.adc.bits" = [4]\n')
        return load_study(str(p), str(tmp_path / "out"))

    with pytest.raises(StudyError, match="no callable 'missing'"):
        study(f'task = "{src}:missing"')
    with pytest.raises(StudyError, match="belong to the Pong task"):
        study(f'task = "{src}:ok"\n[base]\ncheckpoint = "random"')
    with pytest.raises(StudyError, match="belong to the Pong task"):
        study(f'task = "{src}:ok"\n[metrics]\ngames = 1')
    p = tmp_path / "s.toml"
    p.write_text(f'name = "t"\ntask = "{src}:ok"\n[[grid]]\n"agent.hidden" = [4]\n')
    with pytest.raises(StudyError, match="agent"):
        load_study(str(p))
    from stoxbar.studies.worker import run_trial
    from stoxbar.studies.runner import job_for

    s = study(f'task = "{src}:bad"')
    rec = run_trial(job_for(s, s.trials()[0]))
    assert rec["status"] == "failed" and "returned int; expected a non-empty dict" in rec["error"]
    s = study(f'task = "{src}:ok"')
    rec = run_trial(job_for(s, s.trials()[0]))
    assert rec["status"] == "ok" and rec["metrics"]["x"] == 1.0


@pytest.mark.parametrize("module, x, expected", [
    (nn.MaxPool1d(3), torch.rand(1, 2, 9), {"compare": 2 * 3 * 2}),          # (window - 1) per output
    (nn.MaxPool3d(2), torch.rand(1, 1, 4, 4, 4), {"compare": 8 * 7}),
    (nn.AvgPool2d(2), torch.rand(1, 1, 4, 4), {"add": 4 * 3, "mult": 4}),
    (nn.BatchNorm2d(3).eval(), torch.rand(2, 3, 4, 4), {"affine": 96}),       # folded scale + shift
    (nn.LayerNorm(8), torch.rand(3, 8), {"layer_norm": 24}),
    (nn.GELU(), torch.rand(5), {"nonlinear": 5}),
    (nn.Linear(4, 3), torch.rand(2, 4), {"mac": 2 * 4 * 3, "add": 2 * 3}),   # addmm: MACs + bias
])
def test_digital_op_table(module, x, expected):
    from stoxbar.analysis import DigitalOpCounter

    counter = DigitalOpCounter()
    with torch.no_grad(), counter:
        module(x)
    counted = {k: v for t in counter.tally.values() for k, v in t.elements.items()}
    assert counted == expected and not counter.unknown


def test_a_task_study_identity_follows_the_task_source(tmp_path):
    """Editing the task file makes another study: its identity (checked on resume) changes."""
    import shutil
    from pathlib import Path

    from stoxbar.studies import load_study
    from stoxbar.studies.spec import task_source_sha256

    examples = Path(__file__).resolve().parents[1] / "examples"
    task = tmp_path / "my_task.py"
    shutil.copy(examples / "digits_task.py", task)
    shutil.copy(examples / "mlp_digits.py", tmp_path)  # the task loads its sibling module from its own folder
    path = tmp_path / "s.toml"
    path.write_text(TASK_STUDY.format(task=f"{task}:digits_mlp"))
    before = load_study(str(path), str(tmp_path / "out")).identity()
    task.write_text(task.read_text() + "\n# edited\n")
    after = load_study(str(path), str(tmp_path / "out")).identity()
    assert before["task"] == after["task"] and before["task_sha256"] != after["task_sha256"]
    assert len(task_source_sha256("stoxbar.analysis:analyze")) == 64  # a module's source file


def test_layers_are_reported_in_model_order_and_latency_is_the_ledgers():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(8, 8), nn.ReLU()]
    rep = analyze(nn.Sequential(*layers), torch.rand(2, 8), rpu_config=small_cfg())
    assert list(rep.layers) == [str(i) for i in range(12)]  # "2" before "10", not string order
    assert list(rep.by_layer) == list(rep.layers)
    led = rep.ledger  # per layer: EnergyLedger.latency_s of its reads (tiles in parallel), layers in turn
    for name, info in rep.layers.items():
        assert info["latency_s"] == led.latency_s(layer=name, event="mvm")
    assert rep.latency_s == pytest.approx(sum(led.latency_s(layer=n, event="mvm") for n in rep.layers), rel=1e-12)
    assert rep.latency_s > 0
