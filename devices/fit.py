"""``stoxbar fit``: fit the device laws (:mod:`stoxbar.devices.laws`) to measured CSV files with scipy.

Files in ``DATA_DIR`` (each optional, at least one needed; docs/device-physics.md §11):

* ``decay*.csv``     columns ``t_s, g_s, v_bias_v``: relaxation of the short-term increment after a pulse,
                     one trace per bias (rows grouped by ``v_bias_v``, time increasing within a trace).
                     Each trace is fitted by every decay law (exp, kww, biexp); the Akaike information
                     criterion (least squares: ``n ln(RSS/n) + 2k``), summed over the traces, picks the
                     device's law (``decay_law``; kww's beta, biexp's weight and time-constant ratio are the
                     medians over the traces). ``tau(V)`` is the log-linear fit of that law's time constants
                     (biexp: the fast one) over the biases; with 3 or more biases where that line misses
                     the time constants (reduced chi^2 above ``TAU_TABLE_CHI2``, weighted by their errors)
                     and they are monotone, the device takes them as ``tau_table`` (PCHIP in log tau)
                     instead. A stretched fit below ``laws.KWW_BETA_MIN`` cannot
                     be simulated: the next law by AIC is used, and the device's source says so.
* ``dg_energy.csv``  columns ``energy_j, dg_s``: the short-term increment of one pulse vs its energy (power law).
* ``retention.csv``  columns ``t_s, g_s``: the long-term conductance after programming (stretched exponential).
* ``pulses.csv``     columns ``index, amplitude_v, width_s, g_s``: a pulse train from the window's bottom, one row
                     per pulse (G after it; amplitude > 0 LTP, < 0 LTD): its first LTP run and first LTD run are
                     fitted by the soft-bound pulse-coordinate model (g_min, g_max, nonlinearity, step, asymmetry).

Parameters come with one-sigma uncertainties from the covariance of ``scipy.optimize.curve_fit``.
A bad file raises :class:`ConfigError` naming the file, line and column; a law that cannot be fitted
(too few points, no convergence, singular covariance) names the law and why.

May import: numpy, scipy, stoxbar.core, stoxbar.devices.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from stoxbar.core.fsio import csv_number, read_csv
from stoxbar.core.validation import ConfigError
from stoxbar.devices import laws
from stoxbar.devices.base import MemristiveDevice

__all__ = ["FitResult", "DeviceFit", "fit_law", "fit_decay_trace", "fit_device", "read_columns"]


@dataclass(frozen=True)
class FitResult:
    """One law fitted to one data set: values and one-sigma errors by parameter name, RSS, AIC."""

    law: str
    values: Dict[str, float]
    errors: Dict[str, float]
    n: int
    rss: float
    aic: float
    x: Tuple[float, ...] = field(repr=False, default=())
    y: Tuple[float, ...] = field(repr=False, default=())

    def r2(self) -> float:
        y = np.asarray(self.y)
        tss = float(((y - y.mean()) ** 2).sum())
        return 1.0 - self.rss / tss if tss > 0 else float("nan")


def read_columns(path: Path, columns: Sequence[str], positive: Sequence[str] = (),
                 nonneg: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """The named numeric columns of a CSV file; ConfigError naming file, line and column for a bad cell."""
    rows = read_csv(path, required=columns)
    if not rows:
        raise ConfigError(f"{path}: no data rows (header {list(columns)} then one row per point)")
    out = {c: np.empty(len(rows)) for c in columns}
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        for c in columns:
            v = csv_number(path, row, c, line)
            if (c in positive and v <= 0) or (c in nonneg and v < 0):
                rng = "(0, inf)" if c in positive else "[0, inf)"
                raise ConfigError(f"{path}: line {line} {c} = {row[c]!r}: allowed range is {rng}")
            out[c][i] = v
    return out


def fit_law(law: laws.Law, x: np.ndarray, y: np.ndarray, what: str) -> FitResult:
    """Least-squares fit of ``law`` to (x, y), in scaled units (x / max x, y / max |y|) for conditioning."""
    from scipy.optimize import curve_fit

    k = len(law.params)
    if len(x) < k + 2:
        raise ConfigError(f"{what}: law {law.name!r} has {k} parameters and needs at least {k + 2} points, got {len(x)}")
    xs, ys = float(np.max(np.abs(x))) or 1.0, float(np.max(np.abs(y))) or 1.0
    scale = np.array([ys if u == "S" else xs if u == "s" else 1.0 for u in law.units])
    p0, lo, hi = (np.asarray(v, float) / scale for v in law.guess(x, y))
    p0 = np.minimum(np.maximum(p0, lo), hi)

    def scaled(xx, *p):
        return law.fn(xx * xs, *(np.asarray(p) * scale)) / ys

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an OptimizeWarning (covariance not estimable) is a failed fit
            p, cov = curve_fit(scaled, x / xs, y / ys, p0=p0, bounds=(lo, hi), maxfev=20000)
    except (RuntimeError, ValueError, Warning) as exc:
        raise ConfigError(f"{what}: law {law.name!r} did not converge ({type(exc).__name__}: {exc})") from None
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if not np.all(np.isfinite(err)):
        raise ConfigError(f"{what}: law {law.name!r}: parameters not identifiable from these points (singular covariance)")
    resid = y - law.fn(x, *(p * scale))
    rss = float((resid ** 2).sum())
    n = len(x)
    aic = n * math.log(max(rss / n, 1e-300)) + 2 * k
    return FitResult(law.name, dict(zip(law.params, (p * scale).tolist())), dict(zip(law.params, (err * scale).tolist())),
                     n, rss, aic, tuple(map(float, x)), tuple(map(float, y)))


def fit_decay_trace(t: np.ndarray, g: np.ndarray, what: str) -> Dict[str, FitResult]:
    """Every decay law that fits the trace, by name (the exponential must fit; others are skipped if they cannot)."""
    out = {}
    for law in laws.DECAY_LAWS:
        try:
            out[law.name] = fit_law(law, t, g, what)
        except ConfigError:
            if law.name == "exp":
                raise
    return out


def best(fits: Dict[str, FitResult]) -> str:
    """The law with the lowest AIC."""
    return min(fits, key=lambda k: fits[k].aic)


@dataclass
class DeviceFit:
    """Everything ``fit_device`` found: per-bias decay fits, tau(V), dG(E), retention, and the device."""

    decay: Dict[float, Dict[str, FitResult]] = field(default_factory=dict)
    decay_law: str = ""  # the law the device simulates (lowest AIC summed over the traces)
    tau_v_chi2: float = float("nan")  # reduced chi^2 of the log-linear tau(V) (3 or more biases)
    tau_table: Tuple[Tuple[float, float], ...] = ()  # the tabulated tau(V) the device took, if any
    tau_v: Optional[Tuple[float, float, float, float]] = None  # c0, c1, sigma c0, sigma c1
    dg: Optional[FitResult] = None
    retention: Optional[FitResult] = None
    ltp: Optional[FitResult] = None
    ltd: Optional[FitResult] = None
    device: Optional[MemristiveDevice] = None
    sources: Dict[str, str] = field(default_factory=dict)

    def retention_model(self):
        """The fitted retention as a :class:`~stoxbar.devices.retention.RetentionModel` (for
        ``STORPUConfig(retention=...)`` and aihwkit's ``drift_analog_weights``); ConfigError without retention.csv."""
        from stoxbar.devices.retention import RetentionModel

        if self.retention is None:
            raise ConfigError("retention: no retention.csv was fitted")
        return RetentionModel(tau_s=self.retention.values["tau_s"], beta=self.retention.values["beta"])

    def table(self) -> Dict[str, Any]:
        """Flat provenance for the device file's [fit] table (values, errors, AIC, chosen laws)."""
        t: Dict[str, Any] = {"decay_law": self.decay_law} if self.decay_law else {}
        for v, fits in sorted(self.decay.items()):
            key = f"decay_v{v:g}".replace(".", "p").replace("-", "m")
            t[f"{key}_law"] = best(fits)
            for name, r in fits.items():
                t[f"{key}_{name}_aic"] = r.aic
                for p, val in r.values.items():
                    t[f"{key}_{name}_{p}"] = val
                    t[f"{key}_{name}_{p}_err"] = r.errors[p]
        if self.tau_v:
            t.update(tau_v_c0=self.tau_v[0], tau_v_c1_per_v=self.tau_v[1], tau_v_c0_err=self.tau_v[2],
                     tau_v_c1_err=self.tau_v[3], tau_v_law="table" if self.tau_table else "loglinear")
            if math.isfinite(self.tau_v_chi2):
                t["tau_v_loglinear_chi2"] = self.tau_v_chi2
        for name, r in (("dg", self.dg), ("retention", self.retention), ("ltp", self.ltp), ("ltd", self.ltd)):
            if r is not None:
                t[f"{name}_r2"] = r.r2()
                for p, val in r.values.items():
                    t[f"{name}_{p}"] = val
                    t[f"{name}_{p}_err"] = r.errors[p]
        return t


def _decay_files(data_dir: Path, out: DeviceFit) -> None:
    for path in sorted(data_dir.glob("decay*.csv")):
        cols = read_columns(path, ("t_s", "g_s", "v_bias_v"), nonneg=("t_s", "g_s"))
        for v in np.unique(cols["v_bias_v"]):
            sel = np.nonzero(cols["v_bias_v"] == v)[0]
            t, g = cols["t_s"][sel], cols["g_s"][sel]
            bad = np.nonzero(np.diff(t) <= 0)[0]
            if bad.size:
                raise ConfigError(f"{path}: line {sel[bad[0] + 1] + 2} t_s = {float(t[bad[0] + 1])!r}: time must "
                                  f"increase within the trace at v_bias_v = {v:g} (previous {float(t[bad[0]])!r})")
            if float(v) in out.decay:
                raise ConfigError(f"{path}: a second trace at v_bias_v = {v:g} V (one trace per bias)")
            out.decay[float(v)] = fit_decay_trace(t, g, f"{path} (v_bias_v = {v:g} V)")


_TAU_PARAM = {"exp": "tau_s", "kww": "tau_s", "biexp": "tau1_s"}
#: reduced chi^2 of the log-linear tau(V) above which the fitted time constants are tabulated instead
#: (assumption: 4, i.e. the line misses the points by 2 sigma RMS)
TAU_TABLE_CHI2 = 4.0


def _decay_law(out: DeviceFit) -> Tuple[str, Dict[str, float], str]:
    """(law, its shape fields for STODevice, a note) from the decay fits: lowest summed AIC among the laws
    fitted to every trace and simulatable."""
    fits = list(out.decay.values())
    common = [name for name in _TAU_PARAM if all(name in f for f in fits)]
    ranked = sorted(common, key=lambda name: sum(f[name].aic for f in fits))
    note = ""
    for name in ranked:
        if name == "kww":
            beta = float(np.median([f["kww"].values["beta"] for f in fits]))
            if beta < laws.KWW_BETA_MIN:
                note = f"; the stretched fit (beta {beta:.3g} < {laws.KWW_BETA_MIN}) cannot be simulated"
                continue
            return name, {"decay_beta": min(beta, 1.0)}, note
        if name == "biexp":
            a = float(np.median([f["biexp"].values["a"] for f in fits]))
            r = float(np.median([f["biexp"].values["tau2_s"] / f["biexp"].values["tau1_s"] for f in fits]))
            return name, {"decay_weight": a, "decay_tau_ratio": max(r, 1.0)}, note
        return name, {}, note
    return "exp", {}, note


def _tau_v(out: DeviceFit) -> Tuple[float, float, float, float]:
    v = np.array(sorted(out.decay))
    key = _TAU_PARAM[out.decay_law or "exp"]
    fits = [out.decay[x][out.decay_law or "exp"] for x in v]
    log_tau = np.log([r.values[key] for r in fits])
    w = np.array([r.values[key] / max(r.errors[key], 1e-12 * r.values[key]) for r in fits])  # 1/sigma(ln tau)
    if len(v) == 1:
        return float(log_tau[0]), 0.0, float("nan"), float("nan")
    if len(v) == 2:
        c1 = float((log_tau[1] - log_tau[0]) / (v[1] - v[0]))
        return float(log_tau[0] - c1 * v[0]), c1, float("nan"), float("nan")
    (c1, c0), cov = np.polyfit(v, log_tau, 1, w=w, cov="unscaled" if len(v) == 3 else True)
    out.tau_v_chi2 = float((((log_tau - (c0 + c1 * v)) * w) ** 2).sum() / (len(v) - 2))
    return float(c0), float(c1), float(math.sqrt(abs(cov[1, 1]))), float(math.sqrt(abs(cov[0, 0])))


def fit_device(data_dir: Path, based_on: MemristiveDevice, name: str, lt_table: bool = False) -> DeviceFit:
    """Fit every law the files in ``data_dir`` allow; ``based_on`` supplies the fields no file measures.
    ``lt_table``: the device takes the measured LTP/LTD curves of ``pulses.csv`` as lookup tables
    (``STODevice.lt_table``) instead of the soft-bound law (which is still fitted and reported)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"DATA_DIR = {str(data_dir)!r}: not a directory")
    out = DeviceFit()
    changes: Dict[str, Any] = {"name": name}
    _decay_files(data_dir, out)
    if out.decay:
        out.decay_law, shape, note = _decay_law(out)
        c0, c1, e0, e1 = out.tau_v = _tau_v(out)
        vs = sorted(out.decay)
        if len(vs) < 2:
            raise ConfigError(f"{data_dir}: decay traces at one bias ({vs[0]:g} V) only; tau(V) needs traces at "
                              "two or more biases")
        tau_lo, tau_hi = math.exp(c0 + c1 * vs[0]), math.exp(c0 + c1 * vs[-1])
        changes.update(v_bias_min_v=vs[0], v_bias_max_v=vs[-1], tau_min_s=min(tau_lo, tau_hi),
                       tau_max_s=max(tau_lo, tau_hi), tau_increases_with_bias=bool(c1 > 0))
        changes.update(decay_law=out.decay_law, **shape)
        src = f"stoxbar fit: log-linear tau(V) through the {out.decay_law} fits of {len(vs)} decay traces"
        taus = [out.decay[v][out.decay_law].values[_TAU_PARAM[out.decay_law]] for v in vs]
        steps = np.diff(taus)
        if len(vs) >= 3 and out.tau_v_chi2 > TAU_TABLE_CHI2 and (np.all(steps > 0) or np.all(steps < 0)):
            out.tau_table = tuple((float(v), float(t)) for v, t in zip(vs, taus))
            changes.update(tau_table=out.tau_table, tau_min_s=min(taus), tau_max_s=max(taus),
                           tau_increases_with_bias=bool(taus[-1] > taus[0]))
            src = (f"stoxbar fit: tau(V) tabulated (PCHIP in log tau) through the {out.decay_law} fits of {len(vs)} "
                   f"decay traces (log-linear reduced chi^2 {out.tau_v_chi2:.3g} > {TAU_TABLE_CHI2:g})")
        out.sources.update({k: src for k in ("v_bias_min_v", "v_bias_max_v", "tau_min_s", "tau_max_s",
                                             "tau_increases_with_bias") + (("tau_table",) if out.tau_table else ())})
        law_src = (f"stoxbar fit: lowest AIC summed over {len(vs)} decay traces{note}"
                   + (" (shape: median over the traces)" if shape else ""))
        out.sources.update({k: law_src for k in ("decay_law", *shape)})
    dg_path = data_dir / "dg_energy.csv"
    if dg_path.exists():
        cols = read_columns(dg_path, ("energy_j", "dg_s"), positive=("energy_j", "dg_s"))
        out.dg = fit_law(laws.Law("dg_power", laws.dg_power, ("a", "b"), ("", ""), _guess_power),
                         cols["energy_j"], cols["dg_s"], str(dg_path))
        changes.update(st_a=out.dg.values["a"], st_b=out.dg.values["b"])
        out.sources.update(st_a=f"stoxbar fit: dG = a E^b to {dg_path.name}", st_b=f"stoxbar fit: dG = a E^b to {dg_path.name}")
    ret_path = data_dir / "retention.csv"
    if ret_path.exists():
        cols = read_columns(ret_path, ("t_s", "g_s"), nonneg=("t_s", "g_s"))
        if np.any(np.diff(cols["t_s"]) <= 0):
            i = int(np.nonzero(np.diff(cols["t_s"]) <= 0)[0][0]) + 1
            raise ConfigError(f"{ret_path}: line {i + 2} t_s = {float(cols['t_s'][i])!r}: time must increase")
        out.retention = fit_law(laws.RETENTION_LAW, cols["t_s"], cols["g_s"], str(ret_path))
    pulse_path = data_dir / "pulses.csv"
    if pulse_path.exists():
        changes.update(_pulse_train(pulse_path, out, lt_table))
    if not (out.decay or out.dg or out.retention or out.ltp):
        raise ConfigError(f"{data_dir}: no decay*.csv, dg_energy.csv, retention.csv or pulses.csv to fit")
    try:
        out.device = dataclasses.replace(based_on, **changes,
                                         notes=tuple(sorted({**dict(getattr(based_on, "notes", ())), **out.sources}.items())))
    except ConfigError as exc:
        raise ConfigError(f"{data_dir}: the fitted values do not make a valid device ({exc})") from None
    return out


def _first_run(sel: np.ndarray) -> np.ndarray:
    """Indices of the first contiguous run of True in ``sel``."""
    idx = np.nonzero(sel)[0]
    if idx.size == 0:
        return idx
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    return idx[: breaks[0] + 1] if breaks.size else idx


def _lookup_table(g: np.ndarray, start: float, rising: bool) -> Tuple[float, ...]:
    """A measured run as a lookup table: ``|G_n - start|`` normalised to its end, made non-decreasing
    (a running maximum: noise that moves a conductance back is not a device property), 0 first, 1 last."""
    depth = np.maximum.accumulate(np.abs(np.asarray(g) - start) if rising else np.abs(start - np.asarray(g)))
    if depth[-1] <= 0:
        raise ConfigError("pulses.csv: a pulse run that does not move the conductance cannot be a lookup table")
    x = np.clip(depth / depth[-1], 0.0, 1.0)
    return (0.0,) + tuple(float(v) for v in x[:-1]) + (1.0,)


def _pulse_train(path: Path, out: DeviceFit, lt_table: bool = False) -> Dict[str, Any]:
    """Fit the LTP (and LTD) runs of a pulse train; the device fields they give (the measured runs as
    lookup tables with ``lt_table``)."""
    cols = read_columns(path, ("index", "amplitude_v", "width_s", "g_s"), positive=("width_s",), nonneg=("g_s",))
    if np.any(np.diff(cols["index"]) <= 0):
        i = int(np.nonzero(np.diff(cols["index"]) <= 0)[0][0]) + 1
        raise ConfigError(f"{path}: line {i + 2} index = {float(cols['index'][i])!r}: the pulse index must increase")
    if np.any(cols["amplitude_v"] == 0):
        i = int(np.nonzero(cols["amplitude_v"] == 0)[0][0])
        raise ConfigError(f"{path}: line {i + 2} amplitude_v = 0: allowed: > 0 (LTP) or < 0 (LTD)")
    up = _first_run(cols["amplitude_v"] > 0)
    if up.size == 0:
        raise ConfigError(f"{path}: no LTP pulses (amplitude_v > 0); the train starts from the window's bottom with LTP")
    g_up = cols["g_s"][up]
    out.ltp = fit_law(laws.LTP_LAW, np.arange(1, up.size + 1, dtype=float), g_up, f"{path} (LTP run)")
    g_min, g_max, nu, s_up = (out.ltp.values[k] for k in laws.LTP_LAW.params)
    if not 0 <= g_min < g_max:
        raise ConfigError(f"{path}: the LTP fit gives g_min = {g_min:g} S, g_max = {g_max:g} S; need 0 <= g_min < g_max")
    centre_slope = (nu / 2) / math.tanh(nu / 2)  # dx/dp at the window centre (STODevice.lt_pulse_coordinate_step)
    fields: Dict[str, Any] = dict(g_min_s=g_min, g_max_s=g_max, lt_nonlinearity=nu, lt_dg_s=s_up * (g_max - g_min) * centre_slope,
                                  lt_pulse_v=float(np.median(cols["amplitude_v"][up])),
                                  lt_pulse_width_s=float(np.median(cols["width_s"][up])))
    dn = _first_run(cols["amplitude_v"] < 0)
    if dn.size:  # LTD is the mirror image from g_max: fit g_min + g_max - G with the same law
        out.ltd = fit_law(laws.LTP_LAW, np.arange(1, dn.size + 1, dtype=float), g_min + g_max - cols["g_s"][dn],
                          f"{path} (LTD run)")
        fields["lt_up_down"] = out.ltd.values["s"] / s_up
    src = f"stoxbar fit: soft-bound pulse-coordinate model to {path.name}"
    out.sources.update({k: src for k in fields})
    if lt_table:  # the window from the LTP run itself: its top, and its bottom one step before the first pulse
        top = float(np.max(g_up))
        bottom = max(0.0, float(2 * g_up[0] - g_up[1]))  # the file holds G after each pulse: extrapolate G_0
        fields.update(g_min_s=bottom, g_max_s=top, lt_nonlinearity=0.0, lt_table=_lookup_table(g_up, bottom, True))
        win = f"stoxbar fit: the LTP run of {path.name}: its top; its bottom extrapolated linearly from the first two pulses"
        out.sources.update(g_min_s=win, g_max_s=win, lt_nonlinearity="stoxbar fit: 0, the lookup table is the curve",
                           lt_table=f"stoxbar fit: the first LTP run of {path.name} ({up.size} pulses), normalised "
                                    "to the window, running maximum")
        if dn.size:
            fields["lt_table_ltd"] = _lookup_table(cols["g_s"][dn], top, False)
            out.sources["lt_table_ltd"] = (f"stoxbar fit: the first LTD run of {path.name} ({dn.size} pulses), "
                                           "normalised to its last point, running maximum of the depth")
    return fields


def _guess_power(e: np.ndarray, dg: np.ndarray) -> Tuple[list, list, list]:
    b, log_a = np.polyfit(np.log(e), np.log(dg), 1)  # the log-log line: an exact start for the power law
    return [float(math.exp(log_a)), float(b)], [0.0, 0.0], [np.inf, 5.0]
