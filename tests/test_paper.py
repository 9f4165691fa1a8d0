"""Paper mode (`stoxbar paper`), the agent's GPU tiers and the waterfall."""

from __future__ import annotations

import json
import math

import pytest

from stoxbar.peripherals.gpu_baseline import GPUSpec, step_tiers
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.env import STEP_PERIOD_S
from stoxbar.pong.paper import (
    PaperAssumptions, agent_kernels, gpu_tiers, ops_kernels, paper_estimate, ratio_vs_step_period, tier_ratios,
    waterfall)
from stoxbar.scripts.cli import main as cli_main
from stoxbar.core.validation import ConfigError
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT

A2C_CHECKPOINT = str(SHIPPED_CHECKPOINT.parent.parent / "pong_mstpn_a2c" / "checkpoint.pt")  # the default until session 29


def test_paper_mode_defaults():
    r = paper_estimate()
    assert r["synapses"] == 169_984 and r["steps_per_game"] == 6826
    mem = r["memristive"]
    assert mem["bias_power_w"] == pytest.approx(169_984 * 4.3e-9, rel=1e-12)
    assert mem["by_component"]["bias"] == pytest.approx(169_984 * 4.3e-9 * STEP_PERIOD_S * 6826)
    assert mem["by_component"]["pulses"] == pytest.approx(0.01 * mem["energy_j_per_game"])
    assert math.fsum(mem["by_component"].values()) == pytest.approx(mem["energy_j_per_game"])
    for tier in ("roofline", "latency", "dedicated"):
        for dt in ("fp16", "fp32"):
            g = r["gpu"][tier][dt]
            assert 0 <= g["memory_share"] <= 1
            assert r["ratios"][tier][dt]["standard"] == pytest.approx(
                g["standard_j_per_game"] / mem["energy_j_per_game"])
            assert r["ratios"][tier][dt]["optimal"] == pytest.approx(g["optimal_j_per_game"] / mem["energy_j_per_game"])
    assert r["assumptions"]["optimal_hidden"] == 790  # 2^21 / 2656
    # per step, the latency tier is four kernels at max(launch, roofline) plus one sync
    spec = GPUSpec()
    std = step_tiers(ops_kernels("four", 64, 2656), "fp16", spec)
    assert std.kernels == 4
    assert r["gpu"]["latency"]["fp16"]["standard_j_per_game"] == pytest.approx(
        spec.active_power_w * (4 * spec.launch_latency_s + spec.sync_latency_s) * 6826)
    # at the optimal size the per-synapse cost is lower (the launch cost is shared by more synapses)
    assert r["gpu"]["latency"]["fp16"]["optimal_j_per_game"] < r["gpu"]["latency"]["fp16"]["standard_j_per_game"]
    # the roofline tier is memory-dominated, as the paper measured (> 98 %)
    assert r["gpu"]["roofline"]["fp16"]["memory_share"] > 0.98


def test_paper_mode_with_our_whole_mstpn_step():
    r = paper_estimate(PaperAssumptions(ops="mstpn_step", precisions=("fp32",)))
    four = paper_estimate(PaperAssumptions(precisions=("fp32",)))
    k = r["gpu"]["latency"]["fp32"]["kernels_per_step"]
    assert k > four["gpu"]["latency"]["fp32"]["kernels_per_step"] == 4
    assert r["ratios"]["latency"]["fp32"]["standard"] > four["ratios"]["latency"]["fp32"]["standard"]


def test_paper_assumptions_are_parameters():
    a = PaperAssumptions(bias_v=0.3, bias_held_s_per_step=1e-3, steps_per_game=100, pulse_fraction=0.0)
    mem = paper_estimate(a)["memristive"]
    assert mem["energy_j_per_game"] == pytest.approx(169_984 * 0.09 * a.g_bias_s * 1e-3 * 100)
    for kw, field in (({"bias_v": -0.1}, "bias_v"), ({"ops": "five"}, "ops"), ({"precisions": ("fp8",)}, "precisions"),
                      ({"pulse_fraction": 1.0}, "pulse_fraction"), ({"optimal_synapses": 10}, "optimal_synapses")):
        with pytest.raises(ConfigError, match=field):
            PaperAssumptions(**kw)


def test_agent_gpu_tiers_add_up():
    arch = ArchConfig()
    kernels = agent_kernels(tuple(sorted(arch.to_dict().items())))
    assert {k.label for k in kernels} == {"encoder", "stp_step", "heads"}
    assert sum(k.name == "convolution" for k in kernels) == 2 and any(k.name == "bmm" for k in kernels)
    # the cell's torch path was traced (a CPU-only fused kernel would hide its ops from the trace)
    assert sum(k.label == "stp_step" and not k.sync for k in kernels) >= 10
    spec = GPUSpec()
    t = gpu_tiers(arch, 1000, "fp32", spec)
    for tier in ("latency", "dedicated"):
        assert math.fsum(t[tier]["by_component"].values()) == pytest.approx(t[tier]["total_j"])
        assert all(v >= 0 for v in t[tier]["by_component"].values())
    lat_s = t["latency"]["s_per_step"]
    assert t["latency"]["total_j"] == pytest.approx(spec.active_power_w * lat_s * 1000)
    assert t["dedicated"]["total_j"] - t["latency"]["total_j"] == pytest.approx(
        spec.idle_power_w * (STEP_PERIOD_S - lat_s) * 1000)
    assert t["roofline"]["total_j"] < t["latency"]["total_j"] < t["dedicated"]["total_j"]
    graph = gpu_tiers(arch, 1000, "fp32", spec, cuda_graph=True)
    assert graph["latency"]["total_j"] < t["latency"]["total_j"]
    r = tier_ratios(t, 0.5)
    assert r["latency"] == pytest.approx(t["latency"]["total_j"] / 0.5)


def test_waterfall_factors_multiply_to_the_end_to_end_ratio():
    arch = ArchConfig()
    steps = 2000
    system = {"bias": 0.15, "st_pulse": 3e-6, "cell_read": 2e-8, "dac": 3e-6, "adc": 2e-6, "sense": 3e-7,
              "row_driver": 6e-8, "st_write_driver": 2e-7, "digital_accum": 3e-8, "bias_driver": 0.08,
              "digital_mult": 1.5e-4, "neuron.digital_divide": 1e-6, "encoder.digital_mac": 6e-4, "heads.sram": 1e-6,
              "new_component": 1e-5}
    a = PaperAssumptions()
    syn = a.synapses
    rows = waterfall(system, steps, g_long_term_sum_s=syn * 60e-9, bias_v2_g_sum=syn * 60e-9 * 0.1, arch=arch, a=a)
    start, end = rows[0], rows[-1]
    assert start.ratio == pytest.approx(paper_estimate(a)["ratios"]["roofline"]["fp16"]["standard"])
    assert end.memristive_j == pytest.approx(math.fsum(system.values()))
    assert end.gpu_j == pytest.approx(gpu_tiers(arch, steps, "fp32")["dedicated"]["total_j"])
    assert math.prod(r.factor for r in rows[1:]) == pytest.approx(end.ratio / start.ratio, rel=1e-9)
    labels = [r.label for r in rows]
    assert "other booked components" in labels  # an unknown component is not dropped
    held = next(r for r in rows if r.label == "the conductance actually held")
    assert held.memristive_j == pytest.approx(syn * 60e-9 * 0.36 * STEP_PERIOD_S * steps
                                              + start.memristive_j * 0.01 / 6826 * steps)
    # bias energy grows with the period; the roofline and latency GPU figures do not
    per = ratio_vs_step_period(system, steps, arch, [1e-3, STEP_PERIOD_S, 1.0])
    assert per[0]["ratio_latency"] > per[1]["ratio_latency"] > per[2]["ratio_latency"]
    assert per[1]["memristive_j"] == pytest.approx(math.fsum(system.values()))
    # so do the static power and the bias refresh (booked over time); reads and digital work do not
    timed = dict(system, leakage=0.4, bias_refresh=2e-5, power_gating_wake=7e-6)
    per = ratio_vs_step_period(timed, steps, arch, [1.0])[0]
    per_time = 0.15 + 0.08 + 0.4 + 2e-5
    assert per["memristive_j"] == pytest.approx(math.fsum(timed.values()) - per_time + per_time / STEP_PERIOD_S)


def test_cli_paper_json(tmp_path, capsys):
    out = tmp_path / "paper.json"
    assert cli_main(["paper", "--json", str(out), "--tier", "roofline,latency", "--precision", "fp16",
                     "--optimal-synapses", "2**21"]) == 0
    doc = json.loads(out.read_text())
    for key in ("steps_per_game", "synapses", "memristive", "gpu", "ratios", "assumptions"):
        assert key in doc
    assert set(doc["gpu"]) == {"roofline", "latency"} and set(doc["gpu"]["latency"]) == {"fp16"}
    assert {"standard_j_per_game", "optimal_j_per_game", "memory_share"} <= set(doc["gpu"]["latency"]["fp16"])
    assert set(doc["memristive"]["by_component"]) == {"bias", "pulses"}
    assert "bias power" in capsys.readouterr().out
    assert cli_main(["paper", "--json", str(out)]) == 2  # never overwritten: one-line error, exit 2 (issue 12)
    assert "exists" in capsys.readouterr().err
    # measured constants replace the latency tier's
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"schema": "stoxbar.gpu_measure/1", "gpu": {"name": "Test GPU"},
                                    "idle_power_w": 60.0, "results": [
                                        {"workload": "paper_four_ops", "units": 64, "presyn": 2656, "dtype": "fp16",
                                         "mode": "eager", "kernels_per_step": 4, "runs": 100,
                                         "time_s_per_step": 400e-6, "energy_j_per_step": 0.06}]}))
    out2 = tmp_path / "paper2.json"
    assert cli_main(["paper", "--json", str(out2), "--gpu-measured", str(measured)]) == 0
    doc2 = json.loads(out2.read_text())
    assert doc2["gpu"]["latency"]["fp16"]["standard_j_per_game"] == pytest.approx(0.06 * 6826)
    assert doc2["assumptions"]["gpu_spec"]["measured_from"] == str(measured)
    assert cli_main(["paper", "--tier", "roofline,warp"]) == 2  # one-line error, exit 2 (issue 12)
    assert "tiers" in capsys.readouterr().err


def test_cli_paper_waterfall_on_a_real_game(tmp_path):
    """One greedy game of the previous default checkpoint (docs/paper-energy.md's agent) on the chip (~10 s): the
    waterfall closes on its ledger."""
    out, fig = tmp_path / "wf.json", tmp_path / "wf.png"
    assert cli_main(["paper", "--waterfall", str(fig), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert cli_main(["paper", "--json", str(out), "--waterfall", str(fig), "--checkpoint", A2C_CHECKPOINT]) == 0
    assert fig.stat().st_size > 10_000
    wf = json.loads(out.read_text())["waterfall"]
    assert wf["checkpoint"] == A2C_CHECKPOINT and wf["checkpoint_sha256"].startswith("120d87d9")
    table = wf["table"]
    assert table[-1]["memristive_j"] == pytest.approx(math.fsum(wf["system_by_component_j_per_game"].values()))
    assert math.prod(r["factor"] for r in table[1:]) == pytest.approx(table[-1]["ratio"] / table[0]["ratio"])
    assert wf["pulses"]["pulses"] > 0 and 0 < wf["pulses"]["pulses_per_synapse_step"] < 1
    # the gap to each published ratio, two-sided: published / (memristive x GPU) = ours, for every baseline
    gap = wf["gap_decomposition"]
    assert {g["tier"] for g in gap} == {"roofline", "latency", "dedicated", "digital"}
    for g in gap:
        assert g["published_ratio"] / (g["memristive_factor"] * g["gpu_factor"]) == pytest.approx(g["our_ratio"])
        assert g["bias_hold_s"] == pytest.approx(STEP_PERIOD_S)
    last = {g["tier"]: g for g in gap}["latency"]
    assert last["our_ratio"] == pytest.approx(table[-2]["ratio"], rel=1e-9)  # the waterfall's latency row


def test_study_metrics_carry_every_tier():
    """A short game of an untrained paper-size agent through the study metrics: tiers side by side."""
    from stoxbar.devices import presets
    from stoxbar.peripherals import PeripheryConfig
    from stoxbar.studies.metrics import build_agent, pong_metrics
    from stoxbar.studies.units import unit_of
    from stoxbar.studies.spec import Metrics, PointConfig

    cfg = PointConfig(device=presets.sto_2024(), periphery=PeripheryConfig(), arch=ArchConfig())
    out = pong_metrics(build_agent(None, cfg, 0), cfg, Metrics(games=1, max_steps=5, mvm_error_samples=0), 0)
    from stoxbar.pong.paper import DEFAULT_GPU_MEASUREMENT

    tiers = gpu_tiers(cfg.arch, out["agent_steps"], measured=DEFAULT_GPU_MEASUREMENT)
    for tier in ("latency", "dedicated", "measured_b1", "measured_b256"):  # measured: the shipped H200 file
        assert out[f"energy_gpu_{tier}_j_per_game"] == pytest.approx(tiers[tier]["total_j"])
        assert unit_of(f"energy_gpu_{tier}_j_per_game")[0] == "J"
        for b in ("synapse_only", "array", "system"):
            assert out[f"gpu_ratio_{tier}_{b}"] == pytest.approx(
                tiers[tier]["total_j"] / out[f"energy_{b}_j_per_game"])
            assert unit_of(f"gpu_ratio_{tier}_{b}")[0] == "1"
    assert out["gpu_ratio_system"] < out["gpu_ratio_latency_system"] < out["gpu_ratio_dedicated_system"]
    # the digital-accelerator baseline beside them (issue 18.1)
    assert out["energy_digital_accel_j_per_game"] == pytest.approx(tiers["digital"]["total_j"])
    for b in ("synapse_only", "array", "system"):
        assert out[f"digital_ratio_{b}"] == pytest.approx(tiers["digital"]["total_j"] / out[f"energy_{b}_j_per_game"])
        assert unit_of(f"digital_ratio_{b}")[0] == "1"
    assert unit_of("energy_digital_accel_j_per_game")[0] == "J"
