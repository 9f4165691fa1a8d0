"""Human-facing views of a device: ``describe()`` (parameter table) and ``device_figure()`` (PNG).

Work for any :class:`~stoxbar.devices.base.MemristiveDevice` through its contract (field
metadata for units and sources, the laws as methods).

May import: torch, matplotlib, stoxbar.core.fsio, stoxbar.devices.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import List

import torch

from stoxbar.devices import dynamics
from stoxbar.devices.base import MemristiveDevice

__all__ = ["describe", "device_figure", "fit_figures"]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _fmt_seq(v) -> str:
    """A (nested) tuple of numbers in one short line: ``(0, 0.1) (0.2, 0.5)``."""
    if isinstance(v, (tuple, list)):
        if len(v) > 8 and all(not isinstance(x, (tuple, list)) for x in v):  # a long curve: its ends
            return f"({', '.join(_fmt(x) for x in v[:3])}, ..., {', '.join(_fmt(x) for x in v[-2:])}; {len(v)} points)"
        inner = [_fmt_seq(x) for x in v]
        return "(" + ", ".join(inner) + ")" if all(not isinstance(x, (tuple, list)) for x in v) else " ".join(inner)
    return _fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def describe(device: MemristiveDevice) -> str:
    """Table of every parameter (value in human units, unit, source) plus derived quantities."""
    rows: List[tuple] = []
    for f in fields(device):
        if f.name in ("notes",):
            continue
        v = getattr(device, f.name)
        unit, scale = f.metadata.get("unit", ""), f.metadata.get("scale", 1.0)
        if f.name == "st_pulse_levels":
            for k, (a, t) in enumerate(device.sorted_pulse_levels(), 1):
                rows.append((f"st_pulse_levels[{k}]", f"{a:g} x {t * 1e6:g}", "V x us",
                             device.source(f.name) if k == 1 else '"'))
            continue
        if isinstance(v, bool) or isinstance(v, str):
            val = str(v)
        elif isinstance(v, (tuple, list)):  # a table field (e.g. tau_table), shown in SI units
            val = _fmt_seq(v) if v else "-"
        else:
            val = _fmt(v * scale)
        rows.append((f.name, val, unit, device.source(f.name)))
    e, dg = device.short_term_levels()
    g0 = device.g_min_s
    derived = [
        ("g_range_s", _fmt(device.g_range_s * 1e9), "nS", "derived: g_max_s - g_min_s (one weight unit)"),
        ("lt_pulse_energy_j", _fmt(device.lt_pulse_energy_j * 1e12), "pJ", "derived: device energy of one long-term pulse"),
        *[(f"st level {k}: E, dG", f"{x * 1e12:.3g}, {y * 1e9:.3g}", "pJ, nS",
           f"derived: E = st_pulse_energy_j(V, t), dG = st_dg_s(E) ({100 * y / device.g_range_s:.2f}% of "
           "g_range)") for k, (x, y) in enumerate(zip(e, dg), 1)],
        ("bias power @ g_min, v_bias_max", _fmt(device.bias_power_w(g0, device.v_bias_max_v) * 1e9), "nW",
         "derived: V^2 G per device (docs/paper.md §1: 4.3 nW per synapse)"),
        ("read energy @ g_max", _fmt(device.read_power_w(device.g_max_s, device.v_read_v) * device.t_read_s * 1e15),
         "fJ", "derived: v_read^2 g_max t_read"),
    ]
    w_name = max(len(r[0]) for r in rows + derived)
    w_val = max(len(r[1]) for r in rows + derived)
    w_unit = max(len(r[2]) for r in rows + derived)
    out = [f"{type(device).__name__} '{device.name}'",
           f"{'parameter':<{w_name}}  {'value':>{w_val}}  {'unit':<{w_unit}}  source"]
    out.append("-" * len(out[-1]))
    for name, val, unit, src in rows:
        out.append(f"{name:<{w_name}}  {val:>{w_val}}  {unit:<{w_unit}}  {src}")
    out.append("")
    for name, val, unit, src in derived:
        out.append(f"{name:<{w_name}}  {val:>{w_val}}  {unit:<{w_unit}}  {src}")
    return "\n".join(out)


def device_figure(device: MemristiveDevice, path: str, seed: int = 0, retention=None) -> str:
    """Write a 6-panel PNG of the device's characteristics to ``path`` (atomically); returns ``path``.

    Panels: LTP/LTD conductance vs pulse number (mean model and one noisy device); short-term dG
    vs pulse energy (log-log, discrete levels marked); decay of the largest short-term increment
    at several biases; tau vs V_bias (log y); device-to-device step factors and one read's noise
    at mid window (histograms, 10,000 devices); the long-term retention curve of ``retention``
    (a :class:`~stoxbar.devices.retention.RetentionModel`; default: ``sto_2024_retention``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8))
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 3)
    _panel_ltp_ltd(ax[0, 0], device, seed)
    _panel_power_law(ax[0, 1], device)
    _panel_spread(ax[0, 2], device, seed)
    _panel_decay(ax[1, 0], device)
    _panel_tau(ax[1, 1], device)
    _panel_retention(ax[1, 2], device, retention)
    fig.suptitle(f"{type(device).__name__} '{device.name}'")
    return _save(fig, path, overwrite=True)


def _panel_spread(ax, device: MemristiveDevice, seed: int, n: int = 10_000) -> None:
    gen = torch.Generator().manual_seed(seed)
    d2d = device.draw_d2d((n,), generator=gen, dtype=torch.float64)
    g_mid = torch.full((n,), 0.5 * (device.g_min_s + device.g_max_s), dtype=torch.float64)
    rel = device.read_noise_var_s2(g_mid).sqrt() * torch.randn(n, generator=gen, dtype=torch.float64) / g_mid
    series = [(d2d, "d2d step factor"), (1.0 + rel, "one read / G at mid window")]
    for draw, what in ((device.draw_tau_d2d, "d2d tau factor"), (device.draw_st_d2d, "d2d short-term dG factor")):
        x = draw((n,), generator=gen, dtype=torch.float64)  # the law spreads a device defines (None: none)
        if x is not None:
            series.append((x, what))
    for k, (x, what) in enumerate(series):
        label = f"{what} (std {float(x.std()):.3g})"
        if float(x.std()) == 0.0:  # no spread: a line, not a one-bin histogram that hides the other
            ax.axvline(float(x[0]), color=f"C{k}", label=label)
        else:
            ax.hist(x.numpy(), bins=60, alpha=0.6, color=f"C{k}", density=True, label=label)
    ax.set_xlabel("relative value")
    ax.set_ylabel(f"density ({n} devices)")
    ax.set_title("device-to-device spread and read noise")
    ax.legend(fontsize=7)


def _panel_retention(ax, device: MemristiveDevice, retention) -> None:
    from stoxbar.devices.retention import sto_2024_retention

    ret = sto_2024_retention() if retention is None else retention
    t = torch.logspace(0, 9, 200, dtype=torch.float64)
    g0 = device.g_max_s
    g = [ret.relax(torch.tensor(g0, dtype=torch.float64), device.g_min_s, float(x)) for x in t]
    ax.semilogx(t, torch.stack(g) * 1e9, "C3")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("G (nS)")
    which = "STORPUConfig default, docs/retention.md" if retention is None else "given"
    ax.set_title(f"long-term retention ({which}): tau {ret.tau_s:.3g} s, beta {ret.beta:g}", fontsize=9)


def _save(fig, path: str, overwrite: bool) -> str:
    """PNG of ``fig`` written through the one atomic writer (stoxbar.core.fsio)."""
    import io

    from stoxbar.core.fsio import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)
    return str(path)


def _new_figure(size=(6, 4.5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def fit_figures(dfit, prefix: str) -> List[str]:
    """One PNG of data over model per fitted law (``PREFIX-decay-exp.png``, ``-tau_v``, ``-dg``, ``-retention``, ``-ltp``, ``-ltd``);
    never overwrites. ``dfit``: a :class:`stoxbar.devices.fit.DeviceFit`. Returns the paths written."""
    import numpy as np

    from stoxbar.devices import laws
    from stoxbar.devices.fit import best

    written = []
    for law in laws.DECAY_LAWS:
        if not any(law.name in fits for fits in dfit.decay.values()):
            continue
        fig, ax = _new_figure()
        for v, fits in sorted(dfit.decay.items()):
            r = fits.get(law.name)
            x, y = np.asarray(fits["exp"].x), np.asarray(fits["exp"].y)
            line = ax.semilogx(x, y * 1e9, "o", ms=3, alpha=0.6, label=f"{v:g} V data")[0]
            if r is not None:
                xx = np.geomspace(max(x[x > 0].min(), 1e-12), x.max(), 200)
                mark = " (AIC best)" if best(fits) == law.name else ""
                ax.semilogx(xx, law.fn(xx, *r.values.values()) * 1e9, "-", color=line.get_color(),
                            label=f"{law.name}: AIC {r.aic:.0f}{mark}")
        ax.set(xlabel="t (s)", ylabel="G (nS)", title=f"decay law {law.name}: data over model")
        ax.legend(fontsize=7)
        written.append(_save(fig, f"{prefix}-decay-{law.name}.png", overwrite=False))
    if dfit.tau_v is not None:
        fig, ax = _new_figure()
        v = np.array(sorted(dfit.decay))
        law = dfit.decay_law or "exp"
        key = "tau1_s" if law == "biexp" else "tau_s"
        tau = np.array([dfit.decay[x][law].values[key] for x in v])
        err = np.array([dfit.decay[x][law].errors[key] for x in v])
        ax.errorbar(v, tau, yerr=err, fmt="o", label=f"{law} fit per trace")
        vv = np.linspace(v.min(), v.max(), 100)
        ax.semilogy(vv, laws.tau_loglinear(vv, *dfit.tau_v[:2]), "-", label="log-linear tau(V)")
        if dfit.tau_table and dfit.device is not None:
            ax.semilogy(vv, dfit.device.tau_s(vv), "--", label="tabulated tau(V) (PCHIP), simulated")
        ax.set(xlabel="V_bias (V)", ylabel="tau (s)", title="bias law tau(V)")
        ax.legend(fontsize=8)
        written.append(_save(fig, f"{prefix}-tau_v.png", overwrite=False))
    for r, fn, xl, yl, name in ((dfit.dg, laws.dg_power, "E (J)", "dG (nS)", "dg"),
                                (dfit.retention, laws.decay_kww, "t (s)", "G (nS)", "retention"),
                                (dfit.ltp, laws.ltp_soft_bound, "LTP pulses", "G (nS)", "ltp"),
                                (dfit.ltd, laws.ltp_soft_bound, "LTD pulses", "g_min + g_max - G (nS)", "ltd")):
        if r is None:
            continue
        fig, ax = _new_figure()
        x, y = np.asarray(r.x), np.asarray(r.y)
        scale = {"dg": ("log", "log"), "retention": ("log", "linear")}.get(name, ("linear", "linear"))
        ax.set_xscale(scale[0])
        ax.set_yscale(scale[1])
        ax.plot(x, y * 1e9, "o", ms=3, label="data")
        xx = np.geomspace(max(x[x > 0].min(), 1e-30), x.max(), 200) if scale[0] == "log" else np.linspace(x.min(), x.max(), 400)
        ax.plot(xx, fn(xx, *r.values.values()) * 1e9, "-", label=f"{r.law}: R^2 {r.r2():.4f}")
        ax.set(xlabel=xl, ylabel=yl, title=f"{name}: data over model")
        ax.legend(fontsize=8)
        written.append(_save(fig, f"{prefix}-{name}.png", overwrite=False))
    return written


def _panel_ltp_ltd(ax, device: MemristiveDevice, seed: int) -> None:
    mean_dev = device.without_noise()
    g_top1 = torch.full((1,), device.g_max_s, dtype=torch.float64)
    n_full = max(int(dynamics.ltp_pulses_for(g_top1, mean_dev)), 1)  # pulses across the window
    n_up = int(math.ceil(1.3 * n_full))
    g0 = torch.full((1,), device.g_min_s, dtype=torch.float64)
    k_up = torch.arange(n_up + 1)
    g_up, _ = dynamics.apply_long_term(g0.expand(n_up + 1), k_up, mean_dev)  # closed form: k pulses
    g_try, _ = dynamics.apply_long_term(g_top1.expand(4 * n_up + 1), -torch.arange(4 * n_up + 1), mean_dev)
    at_min = (g_try <= device.g_min_s * (1 + 1e-9) + 1e-9 * device.g_range_s).nonzero()
    n_dn = int(math.ceil(1.3 * (int(at_min[0]) if at_min.numel() else 4 * n_up)))
    g_top = torch.full((n_dn + 1,), device.g_max_s, dtype=torch.float64)
    g_dn, _ = dynamics.apply_long_term(g_top, -torch.arange(n_dn + 1), mean_dev)
    ax.plot(k_up, g_up * 1e9, "C0", label="LTP (mean)")
    ax.plot(n_up + torch.arange(n_dn + 1), g_dn * 1e9, "C3", label="LTD (mean)")
    gen = torch.Generator().manual_seed(seed)
    d2d = dynamics.draw_d2d((1,), device, gen, torch.float64)
    g, trace = g0.clone(), [float(g0)]
    for k in range(n_up + n_dn):
        g, _ = dynamics.apply_long_term(g, torch.tensor([1 if k < n_up else -1]), device, gen, d2d)
        trace.append(float(g))
    ax.plot([x * 1e9 for x in trace], ".", ms=2, color="0.4", label="one device (c2c, d2d)")
    ax.set_xlabel("pulse number")
    ax.set_ylabel("long-term G (nS)")
    ax.set_title("LTP / LTD")
    ax.legend(fontsize=8)


def _panel_power_law(ax, device: MemristiveDevice) -> None:
    e, dg = device.short_term_levels()
    lo, hi = math.log10(e[0]) - 1, math.log10(e[-1]) + 1
    ee = torch.logspace(lo, hi, 100, dtype=torch.float64)
    ax.loglog(ee * 1e12, device.st_dg_s(ee) * 1e9, "C0", label="dG(E) law")
    ax.loglog([x * 1e12 for x in e], [x * 1e9 for x in dg], "o", color="C3", label="pulse levels")
    for (v, t), x, y in zip(device.sorted_pulse_levels(), e, dg):
        ax.annotate(f"{v:g} V, {t * 1e6:g} us", (x * 1e12, y * 1e9), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.axhline(device.st_g_max_s * 1e9, color="0.5", ls="--", lw=0.8, label="short-term window")
    ax.set_xlabel("pulse energy (pJ)")
    ax.set_ylabel("short-term dG (nS)")
    ax.set_title("short-term plasticity")
    ax.legend(fontsize=8)


def _panel_decay(ax, device: MemristiveDevice) -> None:
    _, dg = device.short_term_levels()
    t = torch.logspace(math.log10(device.tau_min_s) - 2, math.log10(device.tau_max_s) + 1, 200,
                       dtype=torch.float64)
    g0 = torch.full_like(t, dg[-1])
    lo, hi = device.v_bias_min_v, device.v_bias_max_v
    for k in range(4):
        v = lo + (hi - lo) * k / 3
        g = dynamics.decay(g0, v, t, device)
        ax.semilogx(t, g * 1e9, label=f"{v:.2g} V (tau {device.tau_s(v):.3g} s)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("short-term increment (nS)")
    ax.set_title("decay at several V_bias")
    ax.legend(fontsize=8)


def _panel_tau(ax, device: MemristiveDevice) -> None:
    v = torch.linspace(device.v_bias_min_v, device.v_bias_max_v, 100, dtype=torch.float64)
    ax.semilogy(v, device.tau_s(v), "C0")
    ax.axhline(device.tau_min_s, color="0.5", ls="--", lw=0.8)
    ax.axhline(device.tau_max_s, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("V_bias (V)")
    ax.set_ylabel("tau (s)")
    ax.set_title("decay time constant vs bias")
