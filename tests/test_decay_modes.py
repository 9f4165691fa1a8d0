"""Non-exponential short-term decay simulated exactly: the bi-exponential and stretched (KWW) laws as
exponential modes, one short-term state per mode in the crossbar (``CrossbarState.g_modes``).

Invariants: the state and the bias energy do not depend on the step size; the state follows the law
(bi-exponential exactly, stretched within ``laws.KWW_MODE_TOL``); the bias energy is the law's
integral; a two-mode device whose modes coincide runs the fused one-mode path's numbers; the modes
survive a checkpoint and a drift experiment; ``stoxbar fit`` picks the law the data were made with.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import laws, presets

BASE = presets.sto_2024().without_noise()
BIEXP = replace(BASE, decay_law="biexp", decay_weight=0.3, decay_tau_ratio=10.0)
KWW = replace(BASE, decay_law="kww", decay_beta=0.5)
V = 0.3  # V: tau(0.3 V) = sqrt(0.1 * 100) = 3.16 s on sto_2024


@pytest.mark.parametrize("beta", [0.3, 0.5, 0.8, 0.95, 1.0])
def test_the_stretched_law_is_a_positive_mode_series_within_its_tolerance(beta):
    modes = laws.kww_modes(beta)
    assert 1 <= len(modes) <= laws.KWW_MAX_MODES
    assert all(w > 0 and s > 0 for w, s in modes) and sum(w for w, _ in modes) == pytest.approx(1.0, abs=1e-12)
    assert laws.kww_max_error(beta, modes) <= laws.KWW_MODE_TOL
    assert (len(modes) == 1) == (beta >= 0.999)


def test_the_stretched_series_is_pinned_and_refuses_an_exponent_it_cannot_simulate():
    # golden: the series' Lambda at t/tau = 0.01 for beta 0.5 (exact KWW: exp(-0.1) = 0.904837)
    assert float(KWW.decay_factor(1.0, 0.6)) == pytest.approx(0.9053856, abs=2e-6)
    with pytest.raises(ValueError, match=r"beta = 0.2: allowed range is \[0.3, 1\]"):
        laws.kww_modes(0.2)
    with pytest.raises(ConfigError, match=r"decay_beta = 0.2: allowed range is \[0.3, 1\]"):
        replace(BASE, decay_law="kww", decay_beta=0.2)


@pytest.mark.parametrize("changes, match", [
    (dict(decay_law="power"), r"decay_law = 'power': allowed values are \('exp', 'kww', 'biexp'\)"),
    (dict(decay_beta=0.5), r"decay_beta = 0.5: not used by decay_law = 'exp'"),
    (dict(decay_law="kww", decay_beta=0.5, decay_weight=0.5), r"decay_weight = 0.5: not used by decay_law = 'kww'"),
    (dict(decay_law="biexp", decay_weight=0.5, decay_tau_ratio=0.5), r"decay_tau_ratio = 0.5: allowed range is \[1"),
])
def test_a_decay_law_field_out_of_place_or_range_is_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        replace(BASE, **changes)


def _chip(dev, weight_seed=1):
    st = CrossbarState([6, 5], 4, dev, dtype=torch.float64)
    torch.manual_seed(weight_seed)
    st.program(torch.rand(4, 11) * 2 - 1)
    st.set_batch(2)
    st.set_bias(torch.full((4, 11), V, dtype=torch.float64))
    return st


def _pulse(st, frac=0.04):
    req = torch.full((2, *st.g_pos.shape[-3:]), frac, dtype=torch.float64) * st.mask
    req[1] = -req[1]  # the second chip's increments sit on G-
    st.apply_short_term(req)
    return st.g_st.clone()


@pytest.mark.parametrize("dev", [BASE, BIEXP, KWW], ids=["exp", "biexp", "kww"])
def test_state_and_bias_energy_do_not_depend_on_the_step_and_follow_the_law(dev):
    t, tau = 2.0, float(dev.tau_s(V))
    runs = []
    for n in (1, 10, 100):
        st = _chip(dev)
        g0 = _pulse(st)
        assert (st.g_modes is None) == (len(dev.decay_modes()) == 1)
        e = sum(float(st.decay(t / n).sum()) for _ in range(n))
        runs.append((st.g_st.clone(), e))
        if st.g_modes is not None:
            assert torch.allclose(st.g_modes.sum(0), st.g_st, rtol=0, atol=1e-24)
    for g, e in runs[1:]:
        assert torch.allclose(g, runs[0][0], rtol=1e-12, atol=1e-24)
        assert e == pytest.approx(runs[0][1], rel=1e-12)
    x = t / tau
    law = {"exp": math.exp(-x), "biexp": 0.3 * math.exp(-x) + 0.7 * math.exp(-x / 10.0),
           "kww": math.exp(-x ** 0.5)}[dev.decay_law]
    tol = laws.KWW_MODE_TOL if dev.decay_law == "kww" else 1e-12
    assert float((runs[0][0] - g0 * law).abs().max()) <= tol * float(g0.abs().max())
    # the bias energy: long-term part plus |F(0)| p(V) times the law's integral over [0, t]
    st = _chip(dev)
    lt_only = float(st.decay(t).sum())  # no short-term state yet
    integral = sum(w * s * tau * -math.expm1(-t / (s * tau)) for w, s in dev.decay_modes())
    st_part = float(g0.abs().sum()) * V * V * integral
    assert runs[0][1] == pytest.approx(lt_only + st_part, rel=1e-12)


def test_two_coinciding_modes_give_the_fused_one_mode_paths_numbers():
    """biexp with tau ratio 1 is the exponential: its K = 2 path (decay, then the quantiser) must match
    the fused single-mode pass in F, levels, pulse counts and bias energy."""
    twin = replace(BASE, decay_law="biexp", decay_weight=0.4, decay_tau_ratio=1.0)
    a, b = _chip(BASE), _chip(twin)
    assert a.g_modes is None and b.g_modes.shape[0] == 2
    gen = torch.Generator().manual_seed(3)
    scale = torch.rand(a.v_bias.shape, generator=gen, dtype=torch.float64) * 0.1 * a.mask
    for _ in range(5):
        u = torch.randn(2, 4, generator=gen, dtype=torch.float64)
        v = torch.randn(2, 2, 6, generator=gen, dtype=torch.float64)
        ra = a.decay_and_outer_update(0.0667, scale, u, v)
        rb = b.decay_and_outer_update(0.0667, scale, u, v)
        assert torch.equal(ra[0], rb[0]) and torch.equal(ra[1], rb[1]) and torch.equal(ra[3], rb[3])
        assert torch.allclose(ra[2], rb[2], rtol=1e-12)
        assert torch.allclose(a.g_st, b.g_st, rtol=1e-12, atol=1e-24)
    assert int(ra[1].sum()) > 0


def test_a_wanted_decay_maps_to_a_bias_through_the_law():
    for dev in (BIEXP, KWW):
        v = torch.linspace(0.0, 0.6, 7, dtype=torch.float64)
        lam = dev.decay_factor(0.0667, v)
        back = dev.v_bias_for_tau(dev.tau_for_decay_factor(lam, 0.0667))
        assert torch.allclose(back, v, atol=1e-9)
        assert dev.tau_for_decay_factor(float(lam[3]), 0.0667) == pytest.approx(float(dev.tau_s(0.3)), rel=1e-9)


def test_the_modes_survive_a_checkpoint_and_a_drift_experiment():
    from stoxbar.crossbar.drift import drift, snapshot
    from stoxbar.crossbar.persistence import extra_state, load_extra_state
    from stoxbar.devices.retention import no_retention

    st = _chip(BIEXP)
    _pulse(st)
    st.decay(1.0)
    _pulse(st, 0.02)  # now the modes are no longer in the weights' ratio
    saved = extra_state(st)
    other = _chip(BIEXP, weight_seed=1)
    load_extra_state(other, saved)
    assert torch.equal(other.g_modes, st.g_modes) and torch.equal(other.g_st, st.g_st)
    prog = snapshot(st, no_retention())
    modes0 = st.g_modes.clone()
    drift(st, prog, no_retention(), 5.0)
    tau = float(BIEXP.tau_s(V))
    want = modes0[0] * math.exp(-5.0 / tau) + modes0[1] * math.exp(-5.0 / (10 * tau))
    assert torch.allclose(st.g_st, want, rtol=1e-12, atol=1e-24)


def _write_traces(path, fn, biases, rng):
    t = np.geomspace(1e-3, 1000.0, 120)
    lines = ["t_s,g_s,v_bias_v"]
    for v in biases:
        g = fn(t, float(BASE.tau_s(v))) + rng.normal(0.0, 0.02e-9, t.size)
        lines += [f"{float(a)!r},{float(b)!r},{v}" for a, b in zip(t, g)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("law, fn, shape", [
    ("kww", lambda t, tau: laws.decay_kww(t, 12e-9, 8e-9, tau, 0.6), {"decay_beta": (0.6, 0.03)}),
    ("biexp", lambda t, tau: laws.decay_biexp(t, 12e-9, 8e-9, 0.4, tau, 20 * tau),
     {"decay_weight": (0.4, 0.05), "decay_tau_ratio": (20.0, 2.0)}),
])
def test_fit_device_simulates_the_law_the_traces_were_made_with(tmp_path, law, fn, shape):
    from stoxbar.devices.fit import fit_device

    _write_traces(tmp_path / "decay.csv", fn, (0.0, 0.2, 0.4, 0.6), np.random.default_rng(11))
    fit = fit_device(tmp_path, BASE, "fitted")
    d = fit.device
    assert d.decay_law == law == fit.table()["decay_law"]
    for name, (want, tol) in shape.items():
        assert getattr(d, name) == pytest.approx(want, abs=tol), name
    assert d.tau_min_s == pytest.approx(0.1, rel=0.1) and d.tau_max_s == pytest.approx(100.0, rel=0.1)
    assert "lowest AIC" in d.source("decay_law") and len(d.decay_modes()) > 1


TABLE = ((0.0, 0.1), (0.2, 0.5), (0.4, 20.0), (0.6, 100.0))


def test_a_tabulated_bias_law_is_monotone_pchip_and_its_inverse_carries_the_gradient():
    from scipy.interpolate import PchipInterpolator

    d = replace(BASE, tau_table=TABLE)
    v = np.linspace(0.0, 0.6, 61)
    ref = PchipInterpolator([p[0] for p in TABLE], np.log([p[1] for p in TABLE]))(v)
    assert np.abs(np.log(d.tau_s(v)) - ref).max() < 1e-12
    assert np.all(np.diff(d.tau_s(v)) > 0)
    for vb, tau in TABLE:
        assert d.tau_s(vb) == pytest.approx(tau, rel=1e-12) and d.v_bias_for_tau(tau) == pytest.approx(vb, abs=1e-12)
    assert np.abs(d.v_bias_for_tau(d.tau_s(v)) - v).max() < 1e-12
    tau = torch.tensor([0.3, 5.0, 50.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(d.v_bias_for_tau(tau).sum(), tau)
    eps = 1e-6
    fd = (d.v_bias_for_tau(tau.detach() + eps) - d.v_bias_for_tau(tau.detach() - eps)) / (2 * eps)
    assert torch.allclose(g, fd, rtol=1e-6)
    down = replace(BASE, tau_increases_with_bias=False, tau_table=tuple((v, t) for (v, _), (_, t) in zip(TABLE, TABLE[::-1])))
    assert np.all(np.diff(down.tau_s(v)) < 0) and np.abs(down.v_bias_for_tau(down.tau_s(v)) - v).max() < 1e-12


@pytest.mark.parametrize("table, match", [
    (((0.0, 0.1), (0.6, 100.0), (0.4, 20.0)), r"tau_table biases \[0.0, 0.6, 0.4\]: must increase strictly"),
    (((0.0, 0.1), (0.5, 100.0)), r"must span the bias range \[0, 0.6\] V"),
    (((0.0, 0.1), (0.3, 200.0), (0.6, 100.0)), r"must be > 0 and strictly monotone"),
    (((0.0, 0.2), (0.6, 100.0)), r"must equal \[tau_min_s, tau_max_s\] = \[0.1, 100\] s"),
    (((0.0, 100.0), (0.6, 0.1)), r"fall with the bias: set tau_increases_with_bias = False"),
])
def test_a_bad_tau_table_names_what_is_wrong(table, match):
    with pytest.raises(ConfigError, match=match):
        replace(BASE, tau_table=table)


def test_fit_tabulates_tau_v_where_the_log_linear_law_misses(tmp_path):
    from stoxbar.devices.fit import fit_device

    truth = replace(BASE, tau_table=TABLE)  # log tau kinks: a line through it misses by far more than the errors
    lines = ["t_s,g_s,v_bias_v"]
    rng = np.random.default_rng(2)
    t = np.geomspace(1e-3, 1000.0, 120)
    for v, _ in TABLE:
        g = laws.decay_exp(t, 12e-9, 8e-9, float(truth.tau_s(v))) + rng.normal(0.0, 0.02e-9, t.size)
        lines += [f"{float(a)!r},{float(b)!r},{v}" for a, b in zip(t, g)]
    (tmp_path / "decay.csv").write_text("\n".join(lines) + "\n")
    fit = fit_device(tmp_path, BASE, "tabled")
    assert fit.tau_v_chi2 > 4.0 and fit.table()["tau_v_law"] == "table"
    d = fit.device
    assert [p[0] for p in d.tau_table] == [p[0] for p in TABLE]
    for (_, got), (_, want) in zip(d.tau_table, TABLE):
        assert got == pytest.approx(want, rel=0.02)
    assert "tabulated" in d.source("tau_table")


def test_describe_shows_a_table_field():
    from stoxbar.devices.figures import describe

    line = next(x for x in describe(replace(BASE, tau_table=TABLE)).splitlines() if x.startswith("tau_table"))
    assert "(0, 0.1) (0.2, 0.5) (0.4, 20) (0.6, 100)" in line and "PCHIP" in line


SPREAD = replace(BASE, tau_d2d_std=0.5)


def test_each_device_has_its_own_time_constant_drawn_once_per_array():
    st = _chip(SPREAD)
    f = st.tau_factor
    real = st.mask.expand_as(f)
    assert bool((f[~real] == 1).all()) and float(f.min()) > 0
    big = SPREAD.draw_tau_d2d((200_000,), torch.Generator().manual_seed(0), torch.float64)
    assert float(big.mean()) == pytest.approx(1.0, abs=0.01) and float(big.std()) == pytest.approx(0.5, rel=0.03)
    st.program(torch.zeros(4, 11, dtype=torch.float64))  # reprogramming keeps the devices
    assert st.tau_factor is f
    assert _chip(BASE).tau_factor is None and BASE.draw_tau_d2d((3,)) is None
    lt = float(st.decay(2.0).sum())  # F is 0 still: the long-term part alone
    g0 = _pulse(st)
    e = [float(st.decay(0.2).sum()) for _ in range(10)]
    tau = float(SPREAD.tau_s(V))
    assert torch.allclose(st.g_st, g0 * torch.exp(-2.0 / (tau * f)), rtol=1e-12, atol=1e-24)
    st_part = float((g0.abs() * V * V * f * tau * -torch.expm1(-2.0 / (tau * f))).sum())
    assert sum(e) == pytest.approx(lt + st_part, rel=1e-12)


def test_chips_draw_their_own_time_constants_and_play_the_unfused_step():
    from stoxbar.crossbar.persistence import extra_state, load_extra_state

    for dev in (SPREAD, replace(SPREAD, decay_law="biexp", decay_weight=0.5, decay_tau_ratio=4.0)):
        st = CrossbarState([6, 5], 4, dev, dtype=torch.float64)
        st.program_chips(torch.rand(4, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5,
                         chips=2, slots_per_chip=2, generator=torch.Generator().manual_seed(2))
        f = st.tau_factor
        assert f.shape == (4, 2, 4, 6) and torch.equal(f[0], f[1]) and not torch.equal(f[0], f[2])
        st.set_batch(4)
        st.set_bias(torch.full((4, 11), V, dtype=torch.float64))
        ref = CrossbarState([6, 5], 4, dev, dtype=torch.float64)
        load_extra_state(ref, extra_state(st))
        assert torch.equal(ref.tau_factor, f)
        gen = torch.Generator().manual_seed(3)
        scale = torch.rand(st.v_bias.shape, generator=gen, dtype=torch.float64) * 0.1 * st.mask
        u = torch.randn(4, 4, generator=gen, dtype=torch.float64)
        v = torch.randn(4, 2, 6, generator=gen, dtype=torch.float64)
        level, counts, _, _ = st.decay_and_outer_update(0.5, scale, u, v)
        assert int(counts.sum()) > 0 and torch.equal(counts, dynamics_counts(level, dev))
        after_pulse = st.g_st.clone()
        st.decay(3.0)
        tau = float(dev.tau_s(V))
        if dev.decay_law == "exp":
            assert torch.allclose(st.g_st, after_pulse * torch.exp(-3.0 / (tau * f)), rtol=1e-12, atol=1e-24)
        else:  # F was 0 before the pulse: each mode holds its weight of it and decays with s_k f tau
            modes = [w * after_pulse * torch.exp(-3.0 / (s * tau * f)) for w, s in dev.decay_modes()]
            assert torch.allclose(st.g_st, sum(modes), rtol=1e-12, atol=1e-24)


def dynamics_counts(level, dev):
    from stoxbar.devices import dynamics

    return dynamics.level_counts(level, len(dev.st_pulse_levels))


def test_the_short_term_increment_follows_the_devices_conductance_and_spread():
    from stoxbar.devices import dynamics

    dev = replace(BASE, st_g_exponent=1.0)
    st = _chip(dev)
    dg1 = dev.short_term_levels()[1][0]
    level = torch.zeros(2, *st.g_pos.shape[-3:], dtype=torch.int8)
    level[0], level[1] = 1, -1  # chip 0 pulses every G+ device, chip 1 every G- device once, level 1
    level = level * st.mask
    before = st.g_st.clone()
    new, _ = dynamics.apply_short_term(before, level, dev, validate=False, dg_scale=st._st_scale())
    m = st.mask.expand_as(st.g_pos)
    assert torch.allclose(new[0][m], (dg1 * st.g_pos / dev.g_max_s)[m], rtol=1e-12)
    assert torch.allclose(new[1][m], (-dg1 * st.g_neg / dev.g_max_s)[m], rtol=1e-12)
    assert _chip(BASE)._st_scale() is None  # sto_2024: every device the level's dG (fused path)
    spread = replace(BASE, st_d2d_std=0.4)
    st = CrossbarState([6, 5], 4, spread, dtype=torch.float64)
    st.program_chips(torch.zeros(4, 11, dtype=torch.float64), chips=2, slots_per_chip=1,
                     generator=torch.Generator().manual_seed(4))
    d = st.st_d2d
    assert d.shape == (2, 2, 2, 4, 6) and not torch.equal(d[:, 0], d[:, 1]) and not torch.equal(d[0], d[1])
    fp, fn = st._st_scale()
    assert torch.equal(fp, d[0]) and torch.equal(fn, d[1])
    big = spread.draw_st_d2d((200_000,), torch.Generator().manual_seed(0), torch.float64)
    assert float(big.mean()) == pytest.approx(1.0, abs=0.01) and float(big.std()) == pytest.approx(0.4, rel=0.03)
    st.set_batch(2)
    st.set_bias(torch.full((4, 11), V, dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    scale = torch.rand(st.v_bias.shape, generator=gen, dtype=torch.float64) * 0.1 * st.mask
    level, counts, _, _ = st.decay_and_outer_update(0.1, scale, torch.randn(2, 4, generator=gen, dtype=torch.float64),
                                                    torch.randn(2, 2, 6, generator=gen, dtype=torch.float64))
    dg_table = torch.tensor((0.0,) + spread.short_term_levels()[1], dtype=torch.float64)
    k = level.abs().long()
    want = torch.where(level < 0, -dg_table[k] * d[1], dg_table[k] * d[0])
    assert int(counts.sum()) > 0 and torch.allclose(st.g_st, want.clamp(-spread.st_g_max_s, spread.st_g_max_s), rtol=1e-12)


def test_a_device_whose_law_disagrees_with_its_modes_is_refused():
    from dataclasses import dataclass

    from stoxbar.devices.sto import STODevice

    @dataclass(frozen=True)
    class Inconsistent(STODevice):
        def decay_factor(self, dt_s, v_bias):  # the exponential, while its fields declare two modes
            return torch.exp(-dt_s / self.tau_s(v_bias))

    with pytest.raises(ConfigError, match="a device's decay law and its modes must agree"):
        Inconsistent(decay_law="biexp", decay_weight=0.5, decay_tau_ratio=4.0)
    Inconsistent()  # one mode: its decay_factor is the law the crossbar runs, step by step
