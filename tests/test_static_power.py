"""Static power and power gating (issue 17 point 4): per-block leakage booked over every decay interval."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stoxbar.core.validation import ConfigError
from stoxbar.crossbar import costs
from stoxbar.crossbar.events import Events
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig, PowerGating, StaticPower

DEV = presets.sto_2024()


def _events(dt=1 / 15, chips=1, intervals=1, bias=False):
    held = 2 * 100 * 10 * dt * chips if bias else 0.0
    return Events("decay", 100, 10, dt_s=dt * intervals, chip_s=chips * dt * intervals, bias_held_s=held,
                  bias_energy_j=1e-9 if bias else 0.0, bias_line_s=chips * dt if bias else 0.0,
                  chip_intervals=chips * intervals)


def test_tile_static_power_by_hand_from_the_sources():
    p = PeripheryConfig()
    gated, always = p.static_power_w()
    # 512 x 512 tile, 1024 physical columns converted: 128 ADCs x 0.2 mW (PUMA), 512 DACs x 0.39 uW (PUMA),
    # 1024 x (S+H 0.97 nW (PUMA) + TIA 2 uW), 512 read + 1536 write drivers x 1 nW, 2 buffers x 0.075 mW (PUMA)
    expect = 128 * 0.2e-3 + 512 * 0.390625e-6 + 1024 * (9.7e-10 + 2e-6) + 2048 * 1e-9 + 2 * 0.075e-3
    assert gated == pytest.approx(expect, rel=1e-12)
    assert always == pytest.approx(1e-6)
    assert gated == pytest.approx(0.02800104128, rel=1e-12)  # golden: 28.0 mW per tile ungated


def test_leakage_is_booked_over_the_interval_gated_or_not_and_is_additive():
    p = PeripheryConfig()
    gated, always = p.static_power_w()
    c = costs.cost(_events(chips=2), DEV, p)
    assert c.parts["leakage"][1] == pytest.approx((0.02 * gated + always) * 2 / 15, rel=1e-12)
    assert c.parts["power_gating_wake"] == (2, pytest.approx(2 * gated * 20e-9, rel=1e-12))
    off = replace(p, power_gating=PowerGating(enabled=False))
    c_off = costs.cost(_events(chips=2), DEV, off)
    assert c_off.parts["leakage"][1] == pytest.approx((gated + always) * 2 / 15, rel=1e-12)
    assert "power_gating_wake" not in c_off.parts
    # additive over intervals, non-negative, and booked without a held bias (leakage does not need one)
    two = costs.cost(_events(intervals=2), DEV, p)
    one = costs.cost(_events(), DEV, p)
    for k in ("leakage", "power_gating_wake"):
        assert two.parts[k][1] == pytest.approx(2 * one.parts[k][1], rel=1e-12)
    assert all(n >= 0 and e >= 0 for n, e in two.parts.values())
    assert "bias" not in one.parts and one.latency_s == pytest.approx(1 / 15)
    # with a held bias the bias parts are added beside the leakage
    both = costs.cost(_events(bias=True), DEV, p)
    assert {"bias", "bias_driver", "leakage"} <= set(both.parts)


def test_each_wake_up_delays_the_step_by_its_wake_time():
    from stoxbar.crossbar.ledger import EnergyLedger

    p = replace(PeripheryConfig(), power_gating=PowerGating(wake_time_s=25e-9))
    for bias in (False, True):
        led = EnergyLedger()
        costs.book(led, "stp", "0.0", costs.cost(_events(chips=2, intervals=3, bias=bias), DEV, p))
        assert led.latency_s(component="power_gating_wake") == pytest.approx(6 * 25e-9, rel=1e-12)  # 2 chips x 3
    led = EnergyLedger()
    costs.book(led, "stp", "0.0", costs.cost(_events(chips=2), DEV, replace(p, power_gating=PowerGating(enabled=False))))
    assert led.latency_s(component="power_gating_wake") == 0.0


def test_static_power_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"power_gating.residual = 1.5: allowed range is \[0, 1\]"):
        PowerGating(residual=1.5)
    with pytest.raises(ConfigError, match=r"static.adc_w = -1"):
        StaticPower(adc_w=-1.0)
    with pytest.raises(ConfigError, match="power_gating.enabled"):
        PowerGating(enabled="yes")
    with pytest.raises(ConfigError, match="static"):
        PeripheryConfig(static=3)
