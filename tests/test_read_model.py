"""The read is a plug-in the configuration chooses: one subclass of ``TiledAnalogMVM`` and the
``STORPUConfig.read_model`` field change every read of a tile or a tiled array, with nothing else edited;
per-call physics (the device's read noise) reaches it as an argument, and no state is kept between calls."""

from __future__ import annotations

import pytest
import torch
from aihwkit.nn import AnalogLinear

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger, flush_events
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.devices import ideal
from stoxbar.peripherals import PeripheryConfig
from stoxbar.core.validation import ConfigError


class HalfGainRead(TiledAnalogMVM):
    """A test read model: every column current reaches the ADC at half its value (a sense-gain error),
    and it records the read noise it was handed."""

    seen_noise: list = []

    @classmethod
    def _matmul(cls, weight, input_, trans=False, noise_var=None, physics=None):
        cls.seen_noise.append(noise_var)
        return 0.5 * super()._matmul(weight, input_, trans, noise_var=noise_var)


def _layer(read_model, tile_rows=512, n_in=40):
    cfg = STORPUConfig(read_model=read_model, device=ideal(), periphery=PeripheryConfig().with_tile(tile_rows, 512))
    cfg.forward.is_perfect = True  # isolate the array model from the converters
    layer = AnalogLinear(n_in, 3, bias=False, rpu_config=cfg)
    layer.eval()
    torch.manual_seed(0)
    w = torch.rand(3, n_in) * 2 - 1
    layer.set_weights(w)
    return layer, w


@pytest.mark.parametrize("tile_rows", [512, 16])  # one tile, and a tiled array (3 row-tiles)
def test_a_configured_read_model_reads_every_tile(tile_rows):
    HalfGainRead.seen_noise = []
    x = torch.rand(4, 40)
    plain, w = _layer(TiledAnalogMVM, tile_rows)
    half, _ = _layer(HalfGainRead, tile_rows)
    with torch.no_grad():
        y_plain, y_half = plain(x), half(x)
    assert torch.allclose(y_plain, x @ w.T, atol=1e-2)  # the ideal device (1 nS steps today)
    assert torch.allclose(y_half, 0.5 * y_plain, atol=1e-5)  # the subclass's physics, not the native read's
    assert HalfGainRead.seen_noise, "the configured class was not called"
    assert not HalfGainRead.native_capable() and TiledAnalogMVM.native_capable()


def test_the_device_read_noise_is_passed_to_the_read_model_as_an_argument():
    HalfGainRead.seen_noise = []
    cfg = STORPUConfig(read_model=HalfGainRead)  # sto_2024: read noise on
    layer = AnalogLinear(20, 2, bias=False, rpu_config=cfg)
    layer.eval()
    ledger = attach_ledger(layer, EnergyLedger())
    with torch.no_grad():
        layer(torch.rand(3, 20))
    flush_events(layer)
    var = layer.analog_module.state.read_noise_var()
    assert var is not None and any(v is var for v in HalfGainRead.seen_noise)
    assert ledger.by_component()["cell_read"] > 0  # the read is recorded whatever the model
    assert not hasattr(TiledAnalogMVM, "_noise_var") and not hasattr(TiledAnalogMVM, "rounds")  # no class state


def test_read_model_must_be_a_read_class():
    with pytest.raises(ConfigError, match="read_model = .*TiledAnalogMVM"):
        STORPUConfig(read_model=object)
