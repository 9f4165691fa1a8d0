"""The digital-accelerator baseline (issue 18.1) and paper mode's bias hold (issue 18.2)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from stoxbar.analysis import DigitalOpCounter
from stoxbar.analysis.digital_baseline import baseline_cost, tally_work
from stoxbar.core.validation import ConfigError
from stoxbar.peripherals import DigitalPeriphery
from stoxbar.peripherals.digital_accel import DigitalAccelSpec
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.env import STEP_PERIOD_S
from stoxbar.pong.paper import PAPER_RATIO_BY_SIZE, PaperAssumptions, gpu_tiers, paper_estimate
from stoxbar.scripts.cli import main as cli_main


def test_digital_tier_hand_computed():
    """A 4x3 int8 matmul (12 MACs) on the accelerator, every joule by hand from Horowitz's table."""
    x, w = torch.ones(1, 4), torch.ones(3, 4)
    counter = DigitalOpCounter()
    with counter:
        torch.mm(x, w.t())
    elements, moved, rows = tally_work(counter.tally.values())
    assert elements == {"mac": 12.0} and moved == 4 + 12 + 3 and rows == 0
    spec = DigitalAccelSpec(mac_units=4, clock_hz=1e9, sram_leak_w_per_bit=10e-12)
    c = baseline_cost(elements, moved, held_values=12 + 4, step_period_s=1e-3, spec=spec)
    mult8, add32 = 0.2e-12, 0.1e-12  # Horowitz ISSCC 2014, 45 nm
    assert c.compute_j == pytest.approx(12 * (mult8 + add32), rel=1e-12)
    assert c.sram_j == pytest.approx(19 / 8 * 10e-12, rel=1e-12)  # 19 int8 values = 19/8 64-bit words
    assert c.time_s == pytest.approx(12 / (4 * 1e9))
    assert c.leakage_j == pytest.approx(16 * 8 * 10e-12 * 1e-3, rel=1e-12)
    assert c.energy_j == pytest.approx(c.compute_j + c.sram_j + c.leakage_j, rel=1e-15)
    # power gating: full leakage while busy, the retention share for the rest of the period
    g = baseline_cost(elements, moved, 16, 1e-3, DigitalAccelSpec(mac_units=4, power_gating=True))
    assert g.leakage_j == pytest.approx(16 * 8 * 10e-12 * (3e-9 + 0.1 * (1e-3 - 3e-9)), rel=1e-12)
    # fused reuse: every held value read once, the state (here 3 values) written back once
    fused = baseline_cost(elements, moved, 16, 1e-3, DigitalAccelSpec(reuse="per_step"), state_values=3)
    assert fused.sram_j == pytest.approx((16 + 3) / 8 * 10e-12, rel=1e-12) and fused.compute_j == c.compute_j
    with pytest.raises(ConfigError, match="state_values"):
        baseline_cost(elements, moved, 16, 1e-3, state_values=17)
    # 16-bit operands: quadratic-ish multiply (Horowitz power law), two bytes per value
    w16 = baseline_cost(elements, moved, 16, 1e-3, DigitalAccelSpec(mac_bits=16))
    assert w16.sram_j == pytest.approx(2 * c.sram_j) and w16.compute_j > c.compute_j
    # the node scales every energy, leakage included (docs/energy-model.md §9.1)
    n22 = baseline_cost(elements, moved, 16, 1e-3, DigitalAccelSpec(digital=DigitalPeriphery(tech_node_nm=22.5)))
    assert n22.energy_j == pytest.approx(0.5 * baseline_cost(elements, moved, 16, 1e-3).energy_j, rel=1e-12)


def test_digital_spec_rejects_bad_values():
    for kw, field in (({"mac_bits": 1}, "mac_bits"), ({"acc_bits": 4}, "acc_bits"),
                      ({"sram_leak_w_per_bit": -1.0}, "sram_leak_w_per_bit"), ({"clock_hz": 0.0}, "clock_hz"),
                      ({"power_gating": 1}, "power_gating"), ({"retention_leak_factor": 2.0}, "retention_leak"),
                      ({"reuse": "never"}, "reuse")):
        with pytest.raises(ConfigError, match=field):
            DigitalAccelSpec(**kw)


def test_pong_digital_tier_beside_the_gpu_tiers():
    """The agent's step counted from its torch ops; golden numbers pin the counts and the joules."""
    t = gpu_tiers(ArchConfig(), 100)
    d = t["digital"]
    assert d["macs_per_step"] == 1_413_568  # encoder convs + linear, (W + F) z, heads
    assert d["held_bits"] == 5_518_776
    assert math.fsum(d["by_component"].values()) == pytest.approx(d["total_j"])
    assert d["total_j"] == pytest.approx(100 * d["j_per_step"])
    assert d["j_per_step"] == pytest.approx(1.2805104e-05, rel=1e-6)  # golden (docs/energy-model.md §9.1)
    assert d["by_component"]["leakage"] / 100 == pytest.approx(5_518_776 * 10e-12 * STEP_PERIOD_S, rel=1e-12)
    # the accelerator, not bound by launch latency, beats every batch-1 GPU tier
    assert d["total_j"] < min(t[k]["total_j"] for k in ("roofline", "latency", "dedicated"))
    # the fused datapath with power gating, the lower end of the range (docs/energy-model.md §9.1)
    low = gpu_tiers(ArchConfig(), 1, accel=DigitalAccelSpec(reuse="per_step", power_gating=True))["digital"]
    assert low["j_per_step"] == pytest.approx(2.1501373e-06, rel=1e-6)


@pytest.mark.parametrize("tier,dtype", [("latency", "fp16"), ("latency", "fp32"), ("roofline", "fp16"),
                                        ("dedicated", "fp32")])
def test_hold_solver_reproduces_the_published_ratios(tier, dtype):
    doc = paper_estimate()
    for size, published in PAPER_RATIO_BY_SIZE.items():
        hold = doc["hold_for_ratio"][tier][dtype][size]["bias_hold_s"]
        again = paper_estimate(PaperAssumptions(bias_held_s_per_step=hold))
        assert again["bias_hold_s"] == hold
        assert again["ratios"][tier][dtype][size] == pytest.approx(published, rel=1e-6)
    # golden: the latency tier reproduces the paper's ~970x standard ratio at a ~5 ms hold, not 66.7 ms
    assert doc["hold_for_ratio"]["latency"]["fp16"]["standard"]["bias_hold_s"] == pytest.approx(5.026775e-3, rel=1e-6)


def test_paper_mode_states_its_hold():
    doc = paper_estimate()
    assert doc["bias_hold_s"] == pytest.approx(STEP_PERIOD_S)
    assert doc["seconds_per_game"] == pytest.approx(6826 * STEP_PERIOD_S)
    assert doc["bias_held_s_per_game"] == pytest.approx(6826 * STEP_PERIOD_S)
    for implied in doc["implied_by_paper_ratios"].values():
        assert implied["bias_hold_s"] == doc["bias_hold_s"]
    # the ratio is inversely proportional to the hold, and equals paper mode's own ratio at its hold
    rows = {r["bias_hold_s"]: r for r in doc["ratio_vs_hold"]}
    assert rows[STEP_PERIOD_S]["latency_fp16_standard"] == pytest.approx(doc["ratios"]["latency"]["fp16"]["standard"])
    assert rows[1e-3]["latency_fp16_standard"] == pytest.approx(10 * rows[1e-2]["latency_fp16_standard"])
    # the digital accelerator of the paper's four ops, golden (J per game at the paper's hold)
    assert doc["digital"]["standard"]["macs_per_step"] == 64 * 2656
    assert doc["digital"]["standard"]["j_per_game"] == pytest.approx(0.03400097586, rel=1e-6)


def test_cli_paper_bias_hold(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert cli_main(["paper", "--json", str(out), "--bias-hold-s", "5e-3", "--tier", "latency",
                     "--precision", "fp16"]) == 0
    doc = json.loads(out.read_text())
    assert doc["bias_hold_s"] == 5e-3 and doc["assumptions"]["bias_held_s_per_step"] == 5e-3
    assert set(doc["hold_for_ratio"]["latency"]["fp16"]) == {"standard", "optimal"}
    text = capsys.readouterr().out
    assert "bias held 5 ms per step" in text and "reproduces the paper's published ratios" in text
    assert "digital" in text
    assert cli_main(["paper", "--bias-hold-s", "-1"]) == 2
    assert "bias_held_s_per_step" in capsys.readouterr().err
    # the accelerator's options reach the baseline; a bad one is one line naming the flag
    out2 = tmp_path / "p2.json"
    assert cli_main(["paper", "--json", str(out2), "--tier", "latency", "--precision", "fp16", "--accel-reuse",
                     "per_step", "--accel-power-gating"]) == 0
    fused = json.loads(out2.read_text())["digital"]["standard"]
    assert fused["sram_j"] < doc["digital"]["standard"]["sram_j"]
    assert fused["leakage_j"] < doc["digital"]["standard"]["leakage_j"]
    assert cli_main(["paper", "--accel-reuse", "cache"]) == 2
    assert "--accel-reuse" in capsys.readouterr().err
    assert cli_main(["paper", "--accel-bits", "1"]) == 2
    assert "--accel-bits" in capsys.readouterr().err
