"""Lookup-table LTP/LTD device (``STODevice.lt_table``, ``lt_table_ltd``): the measured curve replaces the
analytic soft bound. A table sampled from the analytic curve is that device exactly; an asymmetric LTD
table is followed pulse by pulse; bad tables are refused naming the field; ``stoxbar fit --lt-table``
recovers a table from a pulse train; device files carry the tables."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.devices import presets

BASE = presets.sto_2024().without_noise()
NU, N = 2.0, 60


def _analytic_and_table():
    centre = (NU / 2) / math.tanh(NU / 2)
    ana = replace(BASE, lt_dg_s=BASE.g_range_s * centre / N, lt_up_down=1.0)  # advance exactly 1/N per pulse
    tab = [math.expm1(-NU * k / N) / math.expm1(-NU) for k in range(N + 1)]
    lut = replace(ana, lt_nonlinearity=0.0, lt_table=(0.0, *tab[1:-1], 1.0))
    return ana, lut


def test_a_table_sampled_from_the_analytic_curve_is_that_device():
    ana, lut = _analytic_and_table()
    assert lut.lt_pulse_coordinate_step() == pytest.approx(ana.lt_pulse_coordinate_step(), rel=1e-12)
    g = torch.full((5,), BASE.g_min_s, dtype=torch.float64)
    n = torch.tensor([1.0, 5.0, 17.0, 60.0, 80.0], dtype=torch.float64)
    up = ana.long_term_response(g, n)
    assert torch.allclose(lut.long_term_response(g, n), up, rtol=1e-12, atol=0)
    down = torch.tensor([-3.0, -10.0, -5.0, -30.0, -2.0], dtype=torch.float64)
    assert torch.allclose(lut.long_term_response(up, down), ana.long_term_response(up, down), rtol=1e-12, atol=0)
    target = torch.linspace(BASE.g_min_s, BASE.g_max_s, 11, dtype=torch.float64)
    assert torch.equal(lut.ltp_pulses_for(target), ana.ltp_pulses_for(target))


def test_an_asymmetric_ltd_table_is_followed_pulse_by_pulse_and_noise_keeps_the_window():
    ltd = tuple(float(x) for x in np.linspace(0.0, 1.0, 11) ** 0.5)  # 10 LTD pulses, large steps first
    dev = replace(BASE, lt_nonlinearity=0.0, lt_table=tuple(float(x) for x in np.linspace(0.0, 1.0, 41)),
                  lt_table_ltd=ltd)
    assert dev.lt_pulse_coordinate_step() == pytest.approx((1 / 40, 1 / 10))
    g = torch.full((11,), BASE.g_max_s, dtype=torch.float64)
    out = dev.long_term_response(g, -torch.arange(11, dtype=torch.float64))
    assert torch.allclose(out, torch.tensor([BASE.g_max_s - x * BASE.g_range_s for x in ltd], dtype=torch.float64),
                          rtol=1e-12)
    noisy = replace(dev, lt_c2c_std=0.3)
    gen = torch.Generator().manual_seed(0)
    g = torch.full((4000,), BASE.g_min_s, dtype=torch.float64)
    res = noisy.long_term_response(g, torch.full((4000,), 20.0, dtype=torch.float64), generator=gen)
    assert float(res.min()) >= BASE.g_min_s and float(res.max()) <= BASE.g_max_s
    assert float(res.mean()) == pytest.approx(BASE.g_min_s + 0.5 * BASE.g_range_s, rel=0.02)  # 20 of 40 pulses


@pytest.mark.parametrize("changes, match", [
    (dict(lt_table=(0.0, 0.5)), r"lt_table: must be 3..100000 finite numbers"),
    (dict(lt_table=(0.1, 0.5, 1.0)), r"lt_table: must start at 0 and end at 1"),
    (dict(lt_table=(0.0, 0.6, 0.5, 1.0)), r"lt_table\[2\] = 0.5 < lt_table\[1\] = 0.6: a pulse train must not move"),
    (dict(lt_table_ltd=(0.0, 0.5, 1.0)), r"lt_table_ltd is given without lt_table"),
    (dict(lt_table=(0.0, 0.5, 1.0), lt_nonlinearity=2.0), r"lt_nonlinearity = 2.0: not used with lt_table"),
])
def test_a_bad_lookup_table_is_refused_naming_the_field(changes, match):
    changes.setdefault("lt_nonlinearity", 0.0)
    with pytest.raises(ConfigError, match=match):
        replace(BASE, **changes)


def test_a_lookup_table_device_round_trips_a_device_file_and_programs_a_chip(tmp_path):
    from stoxbar.crossbar.state import CrossbarState
    from stoxbar.devices.figures import describe
    from stoxbar.devices.files import write_device_file

    _, lut = _analytic_and_table()
    lut = replace(lut, name="lut")
    path = write_device_file(lut, tmp_path / "lut.toml")
    back = presets.get_preset(str(path))
    assert back.lt_table == lut.lt_table and replace(back, notes=()) == replace(lut, notes=())
    st = CrossbarState([8], 4, back, dtype=torch.float64)
    w = torch.linspace(-1, 1, 32, dtype=torch.float64).view(4, 8)
    st.program(w, mode="open_loop", generator=torch.Generator().manual_seed(0))
    assert float((st.weights()[0] - w).abs().max()) < 2.0 / N  # within about a pulse of the curve's steepest step
    line = next(x for x in describe(back).splitlines() if x.startswith("lt_table "))
    assert "61 points" in line and "..." in line


def test_fit_lt_table_recovers_the_measured_curve(tmp_path):
    from stoxbar.devices.fit import fit_device

    truth = replace(BASE, lt_nonlinearity=0.0, lt_table=tuple(float(x) for x in np.linspace(0, 1, 81) ** 0.7),
                    lt_table_ltd=tuple(float(x) for x in np.linspace(0, 1, 61) ** 0.5))
    g, rows = torch.tensor([truth.g_min_s], dtype=torch.float64), []
    rng = np.random.default_rng(4)
    for k in range(140):  # 80 LTP then 60 LTD pulses, 0.05 nS read noise
        sign = 1.0 if k < 80 else -1.0
        g = truth.long_term_response(g, torch.tensor([sign], dtype=torch.float64))
        rows.append(f"{k},{3.0 * sign},1e-05,{float(g) + rng.normal(0.0, 0.05e-9)!r}")
    (tmp_path / "pulses.csv").write_text("index,amplitude_v,width_s,g_s\n" + "\n".join(rows) + "\n")
    d = fit_device(tmp_path, BASE, "lut", lt_table=True).device
    assert len(d.lt_table) == 81 and len(d.lt_table_ltd) == 61 and d.lt_nonlinearity == 0.0
    assert np.abs(np.array(d.lt_table) - np.array(truth.lt_table)).max() < 0.03
    assert np.abs(np.array(d.lt_table_ltd) - np.array(truth.lt_table_ltd)).max() < 0.03
    assert d.g_max_s == pytest.approx(truth.g_max_s, rel=0.01) and "LTP run" in d.source("lt_table")
