"""The training step's lean paths (issue 10, performance) give what the plain formulations give.

* the straight-through gradient (:func:`stoxbar.crossbar.read.straight_through`) routes
  exactly the gradient of ``w + (p - p.detach())`` to each tile's weight, for a layer of several
  row- and column-tiles with pad rows, and with one chip per sample;
* the write-verify residual of ``program_target`` (in place, side factors) equals the
  ``torch.where`` formulation for the same random draw, with ``changed_only`` on and off;
* ``CrossbarState.program`` lands the same conductances and books the same pulses as the
  plain arithmetic, and still refuses NaN/inf and weights outside the window.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aihwkit.nn import AnalogLinear

from stoxbar.crossbar import STORPUConfig
from stoxbar.crossbar import read as read_mod
from stoxbar.crossbar.read import straight_through
from stoxbar.crossbar.programming import write_verify_tolerance_s
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import presets
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.core.validation import ConfigError


def _old_straight_through(w, weight_param):
    """The previous formulation: the tiled stack of the weights, ``w + (p - p.detach())``."""
    if isinstance(weight_param, torch.Tensor):
        return w + (weight_param - weight_param.detach())
    t = 1 + max(blk[0] for _, blk in weight_param)
    o = max(blk[1].stop for _, blk in weight_param)
    x = max(blk[2].stop for _, blk in weight_param)
    rows = []
    for i in range(t):
        row = torch.cat([p for p, blk in weight_param if blk[0] == i], 0)
        rows.append(torch.nn.functional.pad(row, (0, x - row.shape[1])))
    p = torch.stack(rows, 0)
    assert p.shape[-2] == o
    return w + (p - p.detach())


def _layer(seed=0):
    torch.manual_seed(seed)
    dev = dataclasses.replace(presets.ideal(), read_noise_std=0.0)
    cfg = STORPUConfig(device=dev, periphery=PeripheryConfig(tile_rows=8, tile_cols=4))
    cfg.forward.is_perfect = True
    return AnalogLinear(21, 7, rpu_config=cfg)  # 3 row-tiles (7 rows each, with pads) x 2 column-tiles


def _grads(layer, x):
    layer.zero_grad()
    y = layer(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), [t.tile.weight.grad.clone() for t in layer.analog_tiles()]


def test_straight_through_routes_the_same_gradient_to_every_tile(monkeypatch):
    layer = _layer()
    assert len(list(layer.analog_tiles())) > 2
    x = torch.randn(5, 21)
    y_new, g_new = _grads(layer, x)
    monkeypatch.setattr(read_mod, "straight_through", _old_straight_through)
    y_old, g_old = _grads(layer, x)
    torch.testing.assert_close(y_new, y_old, rtol=0, atol=0)
    for a, b in zip(g_new, g_old):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_straight_through_sums_over_per_sample_chips():
    p = torch.randn(2, 3, 4, requires_grad=True)
    w = torch.randn(5, 2, 3, 4)  # one chip per sample
    up = torch.randn(5, 2, 3, 4)
    (straight_through(w, p) * up).sum().backward()
    g_new = p.grad.clone()
    p.grad = None
    (_old_straight_through(w, p) * up).sum().backward()
    torch.testing.assert_close(g_new, p.grad, rtol=0, atol=0)
    blocks = [(torch.randn(3, 4, requires_grad=True), (i, slice(0, 3), slice(0, 4))) for i in range(2)]
    (straight_through(w, blocks) * up).sum().backward()
    for i, (q, _) in enumerate(blocks):
        torch.testing.assert_close(q.grad, up[:, i].sum(0), rtol=0, atol=0)
    assert torch.equal(straight_through(w, p).detach(), w)


def _where_reference(st, dev, target, old_target, changed_only, err):
    """The previous residual: exact landing, then ``torch.where`` on the changed carrying devices."""
    new = target.unsqueeze(0)
    hit = st.mask.expand_as(new) & (new != 0)
    if changed_only:
        hit = hit & (new != old_target.unsqueeze(0))
    g_pos = (dev.g_min_s + new.clamp_min(0) * dev.g_range_s)
    g_neg = (dev.g_min_s + (-new).clamp_min(0) * dev.g_range_s)
    g_pos = torch.where(hit & (new > 0), (g_pos + err).clamp(dev.g_min_s, dev.g_max_s), g_pos)
    g_neg = torch.where(hit & (new < 0), (g_neg + err).clamp(dev.g_min_s, dev.g_max_s), g_neg)
    return g_pos, g_neg


@pytest.mark.parametrize("changed_only", [True, False])
def test_write_verify_residual_matches_the_where_formulation(changed_only):
    dev = presets.sto_2024()
    layer = AnalogLinear(30, 12, bias=False, rpu_config=STORPUConfig(device=dev))
    tile = next(layer.analog_tiles()).tile
    w0 = torch.rand(12, 30) * 1.8 - 0.9
    tile.program_target(w0)
    tile.weight.data.copy_(w0)
    tile.mark_programmed()
    w1 = w0.clone()
    w1[::2] = torch.rand(6, 30) * 1.8 - 0.9  # half the rows change
    w1[1, :5] = 0.0
    w1[3, :3] = 1.0  # the window bound
    tol = write_verify_tolerance_s(dev)
    assert tol > 0
    torch.manual_seed(7)
    err = (torch.rand(1, 12, 30) * 2 - 1) * tol
    ref_pos, ref_neg = _where_reference(tile.state, dev, w1, w0, changed_only, err)
    exact_pos = dev.g_min_s + w1.clamp_min(0) * dev.g_range_s  # the exact landing the pulses are counted to
    exact_neg = dev.g_min_s + (-w1).clamp_min(0) * dev.g_range_s
    n_ref = float(torch.ceil(((exact_pos - tile.state.g_pos).abs().sum() + (exact_neg - tile.state.g_neg).abs().sum())
                             / dev.lt_dg_s))
    torch.manual_seed(7)
    pulses, energy = tile.program_target(w1, changed_only=changed_only)
    assert pulses == n_ref
    assert energy == pytest.approx(n_ref * dev.lt_pulse_energy_j)
    st = tile.state
    # equal up to float32 round-off at the window bound (the lean path clamps every device)
    torch.testing.assert_close(st.g_pos, ref_pos, rtol=0, atol=1e-7 * dev.g_max_s)
    torch.testing.assert_close(st.g_neg, ref_neg, rtol=0, atol=1e-7 * dev.g_max_s)
    interior = (w1.abs() < 0.99).unsqueeze(0)
    assert torch.equal(st.g_pos[interior], ref_pos[interior])
    assert torch.equal(st.g_neg[interior], ref_neg[interior])
    lo, hi = (torch.tensor(v, dtype=st.g_pos.dtype) for v in (dev.g_min_s, dev.g_max_s))  # the window in float32
    for g in (st.g_pos, st.g_neg):
        assert bool((g >= lo).all()) and bool((g <= hi).all())


@pytest.mark.parametrize("in_sizes", [[7], [7, 5, 6], [6, 6]])
def test_state_program_matches_plain_arithmetic_and_refuses_bad_input(in_sizes):
    dev = presets.sto_2024()
    st = CrossbarState(in_sizes, 4, dev)
    w = torch.rand(4, sum(in_sizes)) * 2 - 1
    w[0, 0] = 1.0
    old_pos, old_neg = st.g_pos.clone(), st.g_neg.clone()
    wt = st.tiled_weight(w)
    m = st.mask.to(wt.dtype)
    new_pos = (dev.g_min_s + wt.clamp_min(0) * dev.g_range_s) * m
    new_neg = (dev.g_min_s + (-wt).clamp_min(0) * dev.g_range_s) * m
    n = float(torch.ceil(((new_pos - old_pos).abs().sum() + (new_neg - old_neg).abs().sum()) / dev.lt_dg_s))
    pulses, energy = st.program(w)
    assert pulses == n and energy == pytest.approx(n * dev.lt_pulse_energy_j)
    assert torch.equal(st.g_pos, new_pos) and torch.equal(st.g_neg, new_neg)
    assert float(st.g_pos[~st.mask.expand_as(st.g_pos)].abs().sum()) == 0.0  # pad rows hold no cell
    for bad in (float("nan"), float("inf"), -float("inf")):
        w2 = w.clone()
        w2[1, 2] = bad
        with pytest.raises(ConfigError, match="NaN or inf"):
            st.program(w2)
    with pytest.raises(ConfigError, match=r"allowed range is \[-1, 1\]"):
        st.program(w * 1.01 + 0.02)
    assert torch.equal(st.g_pos, new_pos)  # a refused write changes nothing
