"""Digital (GPU) baseline: bytes moved, FLOPs, time and energy of an STPN step or a dense layer.

energy = bytes * E_byte + flops * E_flop + P_static * time,
time   = max(bytes / peak_bw, flops / peak_flops) / utilisation + launch_overhead_s   (roofline)

Every operand is assumed to come from and go to DRAM (HBM) once per step: no L2 residency across
kernels (the A100's 40 MB L2 could hold small matrices; the paper measured >98% of GPU energy in
memory traffic, paper.md §3). Shared matrices (W, Lambda, Gamma, layer weights) are read once per
step for the whole batch (one batched kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stoxbar.validation import ConfigError, check_choice, check_int, check_range

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


def _cost(label: str, dtype: str, nbytes: float, flops: float, spec: GPUSpec) -> GPUCost:
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


def stpn_step_bytes_flops(hidden: int, presyn: int, batch: int, dtype: str = "fp32") -> tuple[int, int]:
    """(bytes, FLOPs) of one STPN step (stpn.md §1.1), H = hidden, P = presyn, B = batch.

    Bytes: read W, Lambda, Gamma (H*P each, once per batch) and b (H); per sample read F and
    write F (H*P each), read z (P), write h (H).
    FLOPs per sample: S = W + F (HP); row L2 norms (2HP + H); MVM S z (2HP); divide by n and
    tanh (~2H, tanh counted as 1 FLOP-equivalent: assumption); F / n (HP);
    F update Lambda*F~ + Gamma*(h z^T) (4HP): 10HP + 3H.
    """
    check_int("hidden", hidden, 1, None)
    check_int("presyn", presyn, 1, None)
    check_int("batch", batch, 1, None)
    size = DTYPE_BYTES[check_choice("dtype", dtype, tuple(DTYPE_BYTES))]
    hp = hidden * presyn
    elements = 3 * hp + hidden + batch * (2 * hp + presyn + hidden)
    flops = batch * (10 * hp + 3 * hidden)
    return elements * size, flops


def stpn_step_cost(hidden: int, presyn: int, batch: int = 1, dtype: str = "fp32",
                   spec: GPUSpec | None = None) -> GPUCost:
    """GPU cost of one STPN step for ``batch`` independent sequences (see stpn_step_bytes_flops)."""
    spec = GPUSpec() if spec is None else spec
    nbytes, flops = stpn_step_bytes_flops(hidden, presyn, batch, dtype)
    return _cost("stpn_step", dtype, nbytes, flops, spec)


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
    return _cost(label, dtype, wb + ab, f, spec)
