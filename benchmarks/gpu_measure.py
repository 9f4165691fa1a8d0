"""Measure the paper's four synapse operations and our digital m-STPN step on an NVIDIA GPU.

Method (docs/paper.md §3 / docs/paper-energy.md §2): batch 1, input [1, presyn]; hidden sizes
64 ... 32,768 units (powers of two), fp16 and fp32, eager and as a CUDA graph; each run times a
loop of synchronised steps (at least ``--steps`` and at least ``--min-run-s`` seconds, so that the
energy counter, which NVML updates every few ms, resolves it) and reads the board's NVML
total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ) before and after; the median
(and quartiles) over ``--runs`` runs is reported per step. A third workload, ``agent_step``, is
the shipped Pong agent's whole greedy step (``pong/checkpoints/pong_mstpn``: frame to the GPU,
encoder, m-STPN cell, heads, action back to the host) in fp32 at batch 1 and at the batches of
``--agent-batches`` (games played side by side). Idle power is measured over ``--idle-s`` seconds
with a context held and no work. Writes the JSON schema ``stoxbar.gpu_measure/1`` that
``GPUSpec.from_measured`` / ``stoxbar paper --gpu-measured FILE`` read
(``stoxbar.peripherals.gpu_baseline.validate_measurement`` documents it).

Without a CUDA GPU or without pynvml (an optional dependency: ``pip install nvidia-ml-py``) it
prints why and exits 0 without writing anything.

    python benchmarks/gpu_measure.py --out gpu_a100.json [--runs 5 --min-run-s 0.5]
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


AGENT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pong", "checkpoints",
                                "pong_mstpn", "checkpoint.pt")


def _agent_workload(batch: int, device, checkpoint: str = AGENT_CHECKPOINT) -> Tuple[Callable[[], Any], int, Any]:
    """(step, kernels per step as traced on CPU, arch) of the shipped agent's greedy step at ``batch`` games.

    One step as ``PongAgent.act`` plays it: a uint8 frame per game copied from pinned host memory to the
    GPU, the agent's forward (encoder, m-STPN cell, actor and critic heads), argmax, and the actions
    copied back to pinned host memory (the measuring loop synchronises after each step: the host needs
    the actions before the next frame). Every copy is asynchronous, so the step can be captured as a
    CUDA graph; the cell state is carried from step to step in eager mode (a graph replays its
    captured step: the same kernels on the same shapes).
    """
    import torch

    from stoxbar.pong.checkpoint import load_agent
    from stoxbar.pong.paper import agent_kernels

    agent, _ = load_agent(checkpoint)
    arch = agent.arch
    kernels = sum(1 for k in agent_kernels(tuple(sorted(arch.to_dict().items()))) if not k.sync)
    if hasattr(agent.cell, "use_kernel"):
        agent.cell.use_kernel = False  # the CPU-only fused kernel: the GPU runs the torch ops
    agent = agent.to(device).eval()
    g = torch.Generator().manual_seed(0)
    pin = device.type == "cuda"
    frame = torch.randint(0, 256, (batch, 1, 84, 84), generator=g, dtype=torch.uint8)
    frame_host = frame.pin_memory() if pin else frame
    frame_dev = torch.empty_like(frame_host, device=device)
    action_host = torch.empty(batch, dtype=torch.int64, pin_memory=pin)
    holder = {"state": tuple(t.to(device) for t in agent.initial_state(batch))}

    def step() -> Any:
        with torch.no_grad():
            frame_dev.copy_(frame_host, non_blocking=True)
            logits, _, holder["state"] = agent(frame_dev, holder["state"])
            action_host.copy_(logits.argmax(-1), non_blocking=True)
        return action_host

    return step, kernels, arch


def _workload(name: str, hidden: int, presyn: int, dtype, device) -> Tuple[Callable[[], Any], int]:
    """(step function, kernels per step, traced on ``device`` itself) of one workload."""
    import torch

    from stoxbar.peripherals.gpu_baseline import trace_kernels
    from stoxbar.pong.paper import paper_four_ops

    g = torch.Generator(device=device).manual_seed(0)
    if name == "paper_four_ops":
        shape = (1, hidden, presyn)
        W, F, lam, dF = (torch.rand(shape, generator=g, device=device, dtype=dtype) * 0.01 for _ in range(4))
        lam.fill_(0.99)
        x = torch.rand(1, presyn, generator=g, device=device, dtype=dtype)

        def step() -> Any:
            return paper_four_ops(x, W, F, lam, dF)
    else:
        from stoxbar.devices import presets
        from stoxbar.stpn.cells import MSTPNCell

        cell = MSTPNCell(presyn - hidden, hidden, presets.sto_2024(), 4 / 60, use_kernel=False).to(device, dtype)
        params = cell.step_params()  # Lambda precomputed, as in play
        x = torch.rand(1, presyn - hidden, generator=g, device=device, dtype=dtype)
        holder = {"state": tuple(t.to(device, dtype) for t in cell.initial_state(1))}

        def step() -> Any:
            with torch.no_grad():
                h, holder["state"] = cell(x, holder["state"], params)
            return h

    return step, sum(1 for k in trace_kernels(step)[0] if not k.sync)


def profile_agent(batches: Tuple[int, ...], steps: int = 20, top: int = 15) -> str:
    """torch.profiler table (device time per kernel, top ``top``) of ``steps`` eager agent steps at each batch."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    device, out = torch.device("cuda"), []
    for batch in batches:
        step, _, _ = _agent_workload(batch, device)
        for _ in range(10):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                step()
                torch.cuda.synchronize()
        out.append(f"## agent_step, batch {batch}, eager, {steps} steps\n"
                   + prof.key_averages().table(sort_by="self_device_time_total", row_limit=top))
        del step
        torch.cuda.empty_cache()
    return "\n".join(out)


def _quartiles(xs: List[float]) -> List[float]:
    """[first quartile, third quartile] of ``xs`` (inclusive method; both equal to the value for one run)."""
    if len(xs) < 2:
        return [xs[0], xs[0]]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return [q[0], q[2]]


def _measure(step: Callable[[], Any], steps: int, runs: int, graph: bool, handle,
             min_run_s: float = 0.0) -> Dict[str, Any]:
    """Median and quartiles of s and J per step over ``runs`` loops of at least ``steps`` steps and
    ``min_run_s`` seconds each."""
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
    t0, warm = time.perf_counter(), 0
    while warm < 20 or time.perf_counter() - t0 < min(0.3, min_run_s):  # clocks ramp up after idle
        fn()
        torch.cuda.synchronize()
        warm += 1
    t0 = time.perf_counter()
    for _ in range(20):
        fn()
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / 20
    n = max(steps, int(min_run_s / max(per_step, 1e-9)) + 1)
    times, energies = [], []
    for _ in range(runs):
        e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
            torch.cuda.synchronize()  # batch 1: the host needs each step's result (the action)
        t1 = time.perf_counter()
        e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        times.append((t1 - t0) / n)
        energies.append((e1 - e0) * 1e-3 / n)
    return {"runs": runs, "steps_per_run": n, "time_s_per_step": statistics.median(times),
            "energy_j_per_step": statistics.median(energies), "time_s_iqr": _quartiles(times),
            "energy_j_iqr": _quartiles(energies)}


def run(out: str, runs: int, steps: int, sizes: List[int], presyn: int, idle_s: float, min_run_s: float = 0.0,
        agent_batches: Tuple[int, ...] = (1,)) -> Dict[str, Any]:
    """Measure every workload x size x dtype x mode and write ``out`` (atomically)."""
    import pynvml
    import torch

    from stoxbar.crossbar.ledger import write_json_atomic
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

    def measure_point(point: Dict[str, Any], build: Callable[[], Tuple[Callable[[], Any], int]]) -> None:
        label = f"{point['workload']:<15}{point['units']:>7}{point.get('batch', 1):>5}{point['dtype']:>6}{point['mode']:>12}"
        try:
            step, kernels = build()
            m = _measure(step, steps, runs, point["mode"] == "cuda_graph", handle, min_run_s)
        except Exception as err:  # noqa: BLE001 - record the point as failed, go on with the rest
            failed.append({**point, "error": f"{type(err).__name__}: {err}"})
            print(f"{label}  FAILED: {type(err).__name__}: {err}", flush=True)
            torch.cuda.synchronize()
            return
        t, e = m["time_s_per_step"], m["energy_j_per_step"]
        results.append({**point, "kernels_per_step": kernels, **m, "power_w": e / t})
        print(f"{label}  {t * 1e6:9.2f} us  {e * 1e3:9.4f} mJ  {e / t:7.1f} W", flush=True)
        del step
        torch.cuda.empty_cache()

    from stoxbar.pong.checkpoint import load_agent

    arch = load_agent(AGENT_CHECKPOINT)[0].arch
    for batch in agent_batches:
        for mode in ("eager", "cuda_graph"):
            point = {"workload": "agent_step", "units": arch.hidden, "presyn": arch.n_in + arch.hidden, "batch": batch,
                     "dtype": "fp32", "mode": mode}
            measure_point(point, lambda batch=batch: _agent_workload(batch, device)[:2])
    for workload in ("paper_four_ops", "mstpn_step"):
        for hidden in sizes:
            if workload == "mstpn_step" and hidden >= presyn:
                continue
            for dname, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
                for mode in ("eager", "cuda_graph"):
                    point = {"workload": workload, "units": hidden, "presyn": presyn, "dtype": dname, "mode": mode}
                    measure_point(point, lambda: _workload(workload, hidden, presyn, dtype, device))
    doc = {"schema": MEASUREMENT_SCHEMA,
           "gpu": {"name": torch.cuda.get_device_name(), "driver": pynvml.nvmlSystemGetDriverVersion(),
                   "torch": torch.__version__, "cuda": torch.version.cuda,
                   "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) * 1e-3},
           "idle_power_w": idle_w, "method": "NVML total-energy counter around loops of synchronised steps (batch 1 unless "
           "'batch' says otherwise), each loop at least min_run_s long; median and quartiles of runs",
           "min_run_s": min_run_s, "command": ["python", "benchmarks/gpu_measure.py", *sys.argv[1:]],
           "results": results, "failed": failed}
    validate_measurement(doc)
    write_json_atomic(out, doc)
    pynvml.nvmlShutdown()
    return doc


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_measured.json", help="JSON path (never overwritten)")
    p.add_argument("--runs", type=int, default=5, help="runs per point (median and quartiles)")
    p.add_argument("--steps", type=int, default=200, help="least steps per run")
    p.add_argument("--min-run-s", type=float, default=0.5,
                   help="least seconds per run (NVML's energy counter resolves ms, updates every few ms)")
    p.add_argument("--agent-batches", default="1,16,256", help="batches (games side by side) of agent_step")
    p.add_argument("--profile", default="", help="only write a torch.profiler kernel table of agent_step at "
                   "--agent-batches to this text file (no energy measurement)")
    p.add_argument("--sizes", default=",".join(str(2 ** k) for k in range(6, 16)), help="hidden units, 64 ... 32768")
    p.add_argument("--presyn", type=int, default=2656)
    p.add_argument("--idle-s", type=float, default=5.0, help="seconds of idle-power measurement")
    args = p.parse_args(argv)
    # every argument is checked first, with or without a GPU: one line naming the option and its range
    target = args.profile or args.out
    if os.path.exists(target):
        print(f"gpu_measure: {target} exists: measurements are never overwritten; choose a new "
              f"{'--profile' if args.profile else '--out'}")
        return 2
    for name in ("runs", "steps", "presyn"):
        if getattr(args, name) < 1:
            print(f"gpu_measure: --{name} = {getattr(args, name)}: allowed range is [1, inf)")
            return 2
    if not 0.0 <= args.min_run_s <= 60.0:
        print(f"gpu_measure: --min-run-s = {args.min_run_s}: allowed range is [0, 60]")
        return 2
    if not 0.0 < args.idle_s <= 600.0:  # the idle power divides by it
        print(f"gpu_measure: --idle-s = {args.idle_s}: allowed range is (0, 600]")
        return 2
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        batches = tuple(int(b) for b in args.agent_batches.split(",") if b.strip())
    except ValueError as err:
        print(f"gpu_measure: --sizes / --agent-batches: comma-separated whole numbers expected ({err})")
        return 2
    if any(v < 1 for v in (*sizes, *batches)):
        print(f"gpu_measure: --sizes = {args.sizes!r}, --agent-batches = {args.agent_batches!r}: allowed range is [1, inf)")
        return 2
    ok, why = gpu_available()
    if not ok:
        print(f"gpu_measure: nothing measured: {why}. Run it on a machine with an NVIDIA GPU and pynvml.")
        return 0
    if args.profile:
        from stoxbar.core.fsio import atomic_write_text

        atomic_write_text(args.profile, profile_agent(batches))
        print(f"wrote {args.profile}")
        return 0
    doc = run(args.out, args.runs, args.steps, sizes, args.presyn, args.idle_s, args.min_run_s, batches)
    print(f"wrote {args.out} ({len(doc['results'])} points, idle {doc['idle_power_w']:.1f} W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
