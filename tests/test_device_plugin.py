"""A second device model, defined entirely in this file, runs on the substrate unchanged.

``ToyDevice`` differs from the STO model in every law the substrate uses: a microsiemens window,
linear long-term steps, a short-term increment linear in pulse energy, a *hyperbolic* decay
``Lambda = 1 / (1 + dt / tau)`` and a *linear, decreasing* bias law ``tau(V)``. It is one class
plus one preset (``toy_preset``, registered with ``register_preset``): no other file is edited,
and STORPUConfig + aihwkit's AnalogLinear give a forward pass, short-term pulses, decay, bias and
programming energy computed from the toy's laws. (The values are made up for the test; they
describe no real device.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Tuple

import pytest
import torch
from aihwkit.nn import AnalogLinear

from stoxbar.crossbar import CrossbarState, EnergyLedger, attach_ledger
from stoxbar.devices import PRESETS, MemristiveDevice, STORPUConfig, get_preset, register_preset
from stoxbar.devices import dynamics
from stoxbar.peripherals import PeripheryConfig
from stoxbar.validation import ConfigError, check_range


@dataclass(frozen=True)
class ToyDevice(MemristiveDevice):
    """Test-only device: linear steps, linear short-term law, hyperbolic decay, linear tau(V)."""

    name: str = "toy_linear"
    g_min_s: float = field(default=1e-6, metadata={"unit": "uS", "scale": 1e6, "source": "test value"})
    g_max_s: float = field(default=10e-6, metadata={"unit": "uS", "scale": 1e6, "source": "test value"})
    lt_dg_s: float = field(default=0.1e-6, metadata={"unit": "uS", "scale": 1e6, "source": "test value"})
    lt_pulse_v: float = field(default=2.0, metadata={"unit": "V", "scale": 1.0, "source": "test value"})
    lt_pulse_width_s: float = field(default=1e-6, metadata={"unit": "us", "scale": 1e6, "source": "test value"})
    st_k_s_per_j: float = field(default=1e5, metadata={"unit": "S/J", "scale": 1.0, "source": "test value"})
    st_pulse_levels: Tuple[Tuple[float, float], ...] = field(
        default=((1.0, 1e-6), (1.0, 3e-6)), metadata={"unit": "(V, s)", "scale": 1.0, "source": "test value"})
    st_g_max_s: float = field(default=4e-6, metadata={"unit": "uS", "scale": 1e6, "source": "test value"})
    v_bias_min_v: float = field(default=0.0, metadata={"unit": "V", "scale": 1.0, "source": "test value"})
    v_bias_max_v: float = field(default=1.0, metadata={"unit": "V", "scale": 1.0, "source": "test value"})
    tau_min_s: float = field(default=0.5, metadata={"unit": "s", "scale": 1.0, "source": "test value"})
    tau_max_s: float = field(default=5.0, metadata={"unit": "s", "scale": 1.0, "source": "test value"})
    v_read_v: float = field(default=0.2, metadata={"unit": "V", "scale": 1.0, "source": "test value"})
    t_read_s: float = field(default=10e-9, metadata={"unit": "ns", "scale": 1e9, "source": "test value"})
    read_noise_std: float = field(default=0.0, metadata={"unit": "rel", "scale": 1.0, "source": "test value"})

    def __post_init__(self) -> None:
        check_range("tau_min_s", self.tau_min_s, 0.0, None, lo_open=True, unit="s")
        self.check_contract()

    @property
    def lt_pulse_energy_j(self) -> float:
        return self.lt_pulse_v**2 * self.g_max_s * self.lt_pulse_width_s

    def long_term_response(self, g, n_pulses, generator=None, d2d=None):
        return g + n_pulses * self.lt_dg_s * (1.0 if d2d is None else d2d.to(g.dtype))

    def ltp_pulses_for(self, g_target):
        return torch.round((g_target - self.g_min_s) / self.lt_dg_s)

    def st_pulse_energy_j(self, v_pulse_v: Any, width_s: Any) -> Any:
        return v_pulse_v**2 * self.g_max_s * width_s

    def st_dg_s(self, energy_j: Any) -> Any:
        return self.st_k_s_per_j * energy_j

    def _frac(self, v_bias: Any) -> Any:
        lo, hi = float(torch.as_tensor(v_bias).min()), float(torch.as_tensor(v_bias).max())
        if lo < self.v_bias_min_v - 1e-6 or hi > self.v_bias_max_v + 1e-6:
            raise ConfigError(f"v_bias = [{lo:g}, {hi:g}]: allowed range is [{self.v_bias_min_v:g}, "
                              f"{self.v_bias_max_v:g}] V")
        return (v_bias - self.v_bias_min_v) / (self.v_bias_max_v - self.v_bias_min_v)

    def tau_s(self, v_bias: Any) -> Any:  # linear, *decreasing* with bias (STO: log-linear, increasing)
        return self.tau_max_s - (self.tau_max_s - self.tau_min_s) * self._frac(v_bias)

    def v_bias_for_tau(self, tau_s: Any) -> Any:
        frac = (self.tau_max_s - tau_s) / (self.tau_max_s - self.tau_min_s)
        return self.v_bias_min_v + frac * (self.v_bias_max_v - self.v_bias_min_v)

    def decay_factor(self, dt_s: Any, v_bias: Any) -> Any:  # hyperbolic relaxation
        return 1.0 / (1.0 + dt_s / self.tau_s(v_bias))

    def tau_for_decay_factor(self, lam: Any, dt_s: Any) -> Any:
        return dt_s * lam / (1.0 - lam)

    def decay_integral_s(self, dt_s: Any, v_bias: Any) -> Any:
        tau = self.tau_s(v_bias)
        return tau * torch.log1p(dt_s / tau) if torch.is_tensor(dt_s) else tau * math.log1p(dt_s / tau)


def toy_preset() -> ToyDevice:
    """The one preset of the toy device."""
    return ToyDevice()


@pytest.fixture(autouse=True)
def _toy_registered():
    """Register the toy preset for each test, and leave the registry as it was afterwards."""
    saved = dict(PRESETS)
    register_preset("toy_linear", toy_preset, replace_existing=True)
    yield
    PRESETS.clear()
    PRESETS.update(saved)


def _config(**kw) -> STORPUConfig:
    dev = get_preset("toy_linear")
    p = PeripheryConfig()
    p = replace(p, dac=replace(p.dac, v_read_v=dev.v_read_v), **kw)  # the DAC drives the toy's read voltage
    cfg = STORPUConfig(device=dev, periphery=p)
    cfg.forward.is_perfect = True  # exact MVM: the test checks the device, not the converters
    return cfg


def test_contract_is_checked():
    assert isinstance(toy_preset(), MemristiveDevice)
    with pytest.raises(ConfigError, match="g_min_s"):
        ToyDevice(g_min_s=20e-6)
    with pytest.raises(ConfigError, match="st_g_max_s"):
        ToyDevice(st_g_max_s=2e-6)  # largest level (3 uS) does not fit
    @dataclass(frozen=True)
    class NoDecayLaw(ToyDevice):
        tau_s = MemristiveDevice.tau_s  # a device that forgot its bias law

    with pytest.raises(ConfigError, match="does not implement 'tau_s'"):
        NoDecayLaw()
    with pytest.raises(ConfigError, match="must return a MemristiveDevice"):
        register_preset("not_a_device", lambda: object())
    with pytest.raises(ConfigError, match="already registered"):
        register_preset("sto_2024", toy_preset)


def test_forward_programming_and_window_use_the_toy_physics():
    cfg = _config()
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    ledger = attach_ledger(layer, EnergyLedger(), book_pending=False)  # the constructor's programming stays pending
    torch.manual_seed(0)
    w = torch.rand(5, 12) * 2 - 1
    st = layer.analog_module.state
    before = (st.g_pos.clone(), st.g_neg.clone())  # the layer's initial random weights
    layer.set_weights(w)
    x = torch.rand(3, 12)
    assert torch.allclose(layer(x), x @ w.T, atol=1e-4)
    dev = cfg.device
    g = torch.cat([st.g_pos.flatten(), st.g_neg.flatten()])
    assert float(g.min()) >= dev.g_min_s * (1 - 1e-6) and float(g.max()) <= dev.g_max_s * (1 + 1e-6)
    assert float(g.max()) > 1e-6  # microsiemens: not the STO's sub-100 nS window
    # write-verify programming is booked with the toy's pulse count and energy
    expected = math.ceil(float((st.g_pos - before[0]).abs().sum() + (st.g_neg - before[1]).abs().sum())
                         / dev.lt_dg_s)
    prog = ledger.by_component()["lt_program"]
    n_prog = sum(e.count for k, e in ledger.items() if k[2] == "lt_program")
    assert abs(n_prog - expected) <= 1
    assert prog >= n_prog * dev.lt_pulse_energy_j * (1 - 1e-9)


def test_short_term_pulses_decay_and_bias_energy_follow_the_toy_laws():
    cfg = _config()
    dev = cfg.device
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    torch.manual_seed(1)
    layer.set_weights(torch.rand(5, 12) * 2 - 1)
    tile = layer.analog_module
    ledger = attach_ledger(layer, EnergyLedger())
    tile.set_batch(2)
    e_lv, dg_lv = dev.short_term_levels()
    assert dg_lv == pytest.approx((1e-6, 3e-6))  # dG = k E with E = V^2 G t = 1e-11, 3e-11 J
    request = (torch.rand(2, 5, 12) * 2 - 1) * 4e-6 / dev.g_range_s  # weight units
    level = tile.short_term_update(request)
    g_st = tile.state.g_st.clone()
    allowed = torch.tensor([0.0, 1e-6, 3e-6], dtype=g_st.dtype)  # one pulse per device per call
    assert torch.isclose(g_st.abs().unsqueeze(-1), allowed, rtol=1e-5, atol=1e-12).any(-1).all()
    n = int(torch.count_nonzero(level))
    assert n > 0
    pulse_e = ledger.by_component()["st_pulse"]
    energies = torch.tensor((0.0,) + e_lv, dtype=torch.float64)[level.abs().long()]
    assert pulse_e == pytest.approx(float(energies.sum()), rel=1e-6)

    v = torch.linspace(0.0, 1.0, 12).expand(5, 12).contiguous()
    tile.set_bias(v)
    dt = 0.8
    tile.decay(dt)
    tau = dev.tau_max_s - (dev.tau_max_s - dev.tau_min_s) * v  # the toy's bias law, written out
    lam = 1.0 / (1.0 + dt / tau)
    assert torch.allclose(tile.state.g_st, g_st * lam, rtol=1e-5, atol=1e-15)
    assert not torch.allclose(lam, torch.exp(-dt / tau))  # genuinely not the STO's exponential
    g_lt = (tile.state.g_pos + tile.state.g_neg)[0].double()
    held = (tau * torch.log1p(dt / tau)).double()
    bias_expected = float((v.double() ** 2 * (2 * g_lt * dt + g_st.abs().sum(0)[0].double() * held)).sum())
    assert ledger.by_component()["bias"] == pytest.approx(bias_expected, rel=1e-5)
    # the periphery around the toy's own laws: a write-driver charge per pulse fired, and bias drivers
    # drawing (1/efficiency - 1) of the toy's bias power plus their static draw on the tile's 12 + 5 lines
    comp = ledger.totals(("component",))
    assert set(comp) == {("lt_program",), ("st_pulse",), ("st_write_driver",), ("bias",), ("bias_driver",)}
    assert comp[("st_pulse",)].count == comp[("st_write_driver",)].count == n
    v_pulse = max(a for a, _ in dev.st_pulse_levels)
    wd, bd = cfg.periphery.write_driver, cfg.periphery.bias_driver
    assert comp[("st_write_driver",)].energy_j == pytest.approx(n * wd.short_term_pulse_j(v_pulse, 5), rel=1e-9)
    driver = comp[("bias",)].energy_j * (1 / bd.efficiency - 1) + bd.p_quiescent_w * (12 + 5) * 2 * dt
    assert comp[("bias_driver",)].energy_j == pytest.approx(driver, rel=1e-9)


def test_a_wanted_decay_factor_maps_to_a_bias_through_the_device_laws():
    dev, sto = toy_preset(), get_preset("sto_2024")
    dt = 0.25
    for d in (dev, sto):
        lam = torch.tensor([float(d.decay_factor(dt, d.v_bias_max_v)), float(d.decay_factor(dt, d.v_bias_min_v))],
                           dtype=torch.float64)
        v = d.v_bias_for_tau(d.tau_for_decay_factor(lam, dt))
        assert torch.allclose(torch.as_tensor(d.decay_factor(dt, v), dtype=torch.float64), lam, rtol=1e-9)
        assert torch.allclose(v, torch.tensor([d.v_bias_max_v, d.v_bias_min_v], dtype=torch.float64), atol=1e-9)


def test_open_loop_programming_uses_the_toy_pulse_model():
    dev = toy_preset()
    st = CrossbarState([12], 5, dev, dtype=torch.float64)
    w = torch.linspace(-1, 1, 60, dtype=torch.float64).reshape(5, 12)
    pulses, energy = st.program(w, "open_loop")
    target = dev.g_min_s + w.clamp_min(0) * dev.g_range_s
    assert torch.allclose(st.g_pos[0], target, atol=dev.lt_dg_s / 2 + 1e-15)
    assert energy == pytest.approx(pulses * dev.lt_pulse_energy_j)
    g, e = dynamics.apply_long_term(torch.full((3,), dev.g_max_s, dtype=torch.float64),
                                    torch.tensor([5, 0, -5]), dev)
    assert g.tolist() == pytest.approx([dev.g_max_s, dev.g_max_s, dev.g_max_s - 5 * dev.lt_dg_s])  # clipped, kept, LTD
    assert e.tolist() == pytest.approx([5 * dev.lt_pulse_energy_j, 0.0, 5 * dev.lt_pulse_energy_j])


def test_stoxbar_device_cli_takes_a_registered_or_module_preset(tmp_path, capsys):
    from stoxbar.scripts.cli import main

    assert main(["device", "--preset", "toy_linear", "--out", str(tmp_path / "toy.png")]) == 0
    out = capsys.readouterr().out
    assert "ToyDevice 'toy_linear'" in out and "st_k_s_per_j" in out
    assert (tmp_path / "toy.png").stat().st_size > 10_000
    assert main(["device", "--preset", f"{__name__}:toy_preset", "--out", str(tmp_path / "toy2.png")]) == 0
    with pytest.raises(ConfigError, match="cannot load factory"):
        get_preset("no_such_module_xyz:factory")


def test_training_with_a_device_lacking_the_sto_long_term_fields_is_a_clear_error():
    """aihwkit training's programming model needs lt_c2c_std / lt_up_down: a ConfigError names the missing one."""
    from stoxbar.crossbar.aihwkit_compat import device_field, write_verify_tolerance_s
    from stoxbar.validation import ConfigError

    class Bare:
        lt_dg_s = 1e-9

    with pytest.raises(ConfigError, match="no field 'lt_c2c_std': write-verify training"):
        write_verify_tolerance_s(Bare())
    with pytest.raises(ConfigError, match="no field 'lt_up_down': pulsed training"):
        device_field(Bare(), "lt_up_down", "pulsed training")
