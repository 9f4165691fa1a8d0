"""Tests of stoxbar.devices: validation, tau law, decay, energies, pulses, stability, presets, figure."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from stoxbar.devices import dynamics as D
from stoxbar.devices.figures import describe, device_figure
from stoxbar.devices.presets import PRESETS, get_preset, ideal, sto_2024
from stoxbar.devices.sto import STODevice
from stoxbar.core.validation import ConfigError

DEV = sto_2024()
F64 = torch.float64


# SI values are tiny (nS, pJ): every comparison is relative, with no hidden absolute tolerance
# (pytest.approx's default abs=1e-12 and torch.allclose's atol=1e-8 would accept anything).
def approx(expected, rel: float = 1e-9, abs: float = 0.0):  # noqa: A002
    return pytest.approx(expected, rel=rel, abs=abs)


def allclose(a, b, rtol: float = 1e-9, atol: float = 0.0) -> bool:
    return torch.allclose(a, b, rtol=rtol, atol=atol)


def allclose_np(a, b, rtol: float = 1e-9) -> bool:
    return bool(np.allclose(a, b, rtol=rtol, atol=0.0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field", [
    (dict(g_min_s=-1e-9), "g_min_s"),
    (dict(g_max_s=float("nan")), "g_max_s"),
    (dict(g_min_s=2e-7), "g_min_s"),  # inverted window
    (dict(tau_min_s=200.0), "tau_min_s"),  # inverted tau range
    (dict(tau_min_s=100.0), "tau_min_s"),  # empty tau range
    (dict(tau_max_s=float("inf")), "tau_max_s"),
    (dict(v_bias_min_v=0.7), "v_bias_min_v"),  # inverted bias range
    (dict(v_bias_max_v=-0.1), "v_bias_max_v"),
    (dict(lt_dg_s=1e-7), "lt_dg_s"),  # step larger than the window
    (dict(lt_dg_s=0.0), "lt_dg_s"),
    (dict(lt_up_down=0.0), "lt_up_down"),
    (dict(lt_nonlinearity=-1.0), "lt_nonlinearity"),
    (dict(lt_nonlinearity=True), "lt_nonlinearity"),
    (dict(lt_c2c_std=float("nan")), "lt_c2c_std"),
    (dict(lt_d2d_std=-0.1), "lt_d2d_std"),
    (dict(st_b=0.0), "st_b"),
    (dict(st_a=-1.0), "st_a"),
    (dict(st_pulse_levels=()), "st_pulse_levels"),  # fewer than 1 level
    (dict(st_pulse_levels=tuple((1.0, 1e-6 * (k + 1)) for k in range(17))), "st_pulse_levels"),
    (dict(st_pulse_levels=((0.0, 1e-5),)), "st_pulse_levels[0] amplitude"),
    (dict(st_pulse_levels=((1.0, -1e-5),)), "st_pulse_levels[0] width"),
    (dict(st_pulse_levels=((1.0, 1e-5), (1.0, 1e-5))), "st_pulse_levels"),  # duplicate energy
    (dict(st_pulse_levels=[(1.0, 1e-5)]), "st_pulse_levels"),  # list: not hashable/frozen
    (dict(st_g_max_s=1e-9), "st_g_max_s"),  # largest level does not fit the window
    (dict(read_noise_std=-0.01), "read_noise_std"),
    (dict(t_read_s=0.0), "t_read_s"),
    (dict(tau_increases_with_bias="yes"), "tau_increases_with_bias"),
    (dict(name=""), "name"),
    (dict(notes=(("no_such_field", "x"),)), "notes"),
])
def test_validation_names_field_value_and_range(kwargs, field):
    with pytest.raises(ConfigError) as err:
        STODevice(**kwargs)
    msg = str(err.value)
    assert msg.startswith(field), msg
    assert "allowed" in msg or "must" in msg


def test_valid_device_is_frozen_and_hashable():
    d = STODevice()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.g_max_s = 1.0  # type: ignore[misc]
    assert hash(d) == hash(STODevice()) and d == sto_2024()


# ---- tau(V_bias) ------------------------------------------------------------------------------
def test_tau_law_ends_and_log_linear():
    d = DEV
    assert d.tau_s(d.v_bias_min_v) == approx(d.tau_min_s)
    assert d.tau_s(d.v_bias_max_v) == approx(d.tau_max_s)
    mid = 0.5 * (d.v_bias_min_v + d.v_bias_max_v)
    assert d.tau_s(mid) == approx(math.sqrt(d.tau_min_s * d.tau_max_s))
    v = torch.linspace(d.v_bias_min_v, d.v_bias_max_v, 50, dtype=F64)
    slope = torch.diff(torch.log(d.tau_s(v))) / torch.diff(v)
    assert allclose(slope, slope[0].expand_as(slope), rtol=1e-9)
    rev = dataclasses.replace(d, tau_increases_with_bias=False)
    assert rev.tau_s(d.v_bias_min_v) == approx(d.tau_max_s)
    assert rev.tau_s(d.v_bias_max_v) == approx(d.tau_min_s)


@pytest.mark.parametrize("dev", [DEV, dataclasses.replace(DEV, tau_increases_with_bias=False, v_bias_min_v=0.2)])
def test_tau_inverse_round_trip_all_input_types(dev):
    taus = np.geomspace(dev.tau_min_s, dev.tau_max_s, 37)
    v_np = dev.v_bias_for_tau(taus)
    assert isinstance(v_np, np.ndarray)
    assert allclose_np(dev.tau_s(v_np), taus, rtol=1e-12)
    v_t = dev.v_bias_for_tau(torch.tensor(taus))
    assert allclose(dev.tau_s(v_t), torch.tensor(taus), rtol=1e-12)
    for tau in (dev.tau_min_s, 3.7, dev.tau_max_s):
        assert dev.tau_s(dev.v_bias_for_tau(tau)) == approx(tau, rel=1e-12)
    # float32 round-off at the ends (as from tau_min * ratio**sigmoid) is accepted and stays in range
    t32 = torch.tensor([dev.tau_min_s, dev.tau_max_s], dtype=torch.float32)
    v32 = dev.v_bias_for_tau(t32)
    assert float(v32.min()) >= dev.v_bias_min_v - 1e-7 and float(v32.max()) <= dev.v_bias_max_v + 1e-7
    assert allclose(dev.tau_s(v32), t32, rtol=1e-5)  # float32 representation of 0.6 V accepted


@pytest.mark.parametrize("bad", [0.05, 150.0, float("nan"), np.array([1.0, 1e3]), torch.tensor([0.01])])
def test_tau_inverse_outside_range_raises(bad):
    with pytest.raises(ConfigError, match=r"tau_s = .*allowed range is \[0.1, 100\] s"):
        DEV.v_bias_for_tau(bad)


@pytest.mark.parametrize("bad", [-0.1, 0.61, float("nan"), torch.tensor([0.0, 0.7])])
def test_tau_of_bias_outside_range_raises(bad):
    with pytest.raises(ConfigError, match=r"v_bias = .*allowed range is \[0, 0.6\] V"):
        DEV.tau_s(bad)


# ---- decay ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_decay_matches_closed_form_for_arbitrary_dt(dtype):
    g = gen(1)
    shape = (2, 3, 5)
    g_st = (torch.rand(shape, generator=g, dtype=dtype) * 2 - 1) * DEV.st_g_max_s
    v = torch.rand(shape, generator=g, dtype=dtype) * DEV.v_bias_max_v
    for dt in (0.0, 1e-9, 1 / 15, 0.37, 12.5, 1e3, 1e6):
        got = D.decay(g_st, v, dt, DEV)
        want = g_st.double() * torch.exp(-dt / DEV.tau_s(v.double()))
        assert got.dtype == dtype and got.shape == shape
        f32 = dtype == torch.float32  # float32: relative accuracy, underflow below 1e-37 S to 0
        assert allclose(got.double(), want, rtol=1e-5 if f32 else 1e-12, atol=1e-37 if f32 else 0)
    dt_t = torch.rand(shape, generator=g, dtype=dtype) * 50  # per-element dt
    want = g_st.double() * torch.exp(-dt_t.double() / DEV.tau_s(v.double()))
    assert allclose(D.decay(g_st, v, dt_t, DEV).double(), want, rtol=1e-5, atol=1e-37)


def test_decay_two_half_steps_equal_one_step_and_lambda():
    g_st = torch.linspace(-DEV.st_g_max_s, DEV.st_g_max_s, 11, dtype=F64)
    v = torch.linspace(0, 0.6, 11, dtype=F64)
    for dt in (0.01, 1 / 15, 3.3, 250.0):
        full = D.decay(g_st, v, dt, DEV)
        half = D.decay(D.decay(g_st, v, dt / 2, DEV), v, dt / 2, DEV)
        assert allclose(full, half, rtol=1e-12, atol=1e-30)
        assert allclose(full, g_st * DEV.decay_lambda(dt, v), rtol=1e-14)
    assert DEV.lambda_for(1.0, 0.6) == approx(math.exp(-1.0 / 100.0))
    with pytest.raises(ConfigError, match="dt_s"):
        D.decay(g_st, v, -1.0, DEV)


# ---- energies ---------------------------------------------------------------------------------
def test_bias_power_reproduces_paper_4p3_nw():
    assert DEV.bias_power_w(DEV.g_min_s, 0.6) == approx(4.3e-9, rel=1e-12)
    assert 11.9e-9 <= DEV.g_min_s < 11.95e-9


def test_bias_energy_is_exact_integral_nonneg_and_additive():
    g = gen(2)
    g_lt = DEV.g_min_s + torch.rand(4, 6, generator=g, dtype=F64) * DEV.g_range_s
    g_st = (torch.rand(4, 6, generator=g, dtype=F64) * 2 - 1) * DEV.st_g_max_s
    v = torch.rand(4, 6, generator=g, dtype=F64) * 0.6
    dt = 0.8
    e = D.bias_energy_j(g_lt, g_st, v, dt, DEV)
    assert bool((e >= 0).all())
    # numerical integral of V^2 (g_lt + |g_st(t)|) (trapezoid, fine grid)
    t = torch.linspace(0, dt, 20001, dtype=F64)
    gt = g_lt[..., None] + g_st.abs()[..., None] * torch.exp(-t / DEV.tau_s(v)[..., None])
    num = torch.trapezoid(v[..., None] ** 2 * gt, t, dim=-1)
    assert allclose(e, num, rtol=1e-8)
    # additivity over sub-intervals (with the decayed state at the split)
    for dt1, dt2 in ((0.3, 0.5), (1e-6, 40.0), (5.0, 5.0)):
        e12 = D.bias_energy_j(g_lt, g_st, v, dt1 + dt2, DEV)
        e1 = D.bias_energy_j(g_lt, g_st, v, dt1, DEV)
        e2 = D.bias_energy_j(g_lt, D.decay(g_st, v, dt1, DEV), v, dt2, DEV)
        assert allclose(e1 + e2, e12, rtol=1e-12)
    assert allclose(D.bias_energy_j(g_lt, g_st, v, dt, DEV, reduce=True), e.sum())
    assert torch.equal(D.bias_energy_j(g_lt, -g_st, v, dt, DEV), e)  # sign = which device, same power
    assert float(D.bias_energy_j(g_lt, g_st, 0.0, dt, DEV).abs().max()) == 0.0


def test_read_power_law_is_ohmic_and_linear_in_g():
    assert DEV.read_power_w(50e-9, 0.6) == approx(0.36 * 50e-9, rel=1e-15)
    assert DEV.bias_power_w(50e-9, 0.3) == approx(0.09 * 50e-9, rel=1e-15)
    assert DEV.is_ohmic()


# ---- short-term power law and quantiser -------------------------------------------------------
def test_power_law_slope_and_levels():
    e = torch.logspace(-14, -10, 9, dtype=F64)
    dg = DEV.st_dg_s(e)
    slope = torch.diff(torch.log(dg)) / torch.diff(torch.log(e))
    assert allclose(slope, torch.full_like(slope, DEV.st_b), rtol=1e-12)
    energies, dgs = DEV.short_term_levels()
    assert list(energies) == sorted(energies) and list(dgs) == sorted(dgs)
    for (v, t), en, d in zip(DEV.sorted_pulse_levels(), energies, dgs):
        assert en == approx(v**2 * DEV.st_pulse_conductance_s * t)
        assert d == approx(DEV.st_a * en**DEV.st_b)
    # sto_2024 calibration: pJ-scale pulses give a few % of the long-term window per pulse
    assert 1e-13 <= energies[0] and energies[-1] <= 1e-11
    assert all(0.01 <= d / DEV.g_range_s <= 0.05 for d in dgs)


def test_quantiser_gives_nearest_level_or_sparse_zero():
    _, dgs = DEV.short_term_levels()
    table = torch.tensor((0.0,) + dgs, dtype=F64)
    delta = (torch.rand(20000, generator=gen(3), dtype=F64) * 2 - 1) * 1.5 * dgs[-1]
    idx, ach = D.quantise_short_term(delta, DEV)
    assert idx.dtype == torch.int8 and ach.dtype == F64
    assert torch.equal(ach, torch.sign(idx.double()) * table[idx.abs().long()])  # one of the levels
    assert bool((torch.sign(idx) * torch.sign(delta) >= 0).all())  # sign follows the request
    # nearest among {0} U levels of the request's sign (ties excluded by the random draw)
    cand = torch.sign(delta)[:, None] * table[None, :]
    best = (cand - delta[:, None]).abs().min(dim=1).values
    assert allclose((ach - delta).abs(), best, rtol=0, atol=1e-24)
    small = delta.abs() < dgs[0] / 2
    assert bool(small.any()) and bool((idx[small] == 0).all()) and bool((idx[~small] != 0).all())
    big = delta.abs() > dgs[-1]
    assert bool((idx[big].abs() == len(dgs)).all())
    edge, _ = D.quantise_short_term(torch.tensor([dgs[0] / 2, -dgs[0] / 2, 0.0], dtype=F64), DEV)
    assert edge.tolist() == [1, -1, 0]
    with pytest.raises(ConfigError, match="delta_g"):
        D.quantise_short_term(torch.tensor([float("nan")]), DEV)


def test_apply_short_term_window_energy_and_input_checks():
    energies, dgs = DEV.short_term_levels()
    L = len(dgs)
    idx = torch.tensor([0, 1, -1, L, -L], dtype=torch.int8)
    new, e = D.apply_short_term(torch.zeros(5, dtype=F64), idx, DEV)
    assert allclose(new, torch.tensor([0.0, dgs[0], -dgs[0], dgs[-1], -dgs[-1]], dtype=F64))
    assert allclose(e, torch.tensor([0.0, energies[0], energies[0], energies[-1], energies[-1]], dtype=F64))
    g_st = torch.zeros(5, dtype=F64)
    for _ in range(50):  # hammer with the largest pulse: saturates at the window
        g_st, e = D.apply_short_term(g_st, idx, DEV)
    assert float(g_st.abs().max()) == approx(DEV.st_g_max_s) and float(g_st.abs().max()) <= DEV.st_g_max_s
    with pytest.raises(ConfigError, match="level_idx"):
        D.apply_short_term(g_st, torch.tensor([0, 0, 0, 0, L + 1]), DEV)
    with pytest.raises(ConfigError, match="g_st"):  # user state outside the window is not clamped
        D.apply_short_term(torch.full((5,), 2 * DEV.st_g_max_s, dtype=F64), idx, DEV)
    with pytest.raises(ConfigError, match="level_idx"):
        D.apply_short_term(g_st, idx.double(), DEV)


# ---- long-term pulses -------------------------------------------------------------------------
def test_ideal_long_term_steps_are_linear_and_exact():
    d = ideal()
    g0 = torch.full((7,), d.g_min_s + 40 * d.lt_dg_s, dtype=F64)
    n = torch.tensor([0, 1, -1, 5, -5, 30, -30])
    g1, e = D.apply_long_term(g0, n, d)
    assert allclose(g1, g0 + n.double() * d.lt_dg_s, rtol=0, atol=1e-21)
    assert torch.equal(e, n.abs().double() * d.lt_pulse_energy_j)
    top, _ = D.apply_long_term(g0, torch.full((7,), 1000), d)
    bot, _ = D.apply_long_term(g0, torch.full((7,), -1000), d)
    assert bool((top == d.g_max_s).all()) and bool((bot == d.g_min_s).all())


def test_long_term_soft_bounds_asymmetry_and_composition():
    d = dataclasses.replace(DEV, lt_c2c_std=0.0)
    centre = torch.tensor([d.g_min_s + 0.5 * d.g_range_s], dtype=F64)
    up, _ = D.apply_long_term(centre, torch.tensor([1]), d)
    dn, _ = D.apply_long_term(centre, torch.tensor([-1]), d)
    assert float(up - centre) == approx(d.lt_dg_s, rel=0.02)  # mean step at the centre
    assert float(centre - dn) == approx(d.lt_up_down * d.lt_dg_s, rel=0.02)
    g = torch.linspace(d.g_min_s, d.g_max_s - 5e-9, 20, dtype=F64)
    step_up = D.apply_long_term(g, torch.ones(20, dtype=torch.long), d)[0] - g
    assert bool((torch.diff(step_up) < 0).all())  # LTP step shrinks toward g_max
    assert float(step_up[0] / step_up[-1]) > 3.0
    g = torch.linspace(d.g_min_s + 5e-9, d.g_max_s, 20, dtype=F64)
    step_dn = g - D.apply_long_term(g, -torch.ones(20, dtype=torch.long), d)[0]
    assert bool((torch.diff(step_dn) > 0).all())  # LTD step shrinks toward g_min
    # n pulses at once == n single pulses (closed form along the pulse coordinate)
    g0 = torch.full((3,), d.g_min_s + 0.2 * d.g_range_s, dtype=F64)
    n = torch.tensor([17, -9, 0])
    many, _ = D.apply_long_term(g0, n, d)
    seq = g0.clone()
    for k in range(17):
        seq, _ = D.apply_long_term(seq, (n.sign() * (n.abs() > k)).long(), d)
    assert allclose(many, seq, rtol=1e-10)
    assert many[2] == g0[2]  # no pulse: untouched


def test_long_term_noise_statistics_and_reproducibility():
    d = DEV
    centre = torch.full((40000,), d.g_min_s + 0.5 * d.g_range_s, dtype=F64)
    one = torch.ones(40000, dtype=torch.long)
    g1, _ = D.apply_long_term(centre, one, d, gen(4))
    steps = (g1 - centre) / d.lt_dg_s
    assert float(steps.mean()) == approx(1.0, abs=0.02)
    assert float(steps.std()) == approx(d.lt_c2c_std, rel=0.05)
    g1b, _ = D.apply_long_term(centre, one, d, gen(4))
    assert torch.equal(g1, g1b)
    f = D.draw_d2d((40000,), d, gen(5), F64)
    assert bool((f > 0).all())
    assert float(f.mean()) == approx(1.0, abs=0.01) and float(f.std()) == approx(d.lt_d2d_std, rel=0.05)
    assert torch.equal(D.draw_d2d((3,), ideal()), torch.ones(3))
    g2, _ = D.apply_long_term(centre, one, dataclasses.replace(d, lt_c2c_std=0.0), d2d=f)
    assert allclose((g2 - centre) / d.lt_dg_s, f, rtol=0.03)  # d2d scales the step


def test_long_term_input_checks():
    g = torch.full((2,), DEV.g_min_s)
    with pytest.raises(ConfigError, match="n_pulses"):
        D.apply_long_term(g, torch.tensor([0.5, 1.0]), DEV)
    with pytest.raises(ConfigError, match=r"^g spans"):  # outside the window: raise, never clamp
        D.apply_long_term(torch.tensor([DEV.g_max_s * 1.5, DEV.g_min_s]), torch.tensor([1, 1]), DEV)


# ---- read -------------------------------------------------------------------------------------
def test_read_noise_variance_law():
    g = torch.tensor([0.0, 10e-9, 50e-9], dtype=F64)
    assert torch.equal(DEV.read_noise_var_s2(g), g * g * DEV.read_noise_std**2)
    assert float(ideal().read_noise_var_s2(g).abs().max()) == 0.0


# ---- stability --------------------------------------------------------------------------------
def test_stable_over_1e6_device_steps_and_1e6_pulse_horizons():
    """1e6 device-steps (2500 sequential steps x 400 devices) of every event on a stressed device,
    plus single closed-form calls spanning 1e6 pulses and 1e6 agent steps of decay."""
    torch.set_num_threads(1)
    d = dataclasses.replace(DEV, lt_c2c_std=2.0, lt_d2d_std=1.0, lt_nonlinearity=8.0, tau_min_s=1e-3,
                            tau_max_s=1e6)
    g = gen(8)
    arr = D.STOArray((400,), d, dtype=torch.float32, generator=g,
                     v_bias=torch.rand(400, generator=g) * d.v_bias_max_v)
    L = len(d.st_pulse_levels)
    levels = torch.randint(0, L + 1, (2500, 400), generator=g, dtype=torch.int8)
    n_lt = torch.randint(-40, 41, (2500, 400), generator=g)
    dts = torch.rand(2500, generator=g).double() ** 4 * 100.0
    lo = torch.full((400,), math.inf)
    hi = torch.full((400,), -math.inf)
    st_hi = torch.zeros(400)
    energy = 0.0
    for k in range(2500):
        energy += arr.pulse_short_term(levels[k])
        energy += arr.pulse_long_term(n_lt[k])
        energy += arr.decay(float(dts[k]))
        lo, hi = torch.minimum(lo, arr.g_lt), torch.maximum(hi, arr.g_lt)
        st_hi = torch.maximum(st_hi, arr.g_st)
    assert math.isfinite(energy) and energy > 0
    # the window in float32 is the float32-rounded window
    g_min32, g_max32, st_max32 = (float(torch.tensor(x, dtype=torch.float32))
                                  for x in (d.g_min_s, d.g_max_s, d.st_g_max_s))
    assert float(lo.min()) >= g_min32 and float(hi.max()) <= g_max32
    assert float(lo.min()) == g_min32 and float(hi.max()) == g_max32  # the stress run did hit both bounds
    assert float(st_hi.max()) <= st_max32 and float(arr.g_st.min()) >= 0
    assert bool(torch.isfinite(arr.g_lt).all() and torch.isfinite(arr.g_st).all())
    # one call: 1e6 pulses either way, from anywhere in the window
    g0 = torch.linspace(d.g_min_s, d.g_max_s, 101)
    for n in (10**6, -(10**6)):
        for dev in (d, ideal()):
            g1, e = D.apply_long_term(g0, torch.full((101,), n), dev, gen(9))
            assert bool(torch.isfinite(g1).all()) and float(g1.min()) >= g_min32 and float(g1.max()) <= g_max32
            assert float(e.min()) == approx(10**6 * dev.lt_pulse_energy_j, rel=1e-6)
    # one call: 1e6 agent steps of decay (exact, float32), extreme biases
    g_st = torch.full((3,), d.st_g_max_s)
    v = torch.tensor([0.0, 0.3, 0.6])
    out = D.decay(g_st, v, 1e6 / 15, d)
    assert bool(torch.isfinite(out).all()) and bool((out >= 0).all()) and bool((out <= g_st).all())
    assert bool(torch.isfinite(D.bias_energy_j(arr.g_lt[:3], g_st, v, 1e6 / 15, d)).all())


def test_stoarray_events_match_functions():
    d = DEV
    arr = D.STOArray((4,), d, dtype=F64, generator=gen(10), g_init_s=50e-9, v_bias=0.3)
    e = arr.pulse_short_term(torch.tensor([0, 1, 2, 4], dtype=torch.int8))
    assert e == approx(sum(d.short_term_levels()[0][i] for i in (0, 1, 3)))
    g_lt, g_st = arr.g_lt.clone(), arr.g_st.clone()
    e_bias = arr.decay(2.0)
    assert e_bias == approx(float(D.bias_energy_j(g_lt, g_st, 0.3, 2.0, d).sum()))
    assert allclose(arr.g_st, D.decay(g_st, 0.3, 2.0, d))
    level, _ = arr.update_short_term(torch.tensor([0.0, 1e-10, 2e-9, 9e-9], dtype=F64))
    assert level.tolist() == [0, 0, 2, 4]
    with pytest.raises(ConfigError, match="single device"):
        arr.pulse_short_term(torch.tensor([0, -1, 0, 0]))
    with pytest.raises(ConfigError, match="v_bias"):
        arr.set_bias(0.9)
    with pytest.raises(ConfigError, match="g_init_s"):
        D.STOArray((2,), d, g_init_s=1e-6)


# ---- presets ----------------------------------------------------------------------------------
def test_sto_2024_paper_values():
    d = sto_2024()
    assert d == STODevice()
    assert d.g_max_s == 100e-9 and d.tau_max_s == 100.0 and d.v_bias_max_v == 0.6
    assert 0.1 <= d.tau_min_s <= 1.0
    for f in dataclasses.fields(d):  # every parameter has a source, paper or assumption
        assert d.source(f.name)


def test_ideal_preset_properties():
    d = ideal()
    assert d.name == "ideal"
    assert d.lt_c2c_std == d.lt_d2d_std == d.read_noise_std == 0.0
    assert d.lt_nonlinearity == 0.0 and d.lt_up_down == 1.0
    # decay effectively off: Lambda is exactly 1 in float32 over an agent step at any bias
    v = torch.linspace(d.v_bias_min_v, d.v_bias_max_v, 7)
    g_st = torch.full((7,), 3e-9)
    assert torch.equal(D.decay(g_st, v, 1 / 15, d), g_st)
    assert d.short_term_levels() == DEV.short_term_levels()
    assert d.g_min_s == DEV.g_min_s and d.g_max_s == DEV.g_max_s
    assert "ideal preset" in d.source("read_noise_std")


def test_get_preset():
    assert set(PRESETS) == {"sto_2024", "ideal", "zhong_2021"}  # zhong_2021: the second device (issue 19)
    assert get_preset("ideal") == ideal() and get_preset("sto_2024") == sto_2024()
    with pytest.raises(ConfigError, match=r"preset = 'pcm'.*sto_2024.*ideal"):
        get_preset("pcm")
    with pytest.raises(ConfigError, match=r"^--device = 'cuda': that is a torch device.*--torch-device"):
        get_preset("cuda", "--device")  # never imported as a module (no ':factory')


# ---- figures ----------------------------------------------------------------------------------
def test_describe_lists_every_field_with_source():
    text = describe(DEV)
    for f in dataclasses.fields(DEV):
        if f.name != "notes":
            assert f.name in text
    assert "docs/paper.md" in text and "assumption" in text and "nS" in text
    assert "ideal preset" in describe(ideal())


def test_device_figure_written_atomically(tmp_path):
    path = tmp_path / "dev.png"
    assert device_figure(DEV, str(path)) == str(path)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000
    assert os.listdir(tmp_path) == ["dev.png"]  # no temporary file left
