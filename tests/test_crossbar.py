"""STO tiles in aihwkit: tiling, exactness, agreement with aihwkit's stock tile, ledger invariants."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stdout
from dataclasses import replace

import pytest
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.mapping import MappingParameter
from hypothesis import given, settings, strategies as st

from stoxbar.core.compat import AihwkitMismatchError, check_aihwkit
from stoxbar.crossbar import CrossbarState, EnergyLedger, STORPUConfig, attach_ledger, flush_events, fused
from stoxbar.devices import STODevice, dynamics, presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.core.validation import ConfigError


def _layer(n_in=2656, n_out=64, device=None, periphery=None, perfect=False, omega=1.0):
    cfg = STORPUConfig(device=device or presets.sto_2024(), periphery=periphery or PeripheryConfig(),
                       mapping=MappingParameter(weight_scaling_omega=omega))
    cfg.forward.is_perfect = perfect
    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
    layer.eval()
    return layer


def test_public_imports_and_default_tiling():
    assert isinstance(presets.sto_2024(), STODevice)
    layer = _layer()
    assert layer.analog_tile_count() == 6
    assert layer.analog_module.in_sizes == [443, 443, 443, 443, 442, 442]
    y = layer(torch.rand(5, 2656))
    assert y.shape == (5, 64) and torch.isfinite(y).all()


def test_analog_summary_runs():
    from aihwkit.utils.analog_info import analog_summary

    buf = io.StringIO()
    with redirect_stdout(buf):
        info = analog_summary(_layer(), (1, 2656))
    row = [line for line in str(info).splitlines() if line.startswith("AnalogLinear")][0]
    assert row.split()[1:6] == ["analog", "[1,", "2656]", "[1,", "64]"] and row.split()[7] == "6"


def test_ideal_device_perfect_io_is_exact():
    torch.manual_seed(0)
    w = torch.rand(64, 2656) * 2 - 1
    x = torch.randn(7, 2656)
    layer = _layer(device=presets.ideal(), perfect=True, omega=0.0)
    layer.set_weights(w)
    assert torch.allclose(layer.get_weights()[0], w, atol=1e-6)
    assert torch.allclose(layer(x), x @ w.T, rtol=1e-5, atol=1e-4)


def test_agrees_with_stock_torch_tile_within_quantisation():
    torch.manual_seed(1)
    periph = PeripheryConfig(out_noise=0.0)
    sto = _layer(device=presets.ideal(), periphery=periph)
    stock_cfg = TorchInferenceRPUConfig(mapping=MappingParameter(weight_scaling_omega=1.0))
    stock_cfg.forward = periph.io_parameters()
    stock = AnalogLinear(2656, 64, bias=False, rpu_config=stock_cfg)
    stock.eval()
    w = torch.rand(64, 2656) * 2 - 1
    sto.set_weights(w)
    stock.set_weights(w)
    x = torch.rand(16, 2656) * 2 - 1
    exact = x @ w.T
    with torch.no_grad():
        y_sto, y_stock = sto(x), stock(x)
    # one ADC step per tile, in output units: 2*out_bound/(2**bits-2) * max|x| * max|w|, 6 tiles
    lsb = 2 * periph.out_bound / (2**periph.adc.bits - 2) * float(x.abs().max()) * float(w.abs().max())
    assert float((y_sto - y_stock).abs().max()) <= 6 * lsb
    err_sto, err_stock = float((y_sto - exact).abs().mean()), float((y_stock - exact).abs().mean())
    assert err_sto <= 1.5 * err_stock + 1e-6


def test_bad_inputs_raise():
    layer = _layer(n_in=10, n_out=3)
    with pytest.raises(ConfigError, match="NaN"):
        layer(torch.tensor([[float("nan")] + [0.0] * 9]))
    raw = _layer(n_in=10, n_out=3, omega=0.0)
    with pytest.raises(ConfigError, match="weight"):
        raw.set_weights(torch.full((3, 10), 2.0))
    with pytest.raises(ConfigError, match="device"):
        STORPUConfig(device="sto")
    low_read = PeripheryConfig()
    low_read = replace(low_read, dac=replace(low_read.dac, v_read_v=0.2))
    with pytest.raises(ConfigError, match="v_read_v"):
        STORPUConfig(periphery=low_read)


def test_aihwkit_check_reports_the_fix():
    check_aihwkit()  # the real compiled core works here

    def broken():
        raise RuntimeError("Invalid weights dimensions: expected [3,4]")

    with pytest.raises(AihwkitMismatchError, match="pip install --force-reinstall"):
        check_aihwkit(broken)


def test_ledger_invariants_and_bits_change_error_and_energy():
    torch.manual_seed(2)
    w = torch.rand(64, 2656) * 2 - 1
    x = torch.rand(4, 2656) * 2 - 1
    results = {}
    for bits in (4, 8):
        layer = _layer(device=presets.ideal(), periphery=PeripheryConfig(out_noise=0.0).with_adc_bits(bits))
        layer.set_weights(w)
        ledger = attach_ledger(layer, EnergyLedger())
        err = float((layer(x) - x @ w.T).abs().mean())
        flush_events(layer)
        parts = ledger.by_component()
        assert all(v >= 0 and math.isfinite(v) for v in parts.values())
        assert math.isclose(ledger.total_j, math.fsum(parts.values()), rel_tol=1e-12)
        results[bits] = (err, parts["adc"], ledger.total_j)
    assert results[4][0] > results[8][0]  # fewer bits: larger MVM error
    assert results[4][1] < results[8][1]  # ... and cheaper conversions


def test_ledger_does_not_change_results():
    w = torch.rand(64, 600) * 2 - 1
    x = torch.rand(3, 600)
    layer = _layer(n_in=600, periphery=PeripheryConfig(out_noise=0.0))
    layer.set_weights(w)
    torch.manual_seed(5)
    y_off = layer(x)
    attach_ledger(layer, EnergyLedger())
    torch.manual_seed(5)
    assert torch.equal(layer(x), y_off)  # same noise draws: the ledger only observes


def test_decay_of_short_term_state_follows_closed_form():
    dev = presets.sto_2024()
    layer = _layer(n_in=700, n_out=8, device=dev)
    arr = layer.analog_module
    arr.set_batch(2)
    v = torch.linspace(dev.v_bias_min_v, dev.v_bias_max_v, 8 * 700).reshape(8, 700)
    arr.set_bias(v)
    level = dev.short_term_levels()[1][-1] / dev.g_range_s
    arr.short_term_update(torch.full((2, 8, 700), level))
    f0 = arr.state.from_tiled(arr.state.g_st).clone()
    ledger = attach_ledger(layer, EnergyLedger())
    arr.decay(0.37)
    arr.decay(1.3)
    tau = torch.as_tensor(dev.tau_s(v), dtype=f0.dtype)
    expected = f0 * torch.exp(-(0.37 + 1.3) / tau)
    assert torch.allclose(arr.state.from_tiled(arr.state.g_st), expected, rtol=1e-5, atol=1e-18)
    flush_events(layer)
    assert ledger.by_component()["bias"] > 0


def test_per_tile_views_share_the_layer_state():
    layer = _layer(n_in=1000, n_out=4, device=presets.ideal(), perfect=True, omega=0.0)
    w = torch.rand(4, 1000) * 2 - 1
    layer.set_weights(w)
    tile = layer.analog_module.array[1][0]
    assert torch.allclose(tile.tile.get_weights(), w[:, 500:], atol=1e-6)
    x = torch.rand(2, 500)
    assert torch.allclose(tile(x), x @ w[:, 500:].T, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(adc_bits=st.integers(2, 12), dac_bits=st.integers(2, 10), rows=st.sampled_from([64, 128, 512]),
       mode=st.sampled_from(["multibit", "pwm", "bit_serial"]), batch=st.integers(1, 3), dt=st.floats(1e-3, 10.0))
def test_random_configs_never_give_negative_or_nan_energy(adc_bits, dac_bits, rows, mode, batch, dt):
    p = PeripheryConfig().with_adc_bits(adc_bits).with_dac_bits(dac_bits).with_tile(rows, 64)
    p = replace(p, dac=replace(p.dac, mode=mode))
    layer = _layer(n_in=300, n_out=16, periphery=p)
    ledger = attach_ledger(layer, EnergyLedger())
    layer.analog_module.set_batch(batch)
    layer(torch.randn(batch, 300))
    layer.analog_module.set_bias(torch.full((16, 300), 0.3))
    layer.analog_module.short_term_update(torch.randn(batch, 16, 300) * 0.05)
    layer.analog_module.decay(dt)
    flush_events(layer)
    snap = ledger.snapshot()
    layer(torch.randn(batch, 300))
    flush_events(layer)
    step = ledger.since(snap)
    # the ledger refuses a negative or non-finite entry itself (a ConfigError from EnergyLedger.book_entry):
    # getting here means none was booked. The numbers must also follow the data flow and the blocks' unit
    # costs: one MVM of `batch` vectors, each read in `rounds` bound-management rounds, on `tiles` row-tiles
    comp = step.totals(("component",))
    vector_rounds = comp[("dac",)].count / 300
    assert vector_rounds == int(vector_rounds) and vector_rounds >= batch
    tiles, passes = math.ceil(300 / rows), p.dac.passes_per_mvm
    assert comp[("row_driver",)].count == 300 * vector_rounds * passes
    assert comp[("adc",)].count == comp[("sense",)].count == vector_rounds * tiles * p.adc_columns(16) * passes
    for name, unit in (("dac", p.dac.energy_per_input_j), ("adc", p.adc.energy_per_conversion_j),
                       ("row_driver", p.row_driver.energy_j(p.physical_cols(), p.dac.v_read_v))):
        assert math.isclose(comp[(name,)].energy_j, comp[(name,)].count * unit, rel_tol=1e-9), name
    # the bias drivers (default per_cell addressing, changed deliberately with issue 17): every cell
    # draws from the 0.6 V rail through its access device, a loss of V_rail / V - 1 of the bias the
    # devices draw at 0.3 V, + the static draw of one rail driver per tile
    held = ledger.totals(("component",))
    bd = p.bias_driver
    expected = held[("bias",)].energy_j * (0.6 / 0.3 - 1) + bd.p_quiescent_w * tiles * batch * dt
    assert math.isclose(held[("bias_driver",)].energy_j, expected, rel_tol=1e-9)
    assert math.isclose(snap.total_j + step.total_j, ledger.total_j, rel_tol=1e-9)


@pytest.mark.skipif(not fused.available(), reason="native kernels not built (setup.py)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_decay_and_outer_update_equals_decay_then_apply(dtype):
    dev = presets.sto_2024()
    torch.manual_seed(3)
    w = torch.rand(5, 13, dtype=dtype) * 2 - 1
    v = dev.v_bias_min_v + torch.rand(5, 13, dtype=dtype) * (dev.v_bias_max_v - dev.v_bias_min_v)
    f0 = (torch.rand(3, 5, 13, dtype=dtype) * 2 - 1) * dev.st_g_max_s  # near the window: saturation happens
    chips = []
    for _ in range(3):  # [fused kernel, torch reference, fused without levels]; row-tiles of 7 and 6 rows (a pad row)
        s = CrossbarState([7, 6], 5, dev, dtype=dtype)
        s.program(w)
        s.set_bias(v)
        s.set_batch(3)
        s.g_st.copy_(s.tiled_weight(f0))
        chips.append(s)
    fast, ref, counted = chips
    gam = fast.tiled_weight((torch.rand(5, 13, dtype=dtype) * 2 - 1) * 0.1)  # requests span every level
    for _ in range(6):
        post = torch.rand(3, 5, dtype=dtype) * 2 - 1
        pre = fast.to_tiled(torch.rand(3, 13, dtype=dtype) * 2 - 1)
        got = fast.decay_and_outer_update(0.05, gam, post, pre)
        only = counted.decay_and_outer_update(0.05, gam, post, pre, levels=False)  # the counts, no level tensor
        assert only[0] is None and torch.equal(counted.g_st, fast.g_st)
        assert all(torch.equal(a, b) for a, b in zip(only[1:], got[1:]))
        # the reference: the two substrate operations one after the other
        decayed = ref.decay(0.05)
        level, tiles = ref.apply_short_term(gam.unsqueeze(0) * post[:, None, :, None] * pre[:, :, None, :])
        n_levels = dynamics.short_term_tables(dev, ref.g_pos)[2].numel()
        want = (level, dynamics.level_counts(level, n_levels), decayed, tiles)
        assert torch.equal(fast.g_st, ref.g_st) and torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert int(got[1][:, 0].sum()) > 0 and int(got[1][:, -1].sum()) > 0
        assert torch.equal(got[3], want[3]) and int(got[3].sum()) == int(got[1].sum())  # pulses per tile and level
        assert got[2].shape == want[2].shape == (2,)  # bias energy per tile (J)
        assert torch.allclose(got[2], want[2], rtol=1e-5, atol=0) and bool((got[2] > 0).all())
    assert bool((fast.g_st.abs() == dev.st_g_max_s).any())

    # the column sums kept by the fused step equal a fresh sum, and give way after any other change of F
    def fresh(s):
        return ((s.g_pos + s.g_neg).sum(1) + s.g_st.abs().sum(2)).to(s.g_st.dtype).unsqueeze(2)  # [B, T, J=1, X]

    assert fast._st_cols is not None and fast._st_cols[1] == fast.g_st._version
    assert torch.allclose(fast.abs_column_conductance(), fresh(fast), rtol=1e-6, atol=0)
    for change in (lambda s: s.reset_short_term(torch.tensor([True, False, False])), lambda s: s.decay(0.2),
                   lambda s: s.apply_short_term(torch.full((3, 2, 5, 7), 0.05, dtype=dtype)),
                   lambda s: s.g_st.mul_(0.5), lambda s: s.set_batch(3)):
        fast.decay_and_outer_update(0.05, gam, post, pre)
        change(fast)
        assert torch.equal(fast.abs_column_conductance(), fresh(fast))
