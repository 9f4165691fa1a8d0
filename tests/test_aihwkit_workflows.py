"""STORPUConfig as an aihwkit citizen: the workflows an aihwkit user runs (docs/aihwkit-support.md).

Training reaches the conductances (AnalogSGD and plain torch optimisers, program-after-step and
pulsed), clip/remap/modifiers/out_noise_values, save/load, STO programming and retention against
their closed forms, every layer kind, constructor arguments.
"""

import copy
import dataclasses
import io
import math

import pytest
import torch
from torch import nn

from aihwkit.nn import (AnalogConv1d, AnalogConv1dMapped, AnalogConv2d, AnalogConv2dMapped, AnalogConv3d,
                        AnalogConv3dMapped, AnalogGRUCell,
                        AnalogLinear, AnalogLinearMapped, AnalogLSTMCell, AnalogRNN, AnalogSequential,
                        AnalogVanillaRNNCell)
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import WeightClipType, WeightModifierType, WeightRemapType
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.parameters.mapping import MappingParameter

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger
from stoxbar.crossbar.programming import write_verify_tolerance_s
from stoxbar.devices import presets
from stoxbar.devices.retention import RetentionModel, no_retention
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.core.validation import ConfigError


def quiet(device=None, **kw):
    """Config without stochastic reads (perfect IO, no read noise): outputs are deterministic."""
    dev = dataclasses.replace(device or presets.ideal(), read_noise_std=0.0)
    cfg = STORPUConfig(device=dev, **kw)
    cfg.forward.is_perfect = True
    return cfg


def _task(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g) * 0.5
    return x, torch.tanh(x @ w)


def _mlp(rpu_config=None, seed=1):
    torch.manual_seed(seed)
    if rpu_config is None:
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    return AnalogSequential(AnalogLinear(8, 16, rpu_config=rpu_config), nn.Tanh(),
                            AnalogLinear(16, 1, rpu_config=rpu_config))


def _train(model, opt, x, y, steps=120):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = ((model(x) - y) ** 2).mean().item()
    model.train()
    return losses[0], final


def _float_reduction(x, y, steps=120, lr=0.1):
    ref = _mlp(None)
    l0, l1 = _train(ref, torch.optim.SGD(ref.parameters(), lr=lr), x, y, steps)
    return l0 - l1


# -- 1. training reaches the device ------------------------------------------------------------------
@pytest.mark.parametrize("optimiser", ["analog_sgd", "torch_sgd"])
def test_ideal_device_training_matches_float(optimiser):
    x, y = _task()
    float_red = _float_reduction(x, y)
    model = _mlp(STORPUConfig(device=presets.ideal()))
    opt = AnalogSGD(model.parameters(), lr=0.1) if optimiser == "analog_sgd" else torch.optim.SGD(
        model.parameters(), lr=0.1)
    l0, l1 = _train(model, opt, x, y)
    print(f"ideal {optimiser}: loss {l0:.4f} -> {l1:.4f} (float reduction {float_red:.4f})")
    assert l0 - l1 >= 0.8 * float_red


@pytest.mark.parametrize("mode", ["program_after_step", "pulsed"])
def test_sto_2024_training_reports_device_limited_result(mode):
    x, y = _task()
    float_red = _float_reduction(x, y)
    model = _mlp(STORPUConfig(device=presets.sto_2024(), update_mode=mode))
    ledger = attach_ledger(model, EnergyLedger())
    l0, l1 = _train(model, AnalogSGD(model.parameters(), lr=0.1), x, y)
    prog_j = ledger.by_component().get("lt_program", 0.0)
    print(f"sto_2024 {mode}: loss {l0:.4f} -> {l1:.4f}, reduction {(l0 - l1) / float_red:.0%} of float; "
          f"programming energy {prog_j:.3e} J")
    assert l1 < l0  # the device learns (how much is the device-limited result printed above)
    assert prog_j > 0


def test_conductances_follow_the_optimiser():
    cfg = quiet()
    layer = AnalogLinear(6, 3, bias=False, rpu_config=cfg)
    tile = next(layer.analog_tiles())
    g0 = tile.tile.state.g_pos.clone()
    opt = AnalogSGD(layer.parameters(), lr=0.2)
    x = torch.randn(16, 6)
    opt.zero_grad()
    layer(x).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(tile.tile.state.g_pos, g0)
    # ideal write-verify: the conductances hold exactly the updated weight parameter
    torch.testing.assert_close(tile.tile.get_weights(), tile.tile.weight.detach(), atol=1e-6, rtol=0)


def test_plain_optimiser_is_programmed_before_the_next_read():
    layer = AnalogLinear(6, 3, bias=False, rpu_config=quiet())
    tile = next(layer.analog_tiles())
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    x = torch.randn(8, 6)
    opt.zero_grad()
    layer(x).sum().backward()
    opt.step()  # no post_update_step: the device still holds the old weights ...
    assert not torch.allclose(tile.tile.get_weights(), tile.tile.weight.detach())
    layer(x)  # ... until the next forward programs them
    torch.testing.assert_close(tile.tile.get_weights(), tile.tile.weight.detach(), atol=1e-6, rtol=0)


def test_pulsed_mode_moves_by_pulses_and_reports_what_the_device_holds():
    cfg = STORPUConfig(device=presets.sto_2024(), update_mode="pulsed")
    layer = AnalogLinear(10, 4, bias=False, rpu_config=cfg)
    tile = next(layer.analog_tiles())
    ledger = attach_ledger(layer, EnergyLedger())
    opt = AnalogSGD(layer.parameters(), lr=0.5)
    x = torch.randn(32, 10)
    opt.zero_grad()
    layer(x).pow(2).sum().backward()
    opt.step()
    e = ledger.totals()[("lt_program",)]
    assert e.count > 0 and e.energy_j > 0
    # the parameter is what the device holds (not the optimiser's wish): no programming is pending
    torch.testing.assert_close(tile.tile.weight.detach(), tile.tile.get_weights(), atol=1e-6, rtol=0)


def test_clip_and_remap_act_on_the_device():
    cfg = quiet()
    cfg.clip.type = WeightClipType.FIXED_VALUE
    cfg.clip.fixed_value = 0.3
    layer = AnalogLinear(6, 3, bias=False, rpu_config=cfg)
    opt = AnalogSGD(layer.parameters(), lr=1.0)
    opt.zero_grad()
    layer(torch.randn(8, 6)).sum().backward()
    opt.step()
    tile = next(layer.analog_tiles())
    assert float(tile.tile.get_weights().abs().max()) <= 0.3 + 1e-6

    cfg = quiet()
    cfg.remap.type = WeightRemapType.LAYERWISE_SYMMETRIC
    layer = AnalogLinear(6, 3, bias=False, rpu_config=cfg)
    layer.set_weights(torch.randn(3, 6) * 0.1)
    opt = AnalogSGD(layer.parameters(), lr=0.01)
    opt.zero_grad()
    layer(torch.randn(8, 6)).sum().backward()
    opt.step()
    tile = next(layer.analog_tiles())
    assert float(tile.tile.get_weights().abs().max()) == pytest.approx(1.0, abs=1e-5)


def test_weight_modifier_acts_in_training_reads_only():
    cfg = quiet()
    cfg.modifier.type = WeightModifierType.ADD_NORMAL
    cfg.modifier.std_dev = 0.2
    layer = AnalogLinear(16, 4, bias=False, rpu_config=cfg)
    x = torch.randn(4, 16)
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_out_noise_values_act_per_column():
    torch.manual_seed(3)
    # no bound management: a clipped read would be repeated at a smaller input scale (noise amplified)
    cfg = STORPUConfig(device=dataclasses.replace(presets.ideal(), read_noise_std=0.0),
                       forward=IOParameters(out_noise_std=1.0),
                       periphery=PeripheryConfig(out_noise=1.0, bound_management="none"))
    layer = AnalogLinear(4, 6, bias=False, rpu_config=cfg)
    layer.set_weights(torch.zeros(6, 4))
    tile = next(layer.analog_tiles())
    values = tile.tile.out_noise_values
    assert values is not None and values.shape == (6,) and values.std() > 0
    torch.manual_seed(0)
    y = layer(torch.ones(4000, 4))  # zero weights: the output is the output noise (scaled back by abs-max = 1)
    big = (values > 0.3) & (values < 3.0)  # above the ADC step (20/254), below the clip at 10
    assert int(big.sum()) >= 2
    ratio = (y.std(0) / values)[big]
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=0.08, rtol=0)


# -- 2. save and load -------------------------------------------------------------------------------------
def _trained(cfg, in_size=600):
    model = AnalogSequential(AnalogLinear(in_size, 8, rpu_config=cfg), nn.Tanh(), AnalogLinear(8, 2, rpu_config=cfg))
    opt = AnalogSGD(model.parameters(), lr=0.05)
    x = torch.randn(16, in_size)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    model.eval()
    return model, x


def test_trained_model_survives_torch_save_and_load():
    model, x = _trained(quiet(presets.sto_2024()))  # omega = 1: aihwkit's scale hook is registered
    y = model(x)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    loaded.eval()
    assert torch.equal(loaded(x), y)
    assert torch.equal(copy.deepcopy(model)(x), y)
    for a, b in zip(model.analog_tiles(), loaded.analog_tiles()):
        assert torch.equal(a.tile.state.g_pos, b.tile.state.g_pos)


def test_state_dict_carries_long_and_short_term_state():
    cfg = quiet(periphery=PeripheryConfig(tile_rows=8))
    layer = AnalogLinear(20, 4, rpu_config=cfg)
    layer.analog_module.set_batch(3)
    layer.analog_module.short_term_update(torch.rand(3, 4, 20) * 0.05)
    layer.eval()
    x = torch.randn(3, 20)
    y = layer(x)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = AnalogLinear(20, 4, rpu_config=quiet(periphery=PeripheryConfig(tile_rows=8)))
    other.load_state_dict(torch.load(buf, weights_only=False))
    other.eval()
    assert other.analog_module.state.g_st is not None
    assert torch.equal(other(x), y)


@pytest.mark.parametrize("rows", [512, 8])
def test_loading_another_device_rebuilds_the_simulator_tile(rows):
    src = AnalogLinear(20, 4, rpu_config=quiet(presets.ideal(), periphery=PeripheryConfig(tile_rows=rows)))
    dst = AnalogLinear(20, 4, rpu_config=quiet(presets.sto_2024(), periphery=PeripheryConfig(tile_rows=rows)))
    dst.load_state_dict(src.state_dict())
    for tile in dst.analog_tiles():
        assert tile.tile.state.device_model.name == "ideal"
        assert tile.rpu_config.device.name == "ideal"
    if hasattr(dst.analog_module, "state"):
        assert dst.analog_module.state.device_model.name == "ideal"
    src.eval()
    dst.eval()
    x = torch.randn(5, 20)
    torch.testing.assert_close(dst(x), src(x), atol=1e-5, rtol=1e-5)


def test_stock_aihwkit_and_sto_do_not_exchange_states():
    stock = AnalogLinear(4, 3, rpu_config=TorchInferenceRPUConfig())
    sto = AnalogLinear(4, 3, rpu_config=STORPUConfig())
    with pytest.raises(ConfigError, match="STORPUConfig"):
        sto.load_state_dict(stock.state_dict())
    from aihwkit.exceptions import TileError

    with pytest.raises(TileError, match="STOTile"):  # aihwkit's own check names both tile classes
        stock.load_state_dict(sto.state_dict())


# -- 3. programming and retention with STO physics ---------------------------------------------------------
def test_program_analog_weights_write_verify_residual_closed_form():
    """The device carrying each weight lands uniformly within +-tol of its target; its partner at g_min."""
    dev = dataclasses.replace(presets.sto_2024(), read_noise_std=0.0)
    cfg = quiet(dev)
    layer = AnalogLinear(200, 100, bias=False, rpu_config=cfg)
    w = torch.rand(100, 200) * 1.6 - 0.8
    layer.set_weights(w)
    layer.eval()
    layer.program_analog_weights()
    tile = next(layer.analog_tiles())
    st = tile.tile.state
    target_pos = dev.g_min_s + tile.tile.weight.detach().clamp_min(0) * dev.g_range_s
    w_t = tile.tile.weight.detach()
    err = (st.g_pos[0] - target_pos)[w_t > 0.05]  # away from the window bound
    tol = write_verify_tolerance_s(dev)
    assert tol == pytest.approx(dev.lt_c2c_std * dev.lt_dg_s)
    assert float(err.abs().max()) <= tol * (1 + 1e-4)
    assert float(err.mean()) == pytest.approx(0.0, abs=0.05 * tol)
    assert float(err.std()) == pytest.approx(tol / math.sqrt(3), rel=0.05)
    torch.testing.assert_close(st.g_neg[0][w_t > 0], torch.full_like(st.g_neg[0][w_t > 0], dev.g_min_s))


def test_program_analog_weights_open_loop_spread_closed_form():
    dev = dataclasses.replace(presets.sto_2024(), lt_nonlinearity=0.0, lt_d2d_std=0.0, read_noise_std=0.0)
    cfg = quiet(dev, periphery=PeripheryConfig(programming="open_loop"), mapping=MappingParameter())  # no rescaling
    layer = AnalogLinear(200, 100, bias=False, rpu_config=cfg)
    n = 40  # pulses per device: target = g_min + n * lt_dg_s
    layer.set_weights(torch.full((100, 200), n * dev.lt_dg_s / dev.g_range_s))
    layer.eval()
    layer.program_analog_weights()
    st = next(layer.analog_tiles()).tile.state
    err = st.g_pos[0] - (dev.g_min_s + n * dev.lt_dg_s)
    assert float(err.std()) == pytest.approx(dev.lt_c2c_std * math.sqrt(n) * dev.lt_dg_s, rel=0.05)
    assert float(err.mean()) == pytest.approx(0.0, abs=0.05 * dev.lt_c2c_std * math.sqrt(n) * dev.lt_dg_s)


def test_drift_follows_the_retention_law_and_short_term_decay():
    ret = RetentionModel(tau_s=1e4, beta=0.6, tau_dtod=0.0)
    dev = dataclasses.replace(presets.sto_2024(), read_noise_std=0.0, lt_c2c_std=0.0)
    cfg = quiet(dev, retention=ret)
    cfg.drift_compensation = None
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    w0 = torch.rand(5, 12) * 2 - 1
    layer.set_weights(w0)
    tile = next(layer.analog_tiles())
    tile.set_batch(2)
    v_bias = torch.full((5, 12), 0.3)
    tile.set_bias(v_bias)
    tile.short_term_update(torch.full((2, 5, 12), 0.05))
    g_st0 = tile.tile.state.g_st.clone()
    layer.eval()
    layer.program_analog_weights()
    for t in (0.0, 1e3, 1e4, 1e6):
        layer.drift_analog_weights(t)
        r = math.exp(-((t / ret.tau_s) ** ret.beta))
        torch.testing.assert_close(tile.tile.get_weights(), tile.tile.weight.detach() * r, atol=1e-5, rtol=1e-5)
        tau = float(dev.tau_s(torch.tensor(0.3)))
        torch.testing.assert_close(tile.tile.state.g_st, g_st0 * math.exp(-t / tau), atol=1e-15, rtol=1e-4)
    with pytest.raises(ConfigError, match="t_inference"):
        layer.drift_analog_weights(-1.0)
    with pytest.raises(ConfigError, match="noise_model"):
        layer.program_analog_weights(noise_model=TorchInferenceRPUConfig().noise_model)


def test_drift_compensation_and_no_retention():
    cfg = quiet(presets.sto_2024(), retention=no_retention())
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)
    layer.eval()
    x = torch.randn(3, 12)
    layer.program_analog_weights()
    y0 = layer(x)
    layer.drift_analog_weights(1e8)
    torch.testing.assert_close(layer(x), y0)  # no retention loss: nothing changes
    cfg = quiet(presets.sto_2024(), retention=RetentionModel(tau_s=1e4, beta=1.0))
    layer = AnalogLinear(12, 5, bias=False, rpu_config=cfg)  # GlobalDriftCompensation (aihwkit's default)
    layer.eval()
    layer.program_analog_weights()
    y0 = layer(x)
    layer.drift_analog_weights(1e4)  # uniform relaxation by 1/e: global compensation undoes it
    torch.testing.assert_close(layer(x), y0, atol=1e-4, rtol=1e-3)


# -- 4. every layer kind -----------------------------------------------------------------------------------
def test_mapped_layers_build_100_of_100():
    cfg = STORPUConfig()
    for _ in range(100):
        AnalogConv2dMapped(3, 4, 3, rpu_config=cfg)
        AnalogConv1dMapped(3, 4, 3, rpu_config=cfg)
        AnalogConv3dMapped(2, 3, 2, rpu_config=cfg)
        AnalogLinearMapped(10, 4, rpu_config=cfg)


def test_non_finite_first_write_is_deferred_then_raised():
    cfg = STORPUConfig()
    tile = cfg.tile_class(3, 4, cfg)
    tile.set_weights(torch.full((3, 4), float("nan")))  # aihwkit's construction-time write
    with pytest.raises(ConfigError, match="NaN"):
        tile(torch.randn(2, 4))
    tile.set_weights(torch.rand(3, 4) * 0.5)  # the real initialisation clears it
    tile(torch.randn(2, 4))
    with pytest.raises(ConfigError, match="NaN"):
        tile.set_weights(torch.full((3, 4), float("nan")))


@pytest.mark.parametrize("rows", [512, 16])
@pytest.mark.parametrize("layer_cls", [AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogConv1dMapped,
                                       AnalogConv2dMapped, AnalogConv3dMapped])
def test_convolutions_equal_torch_convolutions(layer_cls, rows):
    """Indexed (Conv1d/3d, mapped) and unfolded (Conv2d) convolutions on one tile and on tile arrays."""
    dims = int(layer_cls.__name__[len("AnalogConv")])
    if rows == 16 and dims == 3 and "Mapped" in layer_cls.__name__:
        pytest.skip("a 3x3x3 kernel (27 rows) does not fit a 16-row tile: aihwkit refuses it")
    cfg = quiet(periphery=PeripheryConfig(tile_rows=rows))
    torch.manual_seed(0)
    layer = layer_cls(5, 6, 3, padding=1, stride=2, rpu_config=cfg)
    x = torch.randn(2, 5, *([7, 6, 5][:dims]))
    w, b = layer.get_weights()
    conv = getattr(torch.nn.functional, f"conv{dims}d")
    ref = conv(x, w.view(6, 5, *([3] * dims)), b, padding=1, stride=2)
    y = layer(x)
    torch.testing.assert_close(y, ref, atol=2e-6, rtol=1e-5)
    y.sum().backward()
    assert all(t.tile.weight.grad is not None for t in layer.analog_tiles())


@pytest.mark.parametrize("kind", ["linear_mapped", "conv1d_mapped", "conv2d_mapped", "conv3d_mapped", "conv1d",
                                  "conv2d", "conv3d", "lstm", "gru", "rnn"])
def test_layer_kinds_infer_and_train(kind):
    cfg = STORPUConfig(device=presets.ideal())
    torch.manual_seed(0)
    make = {
        "linear_mapped": (lambda: AnalogLinearMapped(10, 4, rpu_config=cfg), torch.randn(5, 10)),
        "conv1d_mapped": (lambda: AnalogConv1dMapped(3, 4, 3, rpu_config=cfg), torch.randn(2, 3, 8)),
        "conv2d_mapped": (lambda: AnalogConv2dMapped(3, 4, 3, rpu_config=cfg), torch.randn(2, 3, 6, 6)),
        "conv3d_mapped": (lambda: AnalogConv3dMapped(2, 3, 2, rpu_config=cfg), torch.randn(2, 2, 4, 4, 4)),
        "conv1d": (lambda: AnalogConv1d(3, 4, 3, rpu_config=cfg), torch.randn(2, 3, 8)),
        "conv3d": (lambda: AnalogConv3d(2, 3, 2, rpu_config=cfg), torch.randn(2, 2, 4, 4, 4)),
        "conv2d": (lambda: AnalogConv2d(3, 4, 3, rpu_config=cfg), torch.randn(2, 3, 6, 6)),
        "lstm": (lambda: AnalogRNN(AnalogLSTMCell, 4, 5, rpu_config=cfg), torch.randn(6, 2, 4)),
        "gru": (lambda: AnalogRNN(AnalogGRUCell, 4, 5, rpu_config=cfg), torch.randn(6, 2, 4)),
        "rnn": (lambda: AnalogRNN(AnalogVanillaRNNCell, 4, 5, rpu_config=cfg), torch.randn(6, 2, 4)),
    }
    mk, x = make[kind]
    model = mk()
    opt = AnalogSGD(model.parameters(), lr=0.2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = (out - 0.3).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    tiles = list(model.analog_tiles())
    assert tiles and all(not torch.equal(t.tile.state.g_pos, t.tile.state.g_neg) for t in tiles)


# -- 5. constructor arguments -----------------------------------------------------------------------------
def test_constructor_arguments_are_honoured_or_rejected():
    with pytest.raises(ConfigError, match=r"forward.out_noise = 0.0: set by periphery.out_noise"):
        STORPUConfig(forward=IOParameters(out_noise=0.0))
    with pytest.raises(ConfigError, match=r"forward.inp_res.*periphery.dac.bits"):
        STORPUConfig(forward=IOParameters(inp_res=1 / 30))
    with pytest.raises(ConfigError, match=r"mapping.max_input_size = 100: set by periphery.tile_rows"):
        STORPUConfig(mapping=MappingParameter(max_input_size=100))
    with pytest.raises(ConfigError, match="update_mode"):
        STORPUConfig(update_mode="magic")
    with pytest.raises(ConfigError, match="noise_model"):
        STORPUConfig(noise_model=TorchInferenceRPUConfig().noise_model)
    cfg = STORPUConfig(forward=IOParameters(out_noise_std=0.3, inp_sto_round=True),
                       mapping=MappingParameter(weight_scaling_omega=0.8, max_input_size=256),
                       periphery=PeripheryConfig(tile_rows=256, out_noise=0.02))
    assert cfg.forward.out_noise_std == 0.3 and cfg.forward.inp_sto_round
    assert cfg.forward.out_noise == 0.02 and cfg.forward.inp_res == 1 / (2 ** cfg.periphery.dac.bits - 2)
    assert cfg.mapping.weight_scaling_omega == 0.8 and cfg.mapping.max_input_size == 256
    same = STORPUConfig(forward=STORPUConfig().forward)  # the periphery's own values are accepted
    assert same.forward == STORPUConfig().forward


# -- 6. the hardware-aware training example (smoke run at small size) ---------------------------------------
def test_hwa_example_runs(capsys, monkeypatch):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "hwa_training.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--epochs", "2", "--repeats", "1", "--times", "1e7"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "| float |" in out and "| HWA (MULT_NORMAL 0.3) |" in out


def test_state_dicts_from_before_this_change_still_load_strictly():
    cfg = quiet(periphery=PeripheryConfig(tile_rows=8))
    src = AnalogLinear(20, 4, rpu_config=cfg)
    old = {k: v for k, v in src.state_dict().items() if not k.endswith(("programmed_target", "_extra_state"))}
    dst = AnalogLinear(20, 4, rpu_config=quiet(periphery=PeripheryConfig(tile_rows=8)))
    dst.load_state_dict(old)  # strict
    src.eval()
    dst.eval()
    x = torch.randn(3, 20)
    assert torch.equal(dst(x), src(x))


# -- 7. parity with aihwkit's floating-point tile (ideal device, perfect IO) ---------------------------------
# Written from aihwkit's own pattern (tests/test_layers_linear.py test_remapping_learning,
# tests/test_layers_rnn.py test_layer_training): the same seed builds the analog model and the
# reference, both train with the same optimiser and data, and the results must agree. The reference
# is aihwkit's FloatingPointRPUConfig tile. Tolerance: float32 round-off (measured <= 5e-7 relative).
PARITY_RTOL = 1e-5


def _parity_cases():
    return {
        "linear": (lambda c: AnalogLinear(4, 2, rpu_config=c), lambda: torch.randn(16, 4)),
        "linear_tiled": (lambda c: AnalogLinear(20, 3, rpu_config=c), lambda: torch.randn(8, 20)),
        "conv2d": (lambda c: AnalogConv2d(3, 4, 3, rpu_config=c), lambda: torch.randn(2, 3, 6, 6)),
        "conv2d_mapped": (lambda c: AnalogConv2dMapped(3, 4, 3, rpu_config=c), lambda: torch.randn(2, 3, 6, 6)),
        "linear_mapped": (lambda c: AnalogLinearMapped(10, 4, rpu_config=c), lambda: torch.randn(5, 10)),
        "gru_2_layers": (lambda c: AnalogRNN(AnalogGRUCell, 4, 5, num_layers=2, rpu_config=c),
                         lambda: torch.randn(6, 2, 4)),
        "lstm": (lambda c: AnalogRNN(AnalogLSTMCell, 4, 5, rpu_config=c), lambda: torch.randn(6, 2, 4)),
    }


def _train_like_aihwkit(make, make_x, rpu_config, steps, lr):
    torch.manual_seed(4321)
    x = make_x()
    model = make(rpu_config)
    opt = AnalogSGD(model.parameters(), lr=lr)
    sign = None
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        if sign is None:  # a fixed direction: a loss without minimum, so the weights outgrow the first mapping
            sign = torch.sign(torch.randn(out.shape, generator=torch.Generator().manual_seed(7)))
        (out * sign).mean().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    weights = model.get_weights()[0] if isinstance(model, (AnalogLinear, AnalogLinearMapped)) else None
    return out, weights  # the layer's weights (mapping scales applied, all tiles)


def _max_rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("mode", ["program_after_step", "pulsed"])
@pytest.mark.parametrize("kind", list(_parity_cases()))
def test_ideal_training_equals_aihwkit_floating_point_tile(kind, mode):
    from aihwkit.simulator.configs import FloatingPointRPUConfig

    make, make_x = _parity_cases()[kind]
    periphery = PeripheryConfig(tile_rows=8) if kind == "linear_tiled" else PeripheryConfig()
    steps = 100 if kind in ("linear", "linear_tiled") else 10
    cfg = quiet(update_mode=mode, periphery=periphery)
    y, w = _train_like_aihwkit(make, make_x, cfg, steps, lr=0.1)
    y_ref, w_ref = _train_like_aihwkit(make, make_x, FloatingPointRPUConfig(), steps, lr=0.1)
    print(f"{kind} {mode}: output max rel diff {_max_rel(y, y_ref):.2e}")
    assert _max_rel(y, y_ref) <= PARITY_RTOL
    if kind in ("linear", "linear_tiled"):
        assert float(w_ref.abs().max()) > 1.0  # the trained weights left the first mapping's window
        assert _max_rel(w, w_ref) <= PARITY_RTOL


def test_ideal_forward_equals_aihwkit_floating_point_tile():
    from aihwkit.simulator.configs import FloatingPointRPUConfig

    for kind, (make, make_x) in _parity_cases().items():
        periphery = PeripheryConfig(tile_rows=8) if kind == "linear_tiled" else PeripheryConfig()
        y, _ = _train_like_aihwkit(make, make_x, quiet(periphery=periphery), 0, lr=0.1)
        y_ref, _ = _train_like_aihwkit(make, make_x, FloatingPointRPUConfig(), 0, lr=0.1)
        assert _max_rel(y, y_ref) <= PARITY_RTOL, kind


def test_ideal_training_4x2_after_1_and_100_steps():
    """The issue's numbers: a 4x2 AnalogLinear, AnalogSGD, ideal + perfect IO vs the float tile."""
    from aihwkit.simulator.configs import FloatingPointRPUConfig

    make = lambda c: AnalogLinear(4, 2, rpu_config=c)  # noqa: E731
    for steps in (1, 100):
        _, w = _train_like_aihwkit(make, lambda: torch.randn(16, 4), quiet(), steps, lr=0.5)
        _, w_ref = _train_like_aihwkit(make, lambda: torch.randn(16, 4), FloatingPointRPUConfig(), steps, lr=0.5)
        print(f"4x2 after {steps} step(s): max weight diff {float((w - w_ref).abs().max()):.2e}")
        torch.testing.assert_close(w, w_ref, atol=1e-6 * float(w_ref.abs().max()), rtol=PARITY_RTOL)


def test_ideal_preset_is_continuous_and_sto_2024_stays_quantised():
    """ideal: open-loop programming and pulsed updates land off the 1 nS grid; sto_2024 (linear,
    noise-free here) moves in whole steps of lt_dg_s."""
    with pytest.raises(ConfigError, match="lt_c2c_std = 0.3: the ideal device's long-term conductance is continuous"):
        dataclasses.replace(presets.ideal(), lt_c2c_std=0.3)  # would be ignored: refused
    w = torch.full((3, 5), 0.123456)
    dev = presets.ideal()
    steps = dev.g_range_s / dev.lt_dg_s  # ~88 nominal steps across the window
    for device, exact in ((presets.ideal(), True),
                          (dataclasses.replace(presets.sto_2024(), lt_nonlinearity=0.0, lt_d2d_std=0.0,
                                               lt_c2c_std=0.0, lt_up_down=1.0, read_noise_std=0.0), False)):
        for programming, mode in (("open_loop", "program_after_step"), ("write_verify", "pulsed")):
            cfg = quiet(device, periphery=PeripheryConfig(programming=programming), update_mode=mode,
                        mapping=MappingParameter())  # no rescaling: the tile holds w itself
            layer = AnalogLinear(5, 3, bias=False, rpu_config=cfg)
            tile = next(layer.analog_tiles())
            if mode == "pulsed":
                layer.set_weights(torch.zeros(3, 5))
                with torch.no_grad():
                    tile.tile.weight.copy_(w)
                tile.post_update_step()  # the pulsed update brings the device to w
            else:
                tile.tile.program_target(w, mode="open_loop")
            held = tile.tile.get_weights()
            if exact:
                torch.testing.assert_close(held, w, atol=1e-6, rtol=0)
            else:  # a whole number of 1 nS steps: w rounded to the grid (0.123456 * 88 = 10.86 steps)
                assert float((held - w).abs().max()) > 1e-3
                torch.testing.assert_close(held * steps, (held * steps).round(), atol=1e-3, rtol=0)


def test_weight_overflow_remaps_or_clips_as_configured():
    from aihwkit.simulator.configs import FloatingPointRPUConfig

    make = lambda c: AnalogLinear(4, 2, bias=False, rpu_config=c)  # noqa: E731
    _, w_ref = _train_like_aihwkit(make, lambda: torch.randn(16, 4), FloatingPointRPUConfig(), 30, lr=0.5)
    _, w_remap = _train_like_aihwkit(make, lambda: torch.randn(16, 4), quiet(), 30, lr=0.5)
    _, w_clip = _train_like_aihwkit(make, lambda: torch.randn(16, 4), quiet(weight_overflow="clip"), 30, lr=0.5)
    torch.testing.assert_close(w_remap, w_ref, atol=1e-5, rtol=PARITY_RTOL)  # remap: the same function
    assert float((w_clip - w_ref).abs().max()) > 0.05  # clip: explicitly bounded by the window
    with pytest.raises(ConfigError, match="weight_overflow"):
        STORPUConfig(weight_overflow="wrap")
    # remap keeps the tile's weights in the window and moves the factor into the output scales
    layer = AnalogLinear(4, 2, bias=False, rpu_config=quiet())
    tile = next(layer.analog_tiles())
    w_full = layer.get_weights()[0]
    with torch.no_grad():
        tile.tile.weight[0] *= 3.0  # an update that leaves the window (row 0 only)
    tile.post_update_step()
    assert float(tile.tile.weight.detach().abs().max()) <= 1.0 + 1e-6
    expected = w_full.clone()
    expected[0] *= 3.0
    torch.testing.assert_close(layer.get_weights()[0], expected, atol=1e-6, rtol=1e-6)
    # a bare simulator tile cannot remap (no output scales): a clear error, never a silent clip
    sim = quiet().simulator_tile_class(4, 2, quiet())
    sim.set_weights(torch.rand(2, 4) * 0.5)
    with torch.no_grad():
        sim.weight.fill_(2.0)
    with pytest.raises(ConfigError, match=r"max \|w\| = 2.*weight_overflow"):
        sim.sync_device()


def test_post_update_step_clip_equals_aihwkit():
    cfg_sto, cfg_ref = quiet(), TorchInferenceRPUConfig(mapping=MappingParameter(weight_scaling_omega=1.0))
    cfg_ref.forward.is_perfect = True
    for cfg in (cfg_sto, cfg_ref):
        cfg.clip.type = WeightClipType.FIXED_VALUE
        cfg.clip.fixed_value = 0.4
    make = lambda c: AnalogLinear(6, 3, rpu_config=c)  # noqa: E731
    y, w = _train_like_aihwkit(make, lambda: torch.randn(8, 6), cfg_sto, 5, lr=0.5)
    y_ref, w_ref = _train_like_aihwkit(make, lambda: torch.randn(8, 6), cfg_ref, 5, lr=0.5)
    torch.testing.assert_close(w, w_ref, atol=1e-6, rtol=PARITY_RTOL)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=PARITY_RTOL)


@pytest.mark.parametrize("rows", [512, 8])
def test_save_load_keeps_learned_out_scaling_alpha(rows):
    def cfg():
        c = quiet(periphery=PeripheryConfig(tile_rows=rows))
        c.mapping.learn_out_scaling = True
        c.mapping.out_scaling_columnwise = True
        return c

    torch.manual_seed(0)
    model = AnalogLinearMapped(20, 4, rpu_config=cfg())
    x = torch.randn(5, 20)
    opt = AnalogSGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - 2.0).pow(2).mean().backward()
        opt.step()
    model.eval()
    alphas = [t.out_scaling_alpha.detach().clone() for t in model.analog_tiles()]
    assert all(not torch.allclose(a, torch.ones_like(a)) for a in alphas)  # they learned
    torch.manual_seed(1)
    fresh = AnalogLinearMapped(20, 4, rpu_config=cfg())
    fresh.eval()
    fresh(x)  # a forward before loading (caches filled) must not survive the load
    fresh.load_state_dict(model.state_dict())
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    pickled = torch.load(buf, weights_only=False)
    for loaded in (fresh, pickled):
        loaded.eval()
        for a, t in zip(alphas, loaded.analog_tiles()):
            torch.testing.assert_close(t.out_scaling_alpha.detach(), a, atol=0, rtol=0)
        torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("layer_cls", [AnalogLinear, AnalogLinearMapped])
@pytest.mark.parametrize("rows", [512, 8])
def test_drift_compensation_workflow_with_sto_retention(layer_cls, rows):
    """aihwkit's workflow (tests/test_layers_linear.py test_drift_compensation): program, read,
    drift, read with GlobalDriftCompensation; here with the STO retention law, on one tile and on
    tile arrays."""
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation

    x = torch.randn(5, 20)
    results = {}
    for ret in (RetentionModel(tau_s=1e4, beta=1.0, tau_dtod=0.0), STORPUConfig().retention):
        for comp in (GlobalDriftCompensation(), None):
            cfg = quiet(periphery=PeripheryConfig(tile_rows=rows), retention=ret, drift_compensation=comp)
            torch.manual_seed(0)
            model = AnalogSequential(layer_cls(20, 4, rpu_config=cfg))
            model.eval()
            model.program_analog_weights()
            y0 = model(x)
            model.drift_analog_weights(1e4)
            results[(ret.tau_dtod, comp is not None)] = _max_rel(model(x), y0)
    print(f"{layer_cls.__name__} rows {rows}: {results}")
    assert results[(0.0, False)] > 0.5  # uniform relaxation by 1/e ...
    assert results[(0.0, True)] < 1e-5  # ... which global compensation undoes exactly
    spread = STORPUConfig().retention.tau_dtod  # the STO law: per-device time constants
    assert results[(spread, True)] < 0.5 * results[(spread, False)]


# -- 8. device moves: tiles and array stay one state -----------------------------------------------------
def _copying_move(t):
    """What ``.cuda()`` does to an aihwkit layer, on the CPU: every tensor replaced by a copy
    (aihwkit's tile modules take the function through ``_apply_without_context``)."""
    from aihwkit.simulator.tiles.module import TileModule

    if isinstance(t, TileModule):
        t._apply_without_context(_copying_move)
        t._sync_analog_ctx_weights()
        return t
    return t.clone()


@pytest.mark.parametrize("how", ["copy", "cuda"])
@pytest.mark.parametrize("layer_cls", [AnalogLinear, AnalogLinearMapped])
def test_device_move_keeps_tiles_and_array_one_state(how, layer_cls):
    if how == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cfg = quiet(periphery=PeripheryConfig(tile_rows=8, tile_cols=4))
    torch.manual_seed(0)
    layer = layer_cls(20, 5, bias=False, rpu_config=cfg)
    if hasattr(layer.analog_module, "set_batch"):  # a tile array: a short-term state to move as well
        layer.analog_module.set_batch(2)
    layer = layer._apply(_copying_move) if how == "copy" else layer.cuda()
    arr = layer.analog_module
    if hasattr(arr, "state"):  # a tile array: its tiles are views of its state again
        for i, j, n_in, o0, n_out, tile in arr._tiles():
            ts = tile.tile.state
            assert ts.g_pos.untyped_storage().data_ptr() == arr.state.g_pos.untyped_storage().data_ptr()
            assert ts.g_st is not None and ts.g_st.device == arr.state.g_pos.device
    w = torch.rand(5, 20) * 1.6 - 0.8
    layer.set_weights(w)
    torch.testing.assert_close(layer.get_weights()[0], w, atol=1e-6, rtol=1e-6)
    layer.eval()
    dev = next(t.tile.state.g_pos.device for t in layer.analog_tiles())
    x = torch.randn(2, 20, device=dev)  # one sample per short-term chip state
    torch.testing.assert_close(layer(x).cpu(), x.cpu() @ w.t(), atol=1e-5, rtol=1e-5)
    layer.train()
    opt = AnalogSGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    layer(x).pow(2).sum().backward()
    opt.step()
    for tile in layer.analog_tiles():  # training reached the state the array reads
        torch.testing.assert_close(tile.tile.get_weights(), tile.tile.weight.detach().cpu(), atol=1e-6, rtol=0)


def test_meta_device_moves_every_state_tensor():
    cfg = quiet(periphery=PeripheryConfig(tile_rows=8))
    layer = AnalogLinear(20, 4, bias=False, rpu_config=cfg)
    layer.analog_module.set_batch(2)
    layer.to("meta")
    arr = layer.analog_module
    tensors = [arr.state.g_pos, arr.state.g_neg, arr.state.v_bias, arr.state.g_st]
    for *_, tile in arr._tiles():
        ts = tile.tile.state
        tensors += [ts.g_pos, ts.g_neg, ts.v_bias, ts.g_st]
    assert all(t is not None and t.device.type == "meta" for t in tensors)


def test_state_pickled_before_g_st_was_a_buffer_loads_and_moves():
    from stoxbar.crossbar.state import CrossbarState

    st = CrossbarState([4], 3, presets.ideal())
    st.set_batch(2)
    st.g_st.fill_(1e-9)
    legacy = st.__getstate__() if hasattr(st, "__getstate__") else dict(st.__dict__)
    legacy = dict(legacy)
    legacy["_buffers"] = {k: v for k, v in legacy["_buffers"].items() if k != "g_st"}
    legacy["_non_persistent_buffers_set"] = set(legacy["_non_persistent_buffers_set"]) - {"g_st"}
    legacy["g_st"] = st.g_st.clone()  # the old layout: a plain attribute
    old = CrossbarState.__new__(CrossbarState)
    old.__setstate__(legacy)
    assert "g_st" in old._buffers and torch.equal(old.g_st, st.g_st)
    old.to("meta")
    assert old.g_st.device.type == "meta"


@pytest.mark.parametrize("layer_cls", [AnalogConv1d, AnalogConv2dMapped])
def test_pickled_indexed_convolution_reads_the_same(layer_cls):
    """aihwkit drops a tile's ``image_sizes`` when pickling; the STO fold indices and sizes survive."""
    dims = int(layer_cls.__name__[len("AnalogConv")])
    torch.manual_seed(0)
    layer = layer_cls(3, 4, 3, padding=1, rpu_config=quiet())
    layer.eval()
    x = torch.randn(2, 3, *([6, 5][:dims]))
    y = layer(x)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    loaded.eval()
    torch.testing.assert_close(loaded(x), y, atol=0, rtol=0)
