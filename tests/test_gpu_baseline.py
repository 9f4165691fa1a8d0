"""GPU baseline tiers: hand-computed cases, the kernel trace, the measurement schema round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stoxbar.peripherals.gpu_baseline import (
    MEASUREMENT_SCHEMA, GPUSpec, KernelOp, step_tiers, trace_kernels, validate_measurement)
from stoxbar.core.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# a spec with round numbers: 1e12 B/s, 1e12 FLOP/s, 1 pJ/B, 1 pJ/FLOP (fp32), full utilisation
SPEC = GPUSpec(dram_j_per_byte=1e-12, e_flop_fp32_j=1e-12, e_flop_fp16_j=0.5e-12, static_power_w=10.0,
               utilisation=1.0, peak_bw_bytes_s=1e12, peak_flops_fp32=1e12, peak_flops_fp16=4e12,
               launch_latency_s=5e-6, graph_launch_latency_s=1e-6, sync_latency_s=10e-6, syncs_per_step=1,
               active_power_w=100.0, idle_power_w=50.0)


def test_tiers_hand_computed():
    small = KernelOp("add", 1000.0, 0.0, 250.0)  # 4 kB fp32 -> 4 ns memory, 0.25 ns compute
    big = KernelOp("mm", 2.5e6, 0.0, 2e7)  # 10 MB -> 10 us memory; 20 MFLOP -> 20 us compute
    sync = KernelOp("_local_scalar_dense", 0, 0, 0, sync=True)
    t = step_tiers([small, big, sync], "fp32", SPEC, step_period_s=1e-3)
    assert t.kernels == 2 and t.syncs == 2  # one traced + syncs_per_step
    roof_s = 4e-9 + 20e-6
    assert t.roofline_s == pytest.approx(roof_s)
    dyn = (4000 + 1e7) * 1e-12 + (250 + 2e7) * 1e-12
    assert t.roofline_j == pytest.approx(dyn + 10.0 * roof_s)
    lat_s = 5e-6 + 20e-6 + 2 * 10e-6  # max(launch, roofline) per kernel + syncs
    assert t.latency_s == pytest.approx(lat_s)
    assert t.latency_j == pytest.approx(100.0 * lat_s)
    assert t.dedicated_j == pytest.approx(100.0 * lat_s + 50.0 * (1e-3 - lat_s))
    assert t.memory_share_roofline == pytest.approx((4000 + 1e7) / (4000 + 1e7 + 250 + 2e7))
    assert t.memory_share_latency == pytest.approx((4e-9 + 10e-6) / lat_s)
    # fp16 halves the float bytes and uses the fp16 peak: the big kernel is memory-bound at 5 us
    h = step_tiers([small, big], "fp16", SPEC, 1e-3)
    assert h.roofline_s == pytest.approx(2e-9 + 5e-6)
    # CUDA graph: 1 us per kernel + one eager launch of the graph
    g = step_tiers([small, big], "fp32", SPEC, 1e-3, cuda_graph=True)
    assert g.latency_s == pytest.approx(1e-6 + 20e-6 + 10e-6 + 5e-6)
    # a step slower than its period does not idle
    slow = step_tiers([big] * 100, "fp32", SPEC, 1e-3)
    assert slow.latency_s > 1e-3 and slow.dedicated_j == pytest.approx(slow.latency_j)
    for tier in ("roofline", "latency", "dedicated"):
        assert t.energy_j(tier) > 0
    with pytest.raises(ConfigError, match="tier"):
        t.energy_j("magic")


def test_trace_counts_the_real_kernels_of_the_four_ops():
    from stoxbar.pong.paper import paper_four_ops

    H, P = 8, 32
    W, F, lam, dF = (torch.rand(1, H, P) for _ in range(4))
    x = torch.rand(1, P)
    F0 = F.clone()
    kernels, y = trace_kernels(paper_four_ops, x, W, F, lam, dF)
    assert [k.name for k in kernels] == ["add", "bmm", "mul_", "add_"]  # views (einsum's reshapes) are no kernels
    assert kernels[0].float_elements == 3 * H * P  # W, F read, G written
    assert kernels[1].flops == 2 * H * P  # torch's bmm FLOP formula
    assert torch.allclose(F, F0 * lam + dF) and torch.allclose(y, torch.einsum("bf,bhf->bh", x, W + F0))
    # .item() is a host sync, not a kernel
    ks, _ = trace_kernels(lambda a: (a * 2).sum().item(), torch.ones(4))
    assert [k.sync for k in ks] == [False, False, True]


def _measurement(tmp_path: Path) -> Path:
    rows = []
    for units in (64, 128):
        for mode, t in (("eager", 40e-6), ("cuda_graph", 12e-6)):
            rows.append({"workload": "paper_four_ops", "units": units, "presyn": 2656, "dtype": "fp16",
                         "mode": mode, "kernels_per_step": 4, "runs": 100, "time_s_per_step": t * units / 64,
                         "energy_j_per_step": 150.0 * t * units / 64})
    doc = {"schema": MEASUREMENT_SCHEMA, "gpu": {"name": "Test GPU"}, "idle_power_w": 60.0, "results": rows}
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(doc))
    return path


def test_measurement_schema_round_trip(tmp_path):
    path = _measurement(tmp_path)
    spec = GPUSpec.from_measured(path)
    assert spec.launch_latency_s == pytest.approx(10e-6)  # 40 us / 4 kernels at the smallest size
    assert spec.graph_launch_latency_s == pytest.approx(3e-6)
    assert spec.active_power_w == pytest.approx(150.0) and spec.idle_power_w == 60.0
    assert spec.syncs_per_step == 0 and spec.measured_from == str(path) and "Test GPU" in spec.name
    assert spec.peak_bw_bytes_s == GPUSpec().peak_bw_bytes_s  # roofline constants untouched
    t = step_tiers([KernelOp("add", 100.0, 0.0, 100.0)] * 4, "fp16", spec, 1.0)
    assert t.latency_s == pytest.approx(40e-6) and t.latency_j == pytest.approx(150.0 * 40e-6)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(schema="other/1"), "schema"),
    (lambda d: d["gpu"].pop("name"), "gpu"),
    (lambda d: d["results"][0].update(mode="lazy"), "mode"),
    (lambda d: d["results"][0].update(time_s_per_step=0.0), "time_s_per_step"),
    (lambda d: d["results"][0].pop("kernels_per_step"), "kernels_per_step"),
    (lambda d: d.update(results=[]), "results"),
])
def test_measurement_schema_rejects_bad_files(tmp_path, mutate, field):
    doc = json.loads(_measurement(tmp_path).read_text())
    mutate(doc)
    with pytest.raises(ConfigError, match=field):
        validate_measurement(doc)
    with pytest.raises(ConfigError):
        GPUSpec.from_measured(doc)
    with pytest.raises(ConfigError, match="cannot read"):
        GPUSpec.from_measured(tmp_path / "missing.json")


def test_spec_validates_latency_fields():
    for kw in ({"launch_latency_s": -1e-6}, {"active_power_w": float("nan")}, {"syncs_per_step": 1.5},
               {"idle_power_w": 1e5}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            GPUSpec(**kw)


def test_gpu_measure_without_gpu_exits_cleanly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU path is not reachable here")
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_measure.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nothing measured" in r.stdout and not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["--runs", "0"], "--runs = 0: allowed range is [1, inf)"),
    (["--min-run-s", "nan"], "--min-run-s = nan: allowed range is [0, 60]"),
    (["--idle-s", "0"], "--idle-s = 0.0: allowed range is (0, 600]"),
    (["--agent-batches", "1,x"], "comma-separated whole numbers"),
    (["--sizes", "64,0"], "allowed range is [1, inf)"),
])
def test_gpu_measure_refuses_bad_input_in_one_line_without_a_gpu(tmp_path, args, needle):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_measure.py"), "--out", str(tmp_path / "m.json"),
                        *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stdout.strip().splitlines()) == 1 and r.stdout.startswith("gpu_measure: ")
    assert needle in r.stdout and "Traceback" not in r.stderr and not list(tmp_path.iterdir())
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_measure.py"), "--profile", str(taken)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "exists: measurements are never overwritten; choose a new --profile" in r.stdout


def _benchmark(name: str):
    """The script ``benchmarks/NAME.py`` loaded as a module (benchmarks are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_measure_workloads_run_the_real_code_on_cpu():
    """The measured step functions are the paper's four ops and our m-STPN cell (run here on CPU)."""
    mod = _benchmark("gpu_measure")
    for name, kernels in (("paper_four_ops", 4), ("mstpn_step", None)):
        step, k = mod._workload(name, 8, 40, torch.float32, torch.device("cpu"))
        assert step().shape == (1, 8)
        assert k == kernels if kernels else k > 10
    step, k, arch = mod._agent_workload(2, torch.device("cpu"))  # the shipped agent's whole greedy step
    actions = step()
    assert actions.shape == (2,) and actions.dtype == torch.int64 and 0 <= int(actions.min()) <= int(actions.max()) < 6
    assert k == 42 and arch.hidden == 64


def test_shipped_h200_measurement_is_pinned():
    """The committed H200 measurement (docs/paper-energy.md §2.3): its constants and the agent's measured
    tiers, golden, so a re-measured or edited file shows up here."""
    from stoxbar.pong.agent import ArchConfig
    from stoxbar.pong.paper import DEFAULT_GPU_MEASUREMENT, gpu_tiers, measured_agent_tiers

    spec = GPUSpec.from_measured(DEFAULT_GPU_MEASUREMENT)
    assert spec.name == "NVIDIA H200 (measured)" and spec.idle_power_w == pytest.approx(126.7518)
    assert spec.launch_latency_s == pytest.approx(66.38e-6 / 4, rel=1e-3)  # fp16 four ops, 64 units, eager
    assert spec.graph_launch_latency_s == pytest.approx(17.31e-6 / 4, rel=1e-3)
    steps = 263116  # the 100-game acceptance run (studies/results/play_100)
    t = measured_agent_tiers(DEFAULT_GPU_MEASUREMENT, ArchConfig(), steps)
    assert set(t) == {"measured_b1", "measured_b256"}
    b1, b256 = t["measured_b1"], t["measured_b256"]
    assert b1["mode"] == b256["mode"] == "cuda_graph" and b1["measured_from"] == "benchmarks/gpu/h200-2026-12-04.json"
    assert b1["j_per_step"] == pytest.approx(17.2973e-3, rel=1e-5) and b1["s_per_step"] == pytest.approx(118.70e-6, rel=1e-4)
    assert b256["j_per_step"] == pytest.approx(1023.835e-3 / 256, rel=1e-5)
    assert b1["total_j"] / 100 == pytest.approx(45.51, rel=1e-3) and b256["total_j"] / 100 == pytest.approx(10.52, rel=1e-3)
    for tier in t.values():  # the split is additive and non-negative
        parts = tier["by_component"]
        assert min(parts.values()) >= 0 and sum(parts.values()) == pytest.approx(tier["total_j"])
        assert parts["idle_floor"] == pytest.approx(tier["idle_power_w"] * tier["s_per_step"] * steps)
    assert measured_agent_tiers(DEFAULT_GPU_MEASUREMENT, ArchConfig(hidden=32), steps) == {}  # no such layer measured
    assert not any(k.startswith("measured") for k in gpu_tiers(ArchConfig(), 10))
    assert gpu_tiers(ArchConfig(), 10, measured=DEFAULT_GPU_MEASUREMENT)["measured_b1"]["total_j"] == \
        pytest.approx(10 * b1["j_per_step"])


def test_gpu_plot_draws_the_shipped_measurement_and_refuses_bad_input(tmp_path):
    from stoxbar.pong.paper import DEFAULT_GPU_MEASUREMENT

    script = str(ROOT / "benchmarks" / "gpu_plot.py")
    out = tmp_path / "f.png"
    r = subprocess.run([sys.executable, script, DEFAULT_GPU_MEASUREMENT, "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for args, needle in ((["--out", str(out)], "exists"), (["--chip-j", "0", "--out", str(tmp_path / "g.png")],
                                                            "--chip-j = 0.0: allowed range is (0, inf)")):
        r = subprocess.run([sys.executable, script, DEFAULT_GPU_MEASUREMENT, *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and needle in r.stdout and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_bench_chips_cuda_sim_runs_the_batched_chips_and_is_reproducible():
    """The 1,000-chip benchmark's step is stoxbar play's batched step (run here on the CPU at 4 chips):
    seeded, two runs book the same energy; boundaries nest; a wrong games/chips split is refused."""
    from stoxbar.core.validation import ConfigError as CE

    mod = _benchmark("bench_chips_cuda")
    frames = mod.record_frames(4, 3, 1)
    assert frames.shape == (3, 4, 1, 84, 84) and frames.dtype == torch.uint8
    a = mod.sim(frames, 4, "cpu", steps=2, warmup=1)
    b = mod.sim(frames, 2, "cpu", steps=2, warmup=1)  # 2 games on each of 2 chips
    again = mod.sim(frames, 4, "cpu", steps=2, warmup=1)
    assert a["energy_per_agent_step_j"] == again["energy_per_agent_step_j"]
    e = a["energy_per_agent_step_j"]
    assert 0 < e["synapse_only"] < e["array"] <= e["system"]
    assert a["agent_steps_per_s"] > 0 and a["games"] == b["games"] == 4 and b["chips"] == 2
    with pytest.raises(CE, match="--chips"):
        mod.sim(frames, 3, "cpu", steps=1, warmup=0)


def test_shipped_h200_chips_measurement_is_pinned():
    """The committed 1,000-chip measurement (BENCHMARKS.md): every size on both devices, the same model
    (energy per agent step within 0.1 %), and the numbers the table quotes."""
    d = json.loads((ROOT / "benchmarks" / "gpu" / "h200-2026-12-04-chips.json").read_text())
    assert d["schema"] == "stoxbar.bench_chips_cuda/1" and d["gpu"] == "NVIDIA H200" and not d.get("errors")
    rows = {(r["chips"], r["device"]): r for r in d["sim"]}
    assert set(rows) == {(c, dev) for c in (10, 100, 1000) for dev in ("cpu", "cuda")}
    for c in (10, 100, 1000):
        cpu, cuda = rows[(c, "cpu")]["energy_per_agent_step_j"], rows[(c, "cuda")]["energy_per_agent_step_j"]
        for k in cpu:
            assert cuda[k] == pytest.approx(cpu[k], rel=1e-3)
    top = rows[(1000, "cuda")]
    assert top["agent_steps_per_s"] == pytest.approx(13456.4, rel=1e-4) and top["ms_per_batched_step"] == pytest.approx(74.31, rel=1e-3)
    assert top["agent_steps_per_s"] / rows[(1000, "cpu")]["agent_steps_per_s"] == pytest.approx(31.6, abs=0.05)
