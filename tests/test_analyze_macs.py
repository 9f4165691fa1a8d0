"""``analyze``'s per-MAC figures (issue 18.3): MACs against torch's flop counter, recurrent and attention
layers on tiles, inference apart from programming, and the digital-accelerator baseline of the same model."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stoxbar import analyze
from stoxbar.analysis.convert import convert_layers
from stoxbar.core.validation import ConfigError
from stoxbar.crossbar import STORPUConfig


def torch_macs(model: nn.Module, *inputs: torch.Tensor) -> float:
    """torch's own count (FLOPs / 2), oneDNN off so its fused RNN op shows its matmuls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as fc, torch.no_grad():
            model(*inputs)
    return fc.get_total_flops() / 2


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10), nn.ReLU(),
                         nn.Linear(10, 3)).eval()


class Recurrent(nn.Module):
    def __init__(self, kind: type = nn.LSTM, **kw) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = kind(8, 16, num_layers=2, batch_first=True, **kw)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def test_cnn_macs_equal_torch_flop_counter_and_figures_follow():
    model, x = cnn(), torch.rand(2, 1, 8, 8)
    rep = analyze(model, x, rpu_config=STORPUConfig())
    assert rep.macs == torch_macs(model, x) == 2 * (4 * 9 * 36) + 2 * (36 * 10 + 10 * 3)
    assert rep.analog_macs == rep.macs and rep.digital_macs == 0
    assert rep.energy_per_mac_j == pytest.approx(rep.inference_j / rep.macs, rel=1e-12)
    assert rep.tops_per_w == pytest.approx(2 * rep.macs / rep.inference_j / 1e12, rel=1e-12)
    assert rep.throughput_per_s == pytest.approx(1 / rep.latency_s, rel=1e-12)
    assert rep.tops_per_mm2 == pytest.approx(2 * rep.macs / rep.latency_s / (rep.area_m2 * 1e6) / 1e12, rel=1e-12)
    # inference apart from programming: shares of inference sum to 1, layers in model order
    assert rep.programming_j > 0
    assert math.fsum(v["share"] for v in rep.layers.values()) == pytest.approx(1.0, abs=1e-12)
    assert list(rep.layers) == ["0", "1", "2", "3", "4", "5", "6"]
    assert math.fsum(v["inference_j"] for v in rep.layers.values()) == pytest.approx(rep.inference_j, rel=1e-12)
    assert math.fsum(rep.inference_by_component.values()) == pytest.approx(rep.inference_j, rel=1e-9)
    assert sum(v["macs"] for v in rep.layers.values()) == rep.macs
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    for key in ("macs", "energy_per_mac_j", "tops_per_w", "tops_per_mm2", "throughput_per_s", "digital_baseline"):
        assert key in d
    b = d["digital_baseline"]
    assert b["macs"] == rep.macs
    assert b["energy_j"] == pytest.approx(b["compute_j"] + b["sram_j"] + b["leakage_j"])
    table = rep.table()
    assert "TOPS/W" in table and "pJ/MAC" in table and "programming" in table and "digital accelerator" in table


def test_cnn_golden_numbers():
    """A changed constant of the tile, periphery or accelerator model fails here."""
    rep = analyze(cnn(), torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
                  rpu_config=STORPUConfig())
    assert rep.energy_per_mac_j == pytest.approx(1.4678127e-12, rel=1e-6)
    assert rep.tops_per_w == pytest.approx(1.3625717, rel=1e-6)
    assert rep.digital_baseline["energy_j"] == pytest.approx(6.2415206e-09, rel=1e-6)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_recurrent_layers_go_onto_tiles(kind):
    model, x = Recurrent(kind).eval(), torch.randn(3, 5, 8)
    rep = analyze(model, x, rpu_config=STORPUConfig(), programming=False)
    assert rep.macs == torch_macs(model, x) > 0
    assert rep.digital_macs == 0  # every matmul on the tiles: weight_ih and weight_hh of both layers
    assert sum(1 for v in rep.layers.values() if v["kind"] == "analog") == 5
    assert math.fsum(v["share"] for v in rep.layers.values()) == pytest.approx(1.0, abs=1e-12)
    # the converted layer computes what the torch layer does (aihwkit's gates are torch's)
    conv = convert_layers(model, STORPUConfig())
    with torch.no_grad():
        assert torch.allclose(conv(x), model(x), atol=0.05)  # within the tiles' quantisation and read noise


def test_recurrent_layers_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"rnn = LSTM\(bidirectional=True\).*allowed: bidirectional=False"):
        analyze(Recurrent(bidirectional=True), torch.randn(3, 5, 8), rpu_config=STORPUConfig())
    with pytest.raises(ConfigError, match=r"rnn.proj_size = 4"):
        analyze(Recurrent(proj_size=4), torch.randn(3, 5, 8), rpu_config=STORPUConfig())


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.att = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.att(x, x, x)[0]


def test_attention_projections_on_tiles_and_its_matmuls_digital_macs():
    model, x = Attention().eval(), torch.randn(2, 6, 16)
    conv = convert_layers(model, STORPUConfig())
    with torch.no_grad():
        assert torch.allclose(conv(x), model(x), atol=1e-6)  # same maths before the tiles
    rep = analyze(model, x, rpu_config=STORPUConfig(), programming=False)
    assert rep.analog_macs == 4 * 2 * 6 * 16 * 16  # q, k, v, out projections of 12 tokens
    assert rep.digital_macs == 2 * (2 * 4 * 6 * 6 * 4)  # Q K^T and P V per head
    assert rep.macs == torch_macs(conv, x)
    assert rep.uncosted_ops == {}
    # a digital model's fused attention is counted as its MACs, not one add per output
    from stoxbar.analysis import DigitalOpCounter

    counter = DigitalOpCounter()
    with counter, torch.no_grad():
        torch.nn.functional.scaled_dot_product_attention(torch.rand(2, 4, 6, 4), torch.rand(2, 4, 6, 4),
                                                         torch.rand(2, 4, 6, 4))
    assert sum(t.elements.get("mac", 0) for t in counter.tally.values()) == 2 * 4 * 6 * 6 * 8
