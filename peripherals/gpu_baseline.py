"""Digital (GPU) baseline: bytes moved, FLOPs, time and energy of a workload (a network step, a dense layer).

Three tiers (docs/paper-energy.md §2), all from one :class:`GPUSpec`:

* ``roofline`` (the lower bound): energy = bytes * E_byte + flops * E_flop + P_static * time,
  time = max(bytes / peak_bw, flops / peak_flops) / utilisation + launch_overhead_s;
* ``latency``: the kernels of a step as the torch implementation actually runs them
  (:func:`trace_kernels`: every non-view aten op is one CUDA kernel), each lasting
  max(launch latency, its roofline time), plus the host synchronisations of the step, all at the
  GPU's active power; ``cuda_graph=True`` uses the per-kernel cost of a CUDA-graph replay;
* ``dedicated``: ``latency`` plus the idle power of a GPU held (context open) for the rest of
  each real-time step period.

May import torch and ``stoxbar.core.validation`` only (peripherals layer).

Every operand is assumed to come from and go to DRAM (HBM) once per step: no L2 residency across
kernels (the A100's 40 MB L2 could hold small matrices; the paper measured >98% of GPU energy in
memory traffic, docs/paper.md §3). Shared matrices (W, Lambda, Gamma, layer weights) are read once per
step for the whole batch (one batched kernel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Sequence, Tuple

from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

DTYPE_BYTES = {"fp32": 4, "fp16": 2}


@dataclass(frozen=True)
class GPUSpec:
    """A GPU for the baseline. Defaults: NVIDIA A100 40 GB (SXM4).

    Attributes:
        name: label.
        dram_j_per_byte: HBM access energy (J/byte). 3.9 pJ/bit x 8 for HBM2 (activation + on-die
            data movement + I/O), O'Connor et al., "Fine-Grained DRAM", MICRO 2017, as quoted in the
            project brief (the paper's abstract: FGDRAM halves HBM2's energy per bit).
        e_flop_fp32_j, e_flop_fp16_j: energy per FLOP (J): Horowitz ISSCC 2014 (45 nm), an FMA
            = add + mult = 2 FLOP: fp32 (0.9 + 3.7)/2 = 2.3 pJ, fp16 (0.4 + 1.1)/2 = 0.75 pJ.
            Arithmetic only, unscaled from 45 nm (the A100 is 7 nm, so arithmetic is overestimated,
            operand delivery is not counted); cross-check: TDP/peak = 400 W / 19.5 TFLOP/s = 20.5 pJ
            per fp32 FLOP is the all-inclusive upper bound.
        static_power_w: power drawn regardless of work (W); assumption 50 W (A100 idle draw as
            reported by nvidia-smi is typically ~50-60 W).
        utilisation: fraction of the roofline reached, (0, 1]; assumption 0.5.
        peak_bw_bytes_s: 1555 GB/s (A100 40 GB datasheet).
        peak_flops_fp32: 19.5 TFLOP/s (datasheet, non-tensor fp32).
        peak_flops_fp16: 312 TFLOP/s (datasheet, dense fp16 tensor core).
        tdp_w: 400 W (A100 SXM4 datasheet), used only to flag implausible average power.
        launch_overhead_s: fixed time per costed step/layer (s), e.g. ~5 us per kernel launch;
            0 = pure roofline (assumption).

    Latency / dedicated tiers (docs/paper-energy.md §2 lists the sources):
        launch_latency_s: time of one eagerly launched kernel that has (almost) no work, 5 us:
            the low end of the 5-20 us CPU-side launch cost (Meta HolisticTraceAnalysis docs);
            CUDA.jl's 80 small kernels in 260 us (3.3 us each) agree.
        graph_launch_latency_s: per-kernel time inside a CUDA-graph replay, 0.9 us (CUDA.jl
            graphs docs: the same 80 kernels in 70 us as a graph).
        sync_latency_s: one host synchronisation (stream sync + device-to-host copy of a small
            result, e.g. the action), 10 us: assumption, the middle of the launch range.
        syncs_per_step: host synchronisations per step beyond those the trace finds (``.item()``),
            1: the agent must read its action back every step (assumption of the same kind holds
            for the paper's timed loops, which end in a synchronisation).
        active_power_w: board power while the GPU runs latency-bound batch-1 kernels, 120 W:
            assumption between the A100's P0 idle (~85 W, NVIDIA DCGM issue #152) and P0 idle
            plus a held context (+26-50 W over bare idle, arXiv 2605.23918).
        idle_power_w: board power of a GPU held at P0 with a context but no work, 85 W (A100 at
            P0 idle, NVIDIA DCGM issue #152); the ``dedicated`` tier pays it between steps.
        measured_from: path of the ``benchmarks/gpu_measure.py`` JSON the latency constants came
            from ("" = the sourced defaults above).
    """

    name: str = "A100-40GB"
    dram_j_per_byte: float = 3.9e-12 * 8
    e_flop_fp32_j: float = (0.9e-12 + 3.7e-12) / 2
    e_flop_fp16_j: float = (0.4e-12 + 1.1e-12) / 2
    static_power_w: float = 50.0
    utilisation: float = 0.5
    peak_bw_bytes_s: float = 1555e9
    peak_flops_fp32: float = 19.5e12
    peak_flops_fp16: float = 312e12
    tdp_w: float = 400.0
    launch_overhead_s: float = 0.0
    launch_latency_s: float = 5e-6
    graph_launch_latency_s: float = 0.9e-6
    sync_latency_s: float = 10e-6
    syncs_per_step: int = 1
    active_power_w: float = 120.0
    idle_power_w: float = 85.0
    measured_from: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name = {self.name!r}: must be a non-empty string")
        check_range("dram_j_per_byte", self.dram_j_per_byte, 0.0, 1e-9, unit="J/byte")
        check_range("e_flop_fp32_j", self.e_flop_fp32_j, 0.0, 1e-9, unit="J")
        check_range("e_flop_fp16_j", self.e_flop_fp16_j, 0.0, 1e-9, unit="J")
        check_range("static_power_w", self.static_power_w, 0.0, 2000.0, unit="W")
        check_range("utilisation", self.utilisation, 0.0, 1.0, lo_open=True)
        check_range("peak_bw_bytes_s", self.peak_bw_bytes_s, 0.0, 1e15, lo_open=True, unit="B/s")
        check_range("peak_flops_fp32", self.peak_flops_fp32, 0.0, 1e18, lo_open=True, unit="FLOP/s")
        check_range("peak_flops_fp16", self.peak_flops_fp16, 0.0, 1e18, lo_open=True, unit="FLOP/s")
        check_range("tdp_w", self.tdp_w, 0.0, 5000.0, lo_open=True, unit="W")
        check_range("launch_overhead_s", self.launch_overhead_s, 0.0, 1.0, unit="s")
        check_range("launch_latency_s", self.launch_latency_s, 0.0, 1.0, unit="s")
        check_range("graph_launch_latency_s", self.graph_launch_latency_s, 0.0, 1.0, unit="s")
        check_range("sync_latency_s", self.sync_latency_s, 0.0, 1.0, unit="s")
        check_int("syncs_per_step", self.syncs_per_step, 0, 1000)
        check_range("active_power_w", self.active_power_w, 0.0, 5000.0, unit="W")
        check_range("idle_power_w", self.idle_power_w, 0.0, 5000.0, unit="W")
        if not isinstance(self.measured_from, str):
            raise ConfigError(f"measured_from = {self.measured_from!r}: must be a string (a path or '')")

    @classmethod
    def from_measured(cls, path_or_dict: Any, base: "GPUSpec | None" = None) -> "GPUSpec":
        """``base`` (default: the A100 defaults) with the latency tier's constants measured.

        Reads the JSON written by ``benchmarks/gpu_measure.py`` (schema in
        :func:`validate_measurement`). From the smallest measured size of the paper's four
        operations (where the step is pure latency): ``launch_latency_s`` = eager time per kernel,
        ``graph_launch_latency_s`` = CUDA-graph time per kernel, ``active_power_w`` = eager energy /
        time; ``idle_power_w`` and the GPU's name from the file. Raises :class:`ConfigError` for a
        file that does not follow the schema.
        """
        if isinstance(path_or_dict, dict):
            data, src = path_or_dict, "<dict>"
        else:
            src = str(path_or_dict)
            try:
                with open(src) as f:
                    data = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ConfigError(f"gpu_measured = {src!r}: cannot read a measurement JSON ({e})") from e
        validate_measurement(data)
        base = cls() if base is None else base

        def smallest(mode: str) -> Dict[str, Any] | None:
            rows = [r for r in data["results"] if r["workload"] == "paper_four_ops" and r["mode"] == mode]
            return min(rows, key=lambda r: (r["units"], r["dtype"] != "fp16")) if rows else None

        eager, graph = smallest("eager"), smallest("cuda_graph")
        if eager is None:
            raise ConfigError(f"gpu_measured = {src!r}: no 'paper_four_ops' result in mode 'eager'; "
                              "allowed: a file from benchmarks/gpu_measure.py")
        changes: Dict[str, Any] = {
            "name": f"{data['gpu']['name']} (measured)", "measured_from": src,
            "launch_latency_s": eager["time_s_per_step"] / eager["kernels_per_step"],
            "active_power_w": eager["energy_j_per_step"] / eager["time_s_per_step"],
            "sync_latency_s": 0.0, "syncs_per_step": 0,  # a measured step time already holds its syncs
        }
        if graph is not None:
            changes["graph_launch_latency_s"] = graph["time_s_per_step"] / graph["kernels_per_step"]
        if data.get("idle_power_w") is not None:
            changes["idle_power_w"] = float(data["idle_power_w"])
        return replace(base, **changes)

    def e_flop_j(self, dtype: str) -> float:
        check_choice("dtype", dtype, tuple(DTYPE_BYTES))
        return self.e_flop_fp32_j if dtype == "fp32" else self.e_flop_fp16_j

    def peak_flops(self, dtype: str) -> float:
        check_choice("dtype", dtype, tuple(DTYPE_BYTES))
        return self.peak_flops_fp32 if dtype == "fp32" else self.peak_flops_fp16


@dataclass(frozen=True)
class GPUCost:
    """Cost of one costed unit of GPU work. Energies in J, time in s."""

    label: str
    dtype: str
    bytes: float
    flops: float
    time_s: float
    dram_j: float
    compute_j: float
    static_j: float
    bound: str = "memory"  # which roofline term sets the time: "memory" | "compute" | "mixed"
    spec: GPUSpec = field(default_factory=GPUSpec)

    @property
    def energy_j(self) -> float:
        return self.dram_j + self.compute_j + self.static_j

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.time_s if self.time_s > 0 else 0.0

    def __add__(self, other: "GPUCost") -> "GPUCost":
        if not isinstance(other, GPUCost):
            return NotImplemented
        sums = {name: getattr(self, name) + getattr(other, name)
                for name in ("bytes", "flops", "time_s", "dram_j", "compute_j", "static_j")}
        return GPUCost(
            label=self.label if self.label == other.label else f"{self.label}+{other.label}",
            dtype=self.dtype if self.dtype == other.dtype else f"{self.dtype}+{other.dtype}",
            bound=self.bound if self.bound == other.bound else "mixed", spec=self.spec, **sums)

    def as_dict(self) -> dict[str, float | str]:
        return {"label": self.label, "gpu": self.spec.name, "dtype": self.dtype, "bytes": self.bytes,
                "flops": self.flops, "time_s": self.time_s, "dram_j": self.dram_j,
                "compute_j": self.compute_j, "static_j": self.static_j, "energy_j": self.energy_j,
                "bound": self.bound}

    def assumptions(self) -> str:
        s = self.spec
        lines = [
            f"GPU baseline: {s.name}, {self.dtype}, {self.label}",
            f"  bytes moved {self.bytes:.4g} B, FLOPs {self.flops:.4g}, time {self.time_s:.4g} s "
            f"({self.bound}-bound)",
            f"  energy {self.energy_j:.4g} J = DRAM {self.dram_j:.4g} + compute {self.compute_j:.4g}"
            f" + static {self.static_j:.4g}",
            f"  DRAM {s.dram_j_per_byte * 1e12 / 8:.3g} pJ/bit (HBM2, O'Connor et al. MICRO 2017)",
            f"  compute fp32 {s.e_flop_fp32_j * 1e12:.3g} / fp16 {s.e_flop_fp16_j * 1e12:.3g} pJ/FLOP"
            " (Horowitz ISSCC 2014, 45 nm, FMA/2)",
            f"  static {s.static_power_w:g} W (assumption), utilisation {s.utilisation:g} (assumption)",
            f"  roofline peaks: {s.peak_bw_bytes_s / 1e9:g} GB/s, {s.peak_flops_fp32 / 1e12:g} "
            f"TFLOP/s fp32, {s.peak_flops_fp16 / 1e12:g} TFLOP/s fp16 tensor; launch overhead "
            f"{s.launch_overhead_s:g} s",
            "  every operand read/written from DRAM once per step; shared matrices once per batch",
        ]
        if self.avg_power_w > s.tdp_w:
            lines.append(f"  WARNING: average power {self.avg_power_w:.3g} W exceeds TDP {s.tdp_w:g} W")
        return "\n".join(lines)


def roofline_cost(label: str, dtype: str, nbytes: float, flops: float, spec: GPUSpec) -> GPUCost:
    check_choice("dtype", dtype, tuple(DTYPE_BYTES))
    if not isinstance(spec, GPUSpec):
        raise ConfigError(f"spec = {spec!r}: must be a GPUSpec instance")
    t_mem, t_flop = nbytes / spec.peak_bw_bytes_s, flops / spec.peak_flops(dtype)
    t = max(t_mem, t_flop) / spec.utilisation
    t += spec.launch_overhead_s
    return GPUCost(label=label, dtype=dtype, bytes=float(nbytes), flops=float(flops), time_s=t,
                   dram_j=nbytes * spec.dram_j_per_byte, compute_j=flops * spec.e_flop_j(dtype),
                   static_j=spec.static_power_w * t, bound="memory" if t_mem >= t_flop else "compute",
                   spec=spec)


def dense_layer_cost(n_in: int, n_out: int, batch: int = 1, dtype: str = "fp32",
                     spec: GPUSpec | None = None, *, flops: float | None = None,
                     weight_bytes: float | None = None, act_bytes: float | None = None,
                     label: str = "dense") -> GPUCost:
    """GPU cost of a dense layer (or a conv layer given its FLOPs and weight bytes).

    Defaults: FLOPs = batch * (2*n_in*n_out + n_out) (MACs + bias); weight bytes =
    (n_in*n_out + n_out) * size; activation bytes = batch * (n_in + n_out) * size.
    For a conv pass ``flops`` and ``weight_bytes`` (and ``act_bytes``, e.g. input + output maps).
    """
    check_int("n_in", n_in, 1, None)
    check_int("n_out", n_out, 1, None)
    check_int("batch", batch, 1, None)
    spec = GPUSpec() if spec is None else spec
    size = DTYPE_BYTES[check_choice("dtype", dtype, tuple(DTYPE_BYTES))]
    f = batch * (2 * n_in * n_out + n_out) if flops is None else check_range("flops", flops, 0.0, None)
    wb = (n_in * n_out + n_out) * size if weight_bytes is None else check_range(
        "weight_bytes", weight_bytes, 0.0, None)
    ab = batch * (n_in + n_out) * size if act_bytes is None else check_range(
        "act_bytes", act_bytes, 0.0, None)
    return roofline_cost(label, dtype, wb + ab, f, spec)


# ---------------------------------------------------------------------------------------------
# Kernels actually run: trace the aten ops of a torch function
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelOp:
    """One GPU kernel (one non-view aten op) of a traced step.

    ``float_elements``: floating-point tensor elements read (inputs) and written (outputs), which
    scale with the precision; ``other_bytes``: bytes of integer/bool tensors (fixed); ``flops``:
    torch's FLOP formula for matmul/conv ops, else one per output element (an elementwise op;
    assumption); ``sync``: a host synchronisation (``aten._local_scalar_dense``, i.e. ``.item()``).
    """

    name: str
    float_elements: float
    other_bytes: float
    flops: float
    sync: bool = False
    label: str = ""

    def nbytes(self, dtype: str) -> float:
        """Bytes moved at ``dtype`` ("fp16" | "fp32") for the floating-point operands."""
        return self.float_elements * DTYPE_BYTES[check_choice("dtype", dtype, tuple(DTYPE_BYTES))] + self.other_bytes


# aten ops that launch no kernel (allocation, metadata, aliasing)
_NO_KERNEL = ("empty", "empty_strided", "empty_like", "detach", "alias", "lift_fresh", "lift_fresh_copy",
              "_reshape_alias", "set_", "resize_", "sym_size", "sym_stride", "sym_numel", "is_same_size")


def trace_kernels(fn: Callable[..., Any], *args: Any, label: Callable[[], str] | None = None,
                  **kwargs: Any) -> Tuple[List[KernelOp], Any]:
    """Run ``fn(*args, **kwargs)`` and list the GPU kernels its torch ops would launch.

    Each aten op that reaches the dispatcher below autograd is one kernel, except views and
    allocations; ``.item()`` is a host sync. Operands are counted as read/written from DRAM once
    per kernel. Returns (kernels in order, fn's result). Runs on whatever device the tensors are.
    ``label()``, if given, is called at each kernel and names the part of the step it belongs to.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    try:
        from torch.utils.flop_counter import flop_registry
    except ImportError:  # pragma: no cover - older torch
        flop_registry = {}

    def elems(tensors: Sequence[Any]) -> Tuple[float, float]:
        fl, other, seen = 0.0, 0.0, set()
        for t in tensors:
            if not isinstance(t, torch.Tensor) or t.numel() == 0:
                continue
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
            if key in seen:
                continue
            seen.add(key)
            # an expanded (stride-0) operand is read once per stored element
            n = min(t.numel(), t.untyped_storage().nbytes() // max(t.element_size(), 1)) if t.dim() else 1
            if t.is_floating_point():
                fl += n
            else:
                other += n * t.element_size()
        return fl, other

    ops: List[KernelOp] = []

    class _Trace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            base = func.overloadpacket.__name__
            if base == "_local_scalar_dense":
                ops.append(KernelOp(base, 0.0, 0.0, 0.0, sync=True, label=label() if label else ""))
                return out
            if getattr(func, "is_view", False) or base in _NO_KERNEL:
                return out
            in_leaves, _ = tree_flatten((args, kwargs))
            out_leaves, _ = tree_flatten(out)
            fi, oi = elems(in_leaves)
            fo, oo = elems(out_leaves)
            packet = func.overloadpacket
            if packet in flop_registry:
                try:
                    flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
                except Exception:  # noqa: BLE001 - a formula that does not fit this overload
                    flops = fo
            else:
                flops = fo + oo  # one op per output element
            ops.append(KernelOp(base, fi + fo, oi + oo, flops, label=label() if label else ""))
            return out

    with _Trace():
        result = fn(*args, **kwargs)
    return ops, result


# ---------------------------------------------------------------------------------------------
# Tiers over a list of kernels
# ---------------------------------------------------------------------------------------------
TIERS = ("roofline", "latency", "dedicated")


@dataclass(frozen=True)
class StepTiers:
    """Energy (J) and time (s) of one step in every tier, and the memory-traffic shares."""

    dtype: str
    kernels: int
    syncs: int
    roofline_j: float
    roofline_s: float
    latency_j: float
    latency_s: float
    dedicated_j: float
    step_period_s: float
    memory_share_roofline: float
    memory_share_latency: float
    cuda_graph: bool

    def energy_j(self, tier: str) -> float:
        check_choice("tier", tier, TIERS)
        return {"roofline": self.roofline_j, "latency": self.latency_j, "dedicated": self.dedicated_j}[tier]

    def memory_share(self, tier: str) -> float:
        check_choice("tier", tier, TIERS)
        return self.memory_share_roofline if tier == "roofline" else self.memory_share_latency

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def kernel_roofline(op: KernelOp, dtype: str, spec: GPUSpec) -> Tuple[float, float, float, float]:
    """(time s, DRAM J, compute J, memory time s) of one kernel at the roofline."""
    nbytes = op.nbytes(dtype)
    t_mem = nbytes / spec.peak_bw_bytes_s / spec.utilisation
    t_flop = op.flops / spec.peak_flops(dtype) / spec.utilisation
    return max(t_mem, t_flop), nbytes * spec.dram_j_per_byte, op.flops * spec.e_flop_j(dtype), t_mem


def step_tiers(kernels: Sequence[KernelOp], dtype: str = "fp32", spec: GPUSpec | None = None,
               step_period_s: float = 4 / 60, cuda_graph: bool = False) -> StepTiers:
    """Every tier of one step made of ``kernels`` (from :func:`trace_kernels`).

    roofline:  E = sum(bytes * E_byte + flops * E_flop) + P_static * sum(t_roof) (+ launch_overhead_s
               once per step), t_roof = max(bytes/bw, flops/peak) / utilisation per kernel;
    latency:   t = sum(max(t_launch, t_roof)) + (syncs found + syncs_per_step) * t_sync
               (+ one eager launch for the graph itself with ``cuda_graph``), E = P_active * t;
    dedicated: E = latency E + P_idle * max(0, step_period_s - t).
    """
    spec = GPUSpec() if spec is None else spec
    if not isinstance(spec, GPUSpec):
        raise ConfigError(f"spec = {spec!r}: must be a GPUSpec instance")
    check_choice("dtype", dtype, tuple(DTYPE_BYTES))
    check_range("step_period_s", step_period_s, 0.0, 3600.0, lo_open=True, unit="s")
    t_launch = spec.graph_launch_latency_s if cuda_graph else spec.launch_latency_s
    roof_t = dram = comp = 0.0
    lat_t = mem_t = 0.0
    n_k = n_sync = 0
    for op in kernels:
        if op.sync:
            n_sync += 1
            continue
        n_k += 1
        t, d, c, tm = kernel_roofline(op, dtype, spec)
        roof_t, dram, comp = roof_t + t, dram + d, comp + c
        lat_t += max(t_launch, t)
        mem_t += min(tm, max(t_launch, t))
    roof_t += spec.launch_overhead_s
    roof_j = dram + comp + spec.static_power_w * roof_t
    syncs = n_sync + spec.syncs_per_step
    lat_t += syncs * spec.sync_latency_s + (spec.launch_latency_s if cuda_graph else 0.0)
    lat_j = spec.active_power_w * lat_t
    ded_j = lat_j + spec.idle_power_w * max(0.0, step_period_s - lat_t)
    return StepTiers(dtype=dtype, kernels=n_k, syncs=syncs, roofline_j=roof_j, roofline_s=roof_t, latency_j=lat_j,
                     latency_s=lat_t, dedicated_j=ded_j, step_period_s=step_period_s,
                     memory_share_roofline=dram / (dram + comp) if dram + comp > 0 else 0.0,
                     memory_share_latency=mem_t / lat_t if lat_t > 0 else 0.0, cuda_graph=cuda_graph)


# ---------------------------------------------------------------------------------------------
# Measurement file schema (benchmarks/gpu_measure.py writes it, GPUSpec.from_measured reads it)
# ---------------------------------------------------------------------------------------------
MEASUREMENT_SCHEMA = "stoxbar.gpu_measure/1"
WORKLOADS = ("paper_four_ops", "mstpn_step", "agent_step")
MODES = ("eager", "cuda_graph")
_RESULT_KEYS = {"workload": str, "units": int, "presyn": int, "dtype": str, "mode": str, "kernels_per_step": int,
                "runs": int, "time_s_per_step": float, "energy_j_per_step": float}


def validate_measurement(data: Any) -> Dict[str, Any]:
    """Check a measurement JSON (dict) against ``MEASUREMENT_SCHEMA``; returns it or raises ConfigError.

    Top level: ``schema`` (= MEASUREMENT_SCHEMA), ``gpu`` {``name``: str, ...}, ``idle_power_w``
    (float or null), ``results``: a non-empty list of {``workload`` in WORKLOADS, ``units``,
    ``presyn``, ``dtype`` in fp16/fp32, ``mode`` in eager/cuda_graph, ``kernels_per_step`` >= 1,
    ``runs`` >= 1, ``time_s_per_step`` > 0, ``energy_j_per_step`` >= 0 (medians over ``runs``),
    optionally ``batch`` >= 1 (games side by side, ``agent_step``; 1 if absent)}.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"measurement = {type(data).__name__}: must be a JSON object")
    if data.get("schema") != MEASUREMENT_SCHEMA:
        raise ConfigError(f"measurement schema = {data.get('schema')!r}: allowed value is {MEASUREMENT_SCHEMA!r}")
    gpu = data.get("gpu")
    if not isinstance(gpu, dict) or not isinstance(gpu.get("name"), str) or not gpu["name"]:
        raise ConfigError(f"measurement gpu = {gpu!r}: must be an object with a non-empty 'name'")
    idle = data.get("idle_power_w")
    if idle is not None:
        check_range("measurement idle_power_w", idle, 0.0, 5000.0, unit="W")
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise ConfigError("measurement results: must be a non-empty list")
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise ConfigError(f"measurement results[{k}] = {r!r}: must be an object")
        for key, typ in _RESULT_KEYS.items():
            v = r.get(key)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float else isinstance(v, typ)
            if not ok or (typ is int and isinstance(v, bool)):
                raise ConfigError(f"measurement results[{k}].{key} = {v!r}: must be a {typ.__name__}")
        check_choice(f"measurement results[{k}].workload", r["workload"], WORKLOADS)
        check_choice(f"measurement results[{k}].dtype", r["dtype"], tuple(DTYPE_BYTES))
        check_choice(f"measurement results[{k}].mode", r["mode"], MODES)
        for key in ("units", "presyn", "kernels_per_step", "runs"):
            check_int(f"measurement results[{k}].{key}", r[key], 1, None)
        if "batch" in r:
            check_int(f"measurement results[{k}].batch", r["batch"], 1, None)
        check_range(f"measurement results[{k}].time_s_per_step", r["time_s_per_step"], 0.0, 3600.0, lo_open=True,
                    unit="s")
        check_range(f"measurement results[{k}].energy_j_per_step", r["energy_j_per_step"], 0.0, 1e6, unit="J")
    return data
