"""Measure the paper's four synapse operations and our digital m-STPN step on an NVIDIA GPU.

Method (docs/paper.md §3 / docs/paper-energy.md §2): batch 1, input [1, presyn]; hidden sizes
64 ... 32,768 units (powers of two), fp16 and fp32, eager and as a CUDA graph; each run times a
loop of ``--steps`` steps between two synchronisations and reads the board's NVML total-energy
counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ) before and after; the median over
``--runs`` runs is reported per step. Idle power is measured over ``--idle-s`` seconds with a
context held and no work. Writes the JSON schema ``stoxbar.gpu_measure/1`` that
``GPUSpec.from_measured`` / ``stoxbar paper --gpu-measured FILE`` read
(``stoxbar.peripherals.gpu_baseline.validate_measurement`` documents it).

Without a CUDA GPU or without pynvml (an optional dependency: ``pip install nvidia-ml-py``) it
prints why and exits 0 without writing anything.

    python benchmarks/gpu_measure.py --out gpu_a100.json [--runs 100 --steps 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple


def gpu_available() -> Tuple[bool, str]:
    """(True, "") if a CUDA GPU and pynvml are usable, else (False, the reason)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, f"no CUDA GPU visible to torch {torch.__version__} (CPU build or no device)"
    try:
        import pynvml  # noqa: F401
    except ImportError:
        return False, "pynvml is not installed (pip install nvidia-ml-py): no NVML energy counter"
    return True, ""


def _workload(name: str, hidden: int, presyn: int, dtype, device) -> Tuple[Callable[[], Any], int]:
    """(step function, kernels per step as traced on CPU) of one workload."""
    import torch

    from stoxbar.pong.paper import ops_kernels, paper_four_ops

    ops = "four" if name == "paper_four_ops" else "mstpn_step"
    kernels = sum(1 for k in ops_kernels(ops, hidden, presyn) if not k.sync)
    g = torch.Generator(device=device).manual_seed(0)
    if name == "paper_four_ops":
        shape = (1, hidden, presyn)
        W, F, lam, dF = (torch.rand(shape, generator=g, device=device, dtype=dtype) * 0.01 for _ in range(4))
        lam.fill_(0.99)
        x = torch.rand(1, presyn, generator=g, device=device, dtype=dtype)
        return (lambda: paper_four_ops(x, W, F, lam, dF)), kernels
    from stoxbar.devices import presets
    from stoxbar.stpn.cells import MSTPNCell

    cell = MSTPNCell(presyn - hidden, hidden, presets.sto_2024(), 4 / 60, use_kernel=False).to(device, dtype)
    params = cell.step_params()
    x = torch.rand(1, presyn - hidden, generator=g, device=device, dtype=dtype)
    holder = {"state": tuple(t.to(device, dtype) for t in cell.initial_state(1))}

    def step() -> Any:
        with torch.no_grad():
            h, holder["state"] = cell(x, holder["state"], params)
        return h

    return step, kernels


def _measure(step: Callable[[], Any], steps: int, runs: int, graph: bool, handle) -> Tuple[float, float]:
    """(median s per step, median J per step) over ``runs`` loops of ``steps`` steps."""
    import pynvml
    import torch

    fn = step
    if graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        fn = g.replay
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times, energies = [], []
    for _ in range(runs):
        e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
            torch.cuda.synchronize()  # batch 1: the host needs each step's result (the action)
        t1 = time.perf_counter()
        e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        times.append((t1 - t0) / steps)
        energies.append((e1 - e0) * 1e-3 / steps)
    return statistics.median(times), statistics.median(energies)


def run(out: str, runs: int, steps: int, sizes: List[int], presyn: int, idle_s: float) -> Dict[str, Any]:
    """Measure every workload x size x dtype x mode and write ``out`` (atomically)."""
    import pynvml
    import torch

    from stoxbar.crossbar import write_json_atomic
    from stoxbar.peripherals.gpu_baseline import MEASUREMENT_SCHEMA, validate_measurement

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    device = torch.device("cuda")
    torch.zeros(1, device=device)  # hold a context
    torch.cuda.synchronize()
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    time.sleep(idle_s)
    idle_w = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - e0) * 1e-3 / idle_s
    results: List[Dict[str, Any]] = []
    failed: List[Dict[str, Any]] = []
    for workload in ("paper_four_ops", "mstpn_step"):
        for hidden in sizes:
            if workload == "mstpn_step" and hidden >= presyn:
                continue
            for dname, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
                for mode in ("eager", "cuda_graph"):
                    point = {"workload": workload, "units": hidden, "presyn": presyn, "dtype": dname, "mode": mode}
                    try:
                        step, kernels = _workload(workload, hidden, presyn, dtype, device)
                        t, e = _measure(step, steps, runs, mode == "cuda_graph", handle)
                    except Exception as err:  # noqa: BLE001 - record the point as failed, go on with the rest
                        failed.append({**point, "error": f"{type(err).__name__}: {err}"})
                        print(f"{workload:<15}{hidden:>7}{dname:>6}{mode:>12}  FAILED: {err}", flush=True)
                        torch.cuda.synchronize()
                        continue
                    results.append({**point, "kernels_per_step": kernels, "runs": runs, "steps_per_run": steps,
                                    "time_s_per_step": t, "energy_j_per_step": e, "power_w": e / t})
                    print(f"{workload:<15}{hidden:>7}{dname:>6}{mode:>12}  {t * 1e6:9.2f} us  {e * 1e3:9.4f} mJ"
                          f"  {e / t:7.1f} W", flush=True)
                    del step
                    torch.cuda.empty_cache()
    doc = {"schema": MEASUREMENT_SCHEMA,
           "gpu": {"name": torch.cuda.get_device_name(), "driver": pynvml.nvmlSystemGetDriverVersion(),
                   "torch": torch.__version__, "cuda": torch.version.cuda},
           "idle_power_w": idle_w, "method": "NVML total-energy counter around loops of synchronised batch-1 steps; "
           "median of runs", "command": ["python", "benchmarks/gpu_measure.py", *sys.argv[1:]],
           "results": results, "failed": failed}
    validate_measurement(doc)
    write_json_atomic(out, doc)
    pynvml.nvmlShutdown()
    return doc


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_measured.json", help="JSON path (never overwritten)")
    p.add_argument("--runs", type=int, default=100, help="runs per point (median); the paper: 100")
    p.add_argument("--steps", type=int, default=200, help="steps per run")
    p.add_argument("--sizes", default=",".join(str(2 ** k) for k in range(6, 16)), help="hidden units, 64 ... 32768")
    p.add_argument("--presyn", type=int, default=2656)
    p.add_argument("--idle-s", type=float, default=5.0, help="seconds of idle-power measurement")
    args = p.parse_args(argv)
    ok, why = gpu_available()
    if not ok:
        print(f"gpu_measure: nothing measured: {why}. Run it on a machine with an NVIDIA GPU and pynvml.")
        return 0
    if os.path.exists(args.out):
        print(f"gpu_measure: {args.out} exists: measurements are never overwritten; choose a new --out")
        return 2
    for name in ("runs", "steps", "presyn"):
        if getattr(args, name) < 1:
            print(f"gpu_measure: --{name} = {getattr(args, name)}: allowed range is [1, inf)")
            return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    doc = run(args.out, args.runs, args.steps, sizes, args.presyn, args.idle_s)
    print(f"wrote {args.out} ({len(doc['results'])} points, idle {doc['idle_power_w']:.1f} W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
