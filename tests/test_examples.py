"""The scripts in examples/ run at their small size and give what they claim (measured, not printed)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

import stoxbar  # noqa: F401  (imports aihwkit first, as every test module does)
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mlp_digits_float_vs_chip_and_energy():
    out = load("mlp_digits").run(small=True)
    assert out["float_accuracy"] > 0.85                      # 8 epochs of Adam on digits
    assert out["chip_accuracy"] > 0.8
    assert abs(out["chip_accuracy"] - out["float_accuracy"]) < 0.1
    r = out["report"]
    assert r.inference_j > 0 and r.programming_j > 0 and r.area_m2 > 0
    assert {info["kind"] for info in r.layers.values()} == {"analog", "digital"}
    assert math.isclose(out["energy_per_image_j"] * out["batch"], r.inference_j)


def test_cnn_per_tile_report():
    out = load("cnn_tiles").run(small=True, tile="32x32")
    r = out["report"]
    assert out["chip_accuracy"] > 0.5                        # 4 float epochs, then on the chip
    # conv 2 (8 x 9 = 72 rows) splits over 3 row-tiles, the linear layer (64 rows) over 2
    assert r.layers["3"]["tiles"] == 3 and r.layers["7"]["tiles"] == 2
    assert {"3/0.0", "3/1.0", "3/2.0", "7/0.0", "7/1.0"} <= set(r.by_tile)
    assert r.layers["0"]["input_vectors"] == 64             # one image, 8 x 8 patches of the first conv
    assert r.digital_ops["compare"] > 0                      # ReLU and max-pool, counted from the ops run


def test_delayed_recall_needs_tau_matched_to_the_delay():
    out = load("delayed_recall").run(small=True)
    acc = {round(r["tau_s"], 6): r for r in out["rows"]}
    matched, short, long = acc[1.0], acc[0.1], acc[30.0]
    assert matched["accuracy"] == 1.0
    assert short["hit_rate"] == 0.0                          # trace faded below threshold
    assert long["false_alarm_rate"] > 0.5                    # the lure's trace is still there
    assert long["energy_per_trial_j"] > matched["energy_per_trial_j"]   # a higher bias held longer
    assert out["best_tau_s"] == 1.0 and out["recall_read"].total_j > 0


@pytest.mark.parametrize("name", ["mlp_digits"])
def test_examples_run_as_scripts(name):
    res = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--small"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "accuracy" in res.stdout and "component" in res.stdout


def test_tile_height_errors_grow_with_the_line_and_the_conductance():
    """examples/tile_height.py: the wires' MVM error and the held bias's tau error grow with the tile's
    height and with the device's conductance (first order in r G N^2), and the limits follow from them."""
    mod = load("tile_height")
    rows = mod.run(small=True)
    for dev in ("sto_2024", "sto_2024 x100 G"):
        mine = [r for r in rows if r["device"] == dev]
        for key in ("mvm_err", "bias_err_max_v", "tau_err_max"):
            vals = [r[key] for r in mine]
            assert all(0 < a < b for a, b in zip(vals, vals[1:])), (dev, key, vals)
    sto = {r["rows"]: r for r in rows if r["device"] == "sto_2024"}
    big = {r["rows"]: r for r in rows if r["device"] != "sto_2024"}
    assert all(big[n]["mvm_err"] > 20 * sto[n]["mvm_err"] for n in sto)
    # ~11.5 e-folds of tau per volt for sto_2024: the tau error follows the bias error through the law
    assert sto[64]["tau_err_max"] == pytest.approx(math.expm1(11.51 * sto[64]["bias_err_max_v"]), rel=0.05)
    lim = mod.limits(rows)
    assert lim["sto_2024"]["mvm"] == 128 and lim["sto_2024 x100 G"]["tau"] < lim["sto_2024"]["tau"]


def test_adc_dead_zone_coarse_adc_reads_outputs_as_zero():
    """examples/adc_dead_zone.py on the shipped agent: an 8 + 8-bit read is within a few % of float and reads
    no output as 0; a 3-bit ADC returns many outputs as exactly 0 (below half its step) and shrinks the rest,
    far fewer without iterative bound management."""
    rows = {(r["adc_bits"], r["dac_bits"], r["bound_management"]): r for r in load("adc_dead_zone").main(["--small"])}
    fine, coarse, no_bm = rows[(8, 8, "iterative")], rows[(3, 8, "iterative")], rows[(3, 8, "none")]
    assert fine["error"] < 0.05 and fine["zero_fraction"] < 0.01 and abs(fine["gain"] - 1.0) < 0.02
    assert coarse["zero_fraction"] > 0.1 > fine["zero_fraction"]
    assert coarse["error"] > 5 * fine["error"] and coarse["gain"] < 0.95
    # the re-read at half the input (bound management) is what drops the partial sums below the ADC's step
    assert no_bm["zero_fraction"] < coarse["zero_fraction"] / 2 and no_bm["error"] < coarse["error"]
    for r in rows.values():
        assert 0.0 <= r["zero_fraction"] <= 1.0 and -1.0 <= r["correlation"] <= 1.0


def test_policy_confidence_measures_the_greedy_policy_without_changing_its_games():
    ex = load("policy_confidence")
    groups = ex.move_groups(["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"])
    assert groups.tolist() == [0, 0, 1, 2, 1, 2]
    # sure of RIGHT (0.66 over its two actions) but NOOP is the single most probable action
    p = torch.tensor([[0.34, 0.0, 0.33, 0.0, 0.33, 0.0], [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]]).clamp_min(1e-30)
    c = ex.confidence(p.log(), groups)
    assert c["other_move"].tolist() == [1.0, 0.0]
    assert torch.allclose(c["greedy_p"], torch.tensor([0.34, 0.5], dtype=torch.float64))
    assert torch.allclose(c["move_p"], torch.tensor([0.66, 0.6], dtype=torch.float64))
    assert math.isclose(float(c["entropy"][1]), -(0.5 * math.log(0.5) + 5 * 0.1 * math.log(0.1)), rel_tol=1e-6)
    out = ex.run(games=2, steps=400)
    assert out["steps"] == 800 and 0 < out["entropy"] < math.log(6) and 0 <= out["other_move"] <= 1
    assert 1 / 6 < out["greedy_p"] <= out["move_p"] <= 1
    from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, load_agent
    from stoxbar.pong.chips import play_chips
    plain = play_chips(load_agent(str(SHIPPED_CHECKPOINT))[0], 2, 1, 0, True, 400)
    assert out["score_mean"] == sum(plain.scores) / 2 != 0  # the same games (points were played)
