"""The write path (issue 17 point 5): full physical lines, half-selected cells, the write phase's time."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from stoxbar.core.validation import ConfigError
from stoxbar.crossbar import costs
from stoxbar.crossbar.events import Events
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig

DEV = presets.sto_2024()


def _cost(p, counts):
    return costs.cost(Events("short_term", rows=10, cols=3, pulses_by_level=tuple(counts)), DEV, p)


@pytest.mark.parametrize("scheme", ["v2", "v3"])
def test_half_select_driver_and_time_by_hand_on_a_small_tile(scheme):
    p = replace(PeripheryConfig().with_tile(16, 4), write_scheme=scheme)  # 16 rows x 8 physical columns
    counts = (3, 0, 2, 1)
    c = _cost(p, counts)
    levels, energies = DEV.sorted_pulse_levels(), DEV.short_term_levels()[0]
    wd = p.write_driver
    e_dev = e_drv = e_half = t = 0.0
    for n, (v, w), e in zip(counts, levels, energies):
        if scheme == "v2":  # the selected row's 7 and column's 15 other cells at V/2; column swung by V/2
            half, n_half, swing = v / 2, 7 + 15, v / 2
        else:  # every other cell at V/3; the selected column swung from 2V/3 to 0
            half, n_half, swing = v / 3, 16 * 8 - 1, 2 * v / 3
        e_dev += n * e
        e_drv += n * ((0.2e-15 * 8 + 5e-15) * v**2 + (0.2e-15 * 16 + 5e-15) * swing**2 + 20e-15)
        e_half += n * n_half * half**2 * DEV.st_pulse_conductance_s * w
        t += n * (w + 1e-9)
    assert c.parts["st_pulse"] == (6.0, pytest.approx(e_dev, rel=1e-12))
    assert c.parts["st_write_driver"] == (6.0, pytest.approx(e_drv, rel=1e-12))
    assert c.parts["half_select"] == (6.0, pytest.approx(e_half, rel=1e-12))
    assert c.latency_s == pytest.approx(t, rel=1e-12) and c.time_component == "st_write_driver"
    assert all(v[1] >= 0 for v in c.parts.values())


def test_the_write_phase_adds_and_v3_half_selects_more_cells_at_a_lower_voltage():
    p2, p3 = PeripheryConfig(), replace(PeripheryConfig(), write_scheme="v3")
    one, two = _cost(p2, (1, 0, 0, 0)), _cost(p2, (2, 0, 0, 0))
    for k in ("st_pulse", "st_write_driver", "half_select"):  # additive in the pulses
        assert two.parts[k][1] == pytest.approx(2 * one.parts[k][1], rel=1e-12)
    assert two.latency_s == pytest.approx(2 * one.latency_s, rel=1e-12)
    # 512 x 1024: V/2 half-selects 1534 cells at 1/4 of the pulse's V^2; V/3 524,287 cells at 1/9
    ratio = _cost(p3, (1, 0, 0, 0)).parts["half_select"][1] / one.parts["half_select"][1]
    assert ratio == pytest.approx((512 * 1024 - 1) / 9 / (1534 / 4), rel=1e-12)
    # the disturb bound of docs/peripherals-energy.md §10: a half-selected cell's increment per V/2 event
    e_small = DEV.short_term_levels()[0][0]
    assert float(DEV.st_dg_s(e_small / 4)) / float(DEV.st_dg_s(e_small)) == pytest.approx(4 ** -DEV.st_b, rel=1e-9)


def test_bad_write_scheme_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="write_scheme = 'v4'"):
        PeripheryConfig(write_scheme="v4")
