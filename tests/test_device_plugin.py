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

from stoxbar.crossbar import CrossbarState, EnergyLedger, STORPUConfig, attach_ledger, flush_events
from stoxbar.devices import PRESETS, MemristiveDevice, get_preset, register_preset
from stoxbar.devices import dynamics
from stoxbar.peripherals import PeripheryConfig
from stoxbar.core.validation import ConfigError, check_range


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
    cfg = _config(bias_addressing="row_col")  # line drivers (the bias below varies along rows only: held exactly)
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
    flush_events(layer)
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
    flush_events(layer)
    g_lt = (tile.state.g_pos + tile.state.g_neg)[0].double()
    held = (tau * torch.log1p(dt / tau)).double()
    bias_expected = float((v.double() ** 2 * (2 * g_lt * dt + g_st.abs().sum(0)[0].double() * held)).sum())
    assert ledger.by_component()["bias"] == pytest.approx(bias_expected, rel=1e-5)
    # the periphery around the toy's own laws: a write-driver charge per pulse fired, and bias drivers
    # drawing (1/efficiency - 1) of the toy's bias power plus their static draw on the tile's 12 rows and
    # 2 x 5 physical columns (row_col addressing, issue 17)
    comp = ledger.totals(("component",))
    assert set(comp) == {("lt_program",), ("lt_half_select",), ("st_pulse",), ("st_write_driver",), ("half_select",),
                         ("bias",), ("bias_driver",), ("leakage",), ("power_gating_wake",)}  # static power (issue 17.4)
    # a programming pulse's half-selected cells take the toy's long-term pulse law at V/2 (ohmic default)
    assert comp[("lt_half_select",)].energy_j == pytest.approx(
        comp[("lt_half_select",)].count * (511 + 1023) * dev.lt_pulse_energy_j / 4, rel=1e-9)
    assert comp[("st_pulse",)].count == comp[("st_write_driver",)].count == comp[("half_select",)].count == n
    # the write path (issue 17.5): both levels are 1 V pulses; each charges the full physical row line of the
    # 512 x 512 tile (1024 columns) and swings its 512-cell column line by V/2; 1534 cells half-selected at
    # V/2 take the toy's own pulse law there (V^2 G t: a quarter of the pulse's)
    p = cfg.periphery
    wd, bd = p.write_driver, p.bias_driver
    per_pulse = wd.short_term_pulse_j(1.0, p.physical_cols()) + wd.line_capacitance_f(p.tile_rows) * 0.25
    assert comp[("st_write_driver",)].energy_j == pytest.approx(n * per_pulse, rel=1e-9)
    quarter = float(dev.st_pulse_energy_j(0.5, 1e-6)) / float(dev.st_pulse_energy_j(1.0, 1e-6))
    assert comp[("half_select",)].energy_j == pytest.approx(comp[("st_pulse",)].energy_j * 1534 * quarter, rel=1e-9)
    driver = comp[("bias",)].energy_j * (1 / bd.efficiency - 1) + bd.p_quiescent_w * (12 + 10) * 2 * dt
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
    from stoxbar.crossbar.programming import device_field, write_verify_tolerance_s
    from stoxbar.core.validation import ConfigError

    class Bare:
        lt_dg_s = 1e-9

    with pytest.raises(ConfigError, match="no field 'lt_c2c_std': write-verify training"):
        write_verify_tolerance_s(Bare())
    with pytest.raises(ConfigError, match="no field 'lt_up_down': pulsed training"):
        device_field(Bare(), "lt_up_down", "pulsed training")


# -- a non-ohmic device: every law the contract names is the one simulated and costed -------------
@dataclass(frozen=True)
class SinhToyDevice(ToyDevice):
    """The toy with a non-ohmic ``I = G V0 sinh(V / V0)`` and an additive read-noise floor (test values)."""

    name: str = "toy_sinh"
    v0_v: float = field(default=0.05, metadata={"unit": "V", "scale": 1.0, "source": "test value"})
    noise_floor_s: float = field(default=0.2e-6, metadata={"unit": "uS", "scale": 1e6, "source": "test value"})
    read_noise_std: float = field(default=0.02, metadata={"unit": "rel", "scale": 1.0, "source": "test value"})

    def _p1(self, v: Any) -> Any:  # power per siemens: V * V0 sinh(V / V0)
        return v * self.v0_v * (torch.sinh(v / self.v0_v) if torch.is_tensor(v) else math.sinh(v / self.v0_v))

    def bias_power_w(self, g_s: Any, v_bias: Any) -> Any:
        return g_s * self._p1(v_bias)

    def read_power_w(self, g_s: Any, v_v: Any) -> Any:
        return g_s * self._p1(v_v)

    def read_noise_var_s2(self, g_s):
        return (self.read_noise_std * g_s) ** 2 + self.noise_floor_s**2 * (g_s > 0).to(g_s.dtype)


def _sinh_config(noise: bool = False, **kw) -> STORPUConfig:
    dev = SinhToyDevice(read_noise_std=0.02 if noise else 0.0, noise_floor_s=0.2e-6 if noise else 0.0)
    p = PeripheryConfig()
    p = replace(p, dac=replace(p.dac, v_read_v=dev.v_read_v), **kw)
    cfg = STORPUConfig(device=dev, periphery=p)
    cfg.forward.is_perfect = True
    return cfg


def test_a_non_ohmic_device_is_read_and_costed_by_its_own_laws():
    cfg = _sinh_config()
    dev = cfg.device
    assert not dev.is_ohmic() and toy_preset().is_ohmic()
    p1 = float(dev.read_power_w(1.0, dev.v_read_v))
    assert p1 > 1.5 * dev.v_read_v**2  # sinh: ~3.6x the ohmic power at 0.2 V, 50 mV
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    torch.manual_seed(2)
    w = torch.rand(5, 12) * 2 - 1
    layer.set_weights(w)
    ledger = attach_ledger(layer, EnergyLedger())
    x = torch.rand(3, 12)
    assert torch.allclose(layer(x), x @ w.T, atol=1e-4)  # PWM inputs: linear in x whatever the I-V
    flush_events(layer)
    st = layer.analog_module.state
    g = (st.g_pos + st.g_neg)[0].double()  # [O, X]
    drive = (x.double() / x.double().abs().amax(1, keepdim=True)).abs()  # PWM: |x| / max|x| of the window
    expected = p1 * cfg.periphery.dac.read_window_s * float((drive @ g.T).sum())
    assert ledger.by_component()["cell_read"] == pytest.approx(expected, rel=1e-6)
    # an amplitude-coded DAC would read a non-ohmic device non-linearly: refused
    p = cfg.periphery
    with pytest.raises(ConfigError, match="periphery.dac.mode = 'multibit'.*not ohmic"):
        STORPUConfig(device=dev, periphery=replace(p, dac=replace(p.dac, mode="multibit")))


def test_a_non_ohmic_device_holds_its_bias_at_its_own_power():
    cfg = _sinh_config()
    dev = cfg.device
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    torch.manual_seed(3)
    layer.set_weights(torch.rand(5, 12) * 2 - 1)
    tile = layer.analog_module
    ledger = attach_ledger(layer, EnergyLedger())
    tile.set_batch(1)
    tile.short_term_update((torch.rand(1, 5, 12) * 2 - 1) * 4e-6 / dev.g_range_s)
    g_st = tile.state.g_st.clone()
    v = torch.linspace(0.0, 1.0, 12).expand(5, 12).contiguous()
    tile.set_bias(v)
    dt = 0.8
    tile.decay(dt)
    flush_events(layer)
    tau = dev.tau_max_s - (dev.tau_max_s - dev.tau_min_s) * v
    held = (tau * torch.log1p(dt / tau)).double()
    g_lt = (tile.state.g_pos + tile.state.g_neg)[0].double()
    p1 = v.double() * dev.v0_v * torch.sinh(v.double() / dev.v0_v)  # the sinh law, written out
    expected = float((p1 * (g_lt * dt + g_st.abs()[0, 0].double() * held)).sum())
    assert ledger.by_component()["bias"] == pytest.approx(expected, rel=1e-5)
    ohmic = float((v.double() ** 2 * (g_lt * dt + g_st.abs()[0, 0].double() * held)).sum())
    assert expected > 2 * ohmic  # the non-ohmic law is not the ohmic one


def test_the_read_noise_is_the_devices_law():
    """Statistically: the column's output variance is sum_j var(G+_ij) + var(G-_ij) over g_range^2, x_j = 1."""
    cfg = _sinh_config(noise=True)
    dev = cfg.device
    layer = AnalogLinear(12, 1, bias=False, rpu_config=cfg)
    layer.eval()
    w = torch.linspace(-1, 1, 12).reshape(1, 12)
    layer.set_weights(w)
    st = layer.analog_module.state
    g = torch.cat([st.g_pos.flatten(), st.g_neg.flatten()]).double()
    var = float(((dev.read_noise_std * g) ** 2 + dev.noise_floor_s**2).sum()) / dev.g_range_s**2
    torch.manual_seed(4)
    n = 20000
    with torch.no_grad():
        y = layer(torch.ones(n, 12)).double().flatten()
    s2 = float(y.var())
    # sample variance of n Gaussian draws: relative std sqrt(2 / (n - 1)) ~ 1 %; 5 sigma
    assert s2 == pytest.approx(var, rel=5 * math.sqrt(2 / (n - 1)))
    assert float(y.mean()) == pytest.approx(float(w.sum()), abs=5 * math.sqrt(var / n))
    floorless = float(((dev.read_noise_std * g) ** 2).sum()) / dev.g_range_s**2
    assert s2 > 1.5 * floorless  # the floor is simulated, not only the multiplicative part


def test_contract_refuses_a_power_law_not_linear_in_g():
    @dataclass(frozen=True)
    class Quadratic(ToyDevice):
        def bias_power_w(self, g_s, v_bias):
            return g_s * g_s * v_bias

    with pytest.raises(ConfigError, match="bias_power_w: must be .* proportional to the conductance"):
        Quadratic()


def test_the_m_stpn_on_a_non_ohmic_device_books_its_laws():
    """The same analog m-STPN on the ohmic toy and on its sinh twin: at one bias voltage everywhere, the
    bias and cell-read energies differ exactly by p(V) / V^2; pulses and the decay itself do not differ."""
    from stoxbar.stpn.analog import AnalogMSTPNCell

    ohmic, sinh = ToyDevice(), SinhToyDevice(read_noise_std=0.0, noise_floor_s=0.0)
    runs = {}
    for dev in (ohmic, sinh):
        p = PeripheryConfig()
        p = replace(p, dac=replace(p.dac, v_read_v=dev.v_read_v))
        torch.manual_seed(5)
        cell = AnalogMSTPNCell(10, 4, dev, 0.1, p, perfect_io=True)
        with torch.no_grad():
            cell.theta.fill_(0.3)  # one time constant, so one bias voltage, on every synapse
            cell.gam.uniform_(-0.3, 0.3)
        cell.program()
        ledger = EnergyLedger()
        cell.attach(ledger)
        s = cell.initial_state(2)
        torch.manual_seed(6)
        with torch.no_grad():
            for _ in range(6):
                _, s = cell(torch.randn(2, 10), s)
        flush_events(cell.syn)
        runs[dev.name] = (ledger.by_component(), s[1].clone(), float(cell.chip.v_bias[0, 0, 0]))
    (e_o, f_o, v), (e_s, f_s, v_s) = runs["toy_linear"], runs["toy_sinh"]
    assert v == v_s and 0 < v < 1
    assert torch.equal(f_o, f_s)  # the same decay law and pulses: the same short-term state
    assert e_s["st_pulse"] == e_o["st_pulse"] > 0
    ratio_bias = sinh._p1(v) / v**2
    assert ratio_bias > 1.5
    assert e_s["bias"] == pytest.approx(e_o["bias"] * ratio_bias, rel=1e-5)
    ratio_read = sinh._p1(sinh.v_read_v) / sinh.v_read_v**2
    assert e_s["cell_read"] == pytest.approx(e_o["cell_read"] * ratio_read, rel=1e-5)
