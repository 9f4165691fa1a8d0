"""The crossbar as a generic substrate: per-tile events, the one cost model, pending programming,
bad input at the substrate, and the fused decay-and-outer-update operation on a tile array."""

from __future__ import annotations

import math
import pathlib
import re

import pytest
import torch
from torch import nn

from aihwkit.nn import AnalogConv2d, AnalogLinear
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.parameters.mapping import MappingParameter

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger, flush_events, pending_events
from stoxbar.crossbar.costs import book, cost, read_latency_s
from stoxbar.crossbar.array import STOTileArray
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.core.validation import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _layer(n_in, n_out, periphery, omega=1.0, device=None):
    cfg = STORPUConfig(device=device or presets.sto_2024(), periphery=periphery,
                       mapping=MappingParameter(weight_scaling_omega=omega))
    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
    layer.eval()
    return layer


def test_multi_tile_layer_books_per_tile_and_tiles_sum_to_the_layer(monkeypatch):
    """A 1000 x 700 layer on 512 x 512 tiles is 2 x 2 tiles; the batched read books each tile as
    aihwkit's per-tile loop does, and the tiles add up to the layer."""
    p = PeripheryConfig(bound_management="none", out_noise=0.0)
    torch.manual_seed(0)
    w = torch.rand(700, 1000) * 2 - 1
    x = torch.rand(5, 1000) * 2 - 1
    books = []
    for fast in (True, False):
        layer = _layer(1000, 700, p)
        layer.set_weights(w)
        arr = layer.analog_module
        assert isinstance(arr, STOTileArray) and arr.state.n_tiles == 4
        ledger = attach_ledger(layer, EnergyLedger(), prefix="fc")
        snap = ledger.snapshot()
        if not fast:
            monkeypatch.setattr(STOTileArray, "uses_fast_path", lambda self: False)
        with torch.no_grad():
            layer(x)
        flush_events(layer)
        books.append(ledger.since(snap))
        monkeypatch.undo()
    batched, loop = books
    tiles = batched.totals(("tile",))
    assert set(k[0] for k in tiles) == {"0.0", "0.1", "1.0", "1.1"}  # no "all"
    assert math.isclose(math.fsum(e.energy_j for e in tiles.values()), batched.total_j, rel_tol=1e-12)
    per_loop = loop.totals(("tile", "component"))
    per_batched = batched.totals(("tile", "component"))
    assert set(per_loop) == set(per_batched)
    for key, e in per_batched.items():
        assert per_loop[key].count == e.count, key
        assert math.isclose(per_loop[key].energy_j, e.energy_j, rel_tol=1e-5), key
    # row-tile 1 accumulates its partial sums into row-tile 0's: 5 vectors x its outputs
    assert batched.totals(("tile", "component"))[("1.0", "digital_accum")].count == 5 * 350
    assert ("0.0", "digital_accum") not in per_batched
    # tiles run in parallel: the layer's read latency is one tile's, not four
    lat = batched.latency_s(layer="fc", event="mvm")
    assert lat == pytest.approx(read_latency_s(p, 350, 5))
    assert math.isclose(batched.totals(("tile",), component="dac")[("0.0",)].time_s, lat)


def test_conv_layer_latency_counts_every_input_vector():
    """AnalogConv2d over N patches is N reads, pipelined: not one read per call."""
    p = PeripheryConfig(tile_rows=64, tile_cols=64)
    conv = AnalogConv2d(2, 8, 3, rpu_config=STORPUConfig(periphery=p))
    conv.eval()
    ledger = attach_ledger(conv, EnergyLedger())
    snap = ledger.snapshot()
    x = torch.randn(3, 2, 10, 10)
    with torch.no_grad():
        conv(x)
    flush_events(conv)
    step = ledger.since(snap)
    patches = 3 * 8 * 8
    dac = step.totals(("component",))[("dac",)]
    assert dac.count == patches * 2 * 3 * 3  # every patch drives its 18 rows once (one round)
    assert step.latency_s(event="mvm") == pytest.approx(read_latency_s(p, 8, patches))
    assert step.latency_s(event="mvm") > 100 * read_latency_s(p, 8, 1)


def test_programming_before_a_ledger_is_kept_and_booked_on_attach():
    model = nn.Sequential(nn.Linear(100, 30), nn.ReLU(), nn.Linear(30, 5))
    p = PeripheryConfig(tile_rows=64, tile_cols=16)
    analog = convert_to_analog(model, STORPUConfig(periphery=p))
    pending = pending_events(analog)
    assert pending and all(ev.op == "program" and ev.program_pulses > 0 for _, _, ev in pending)
    assert {(layer, tile) for layer, tile, _ in pending} == {
        ("0", "0.0"), ("0", "0.1"), ("0", "1.0"), ("0", "1.1"), ("2", "0.0")}
    dev = presets.sto_2024()
    expected = math.fsum(cost(ev, dev, p).energy_j for _, _, ev in pending)
    ledger = attach_ledger(analog, EnergyLedger())
    booked = ledger.total_j  # the pulses, their drivers and the programmed lines' half-selected cells
    assert booked > 0 and math.isclose(booked, expected, rel_tol=1e-12)
    assert ledger.totals(("component",))[("lt_half_select",)].energy_j > 0
    assert pending_events(analog) == []  # booked once
    attach_ledger(analog, ledger)
    assert ledger.total_j == booked
    kept = attach_ledger(convert_to_analog(model, STORPUConfig(periphery=p)), EnergyLedger(), book_pending=False)
    assert kept.total_j == 0.0


def test_read_energy_is_additive_over_input_vectors():
    p = PeripheryConfig(bound_management="none")
    layer = _layer(600, 32, p)
    layer.set_weights(torch.rand(32, 600) * 2 - 1)
    ledger = attach_ledger(layer, EnergyLedger())
    x = torch.rand(4, 600) * 2 - 1
    parts = []
    with torch.no_grad():
        for batch in (x, x[:1], x[1:]):
            snap = ledger.snapshot()
            layer(batch)
            parts.append(ledger.since(snap).by_component())
    both, first, rest = parts
    for comp, e in both.items():
        assert e >= 0
        assert math.isclose(e, first[comp] + rest[comp], rel_tol=1e-5), comp


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_substrate_rejects_nan_and_inf(bad):
    layer = _layer(300, 16, PeripheryConfig())
    arr = layer.analog_module
    arr.set_batch(2)
    ledger = attach_ledger(layer, EnergyLedger())
    programmed = ledger.total_j  # the constructor's programming, booked on attach
    request = torch.zeros(2, 16, 300)
    request[1, 3, 7] = bad
    with pytest.raises(ConfigError, match="apply_short_term: request"):
        arr.apply_short_term(request)
    st = arr.state
    scale = torch.ones_like(st.g_pos) * 1e-3
    u, v = torch.ones(2, 16), st.to_tiled(torch.ones(2, 300))
    u_bad = u.clone()
    u_bad[0, 0] = bad
    with pytest.raises(ConfigError, match="decay_and_outer_update: u"):
        arr.decay_and_outer_update(0.05, scale, u_bad, v)
    scale_bad = scale.clone()
    scale_bad[0, 0, 0] = bad
    with pytest.raises(ConfigError, match="decay_and_outer_update: scale"):
        arr.decay_and_outer_update(0.05, scale_bad, u, v)
    x = torch.rand(2, 300)
    x[0, 0] = bad
    with pytest.raises(ConfigError, match="forward: tile input"):
        layer(x)
    assert torch.count_nonzero(st.g_st) == 0 and ledger.total_j == programmed  # nothing pulsed, nothing booked


def test_forward_that_overflows_raises():
    layer = _layer(300, 16, PeripheryConfig())
    layer.set_weights(torch.rand(16, 300) * 2 - 1)
    with pytest.raises(ConfigError, match="overflow"):
        with torch.no_grad():
            layer(torch.full((1, 300), 3e38))


def test_array_decay_and_outer_update_books_per_tile_like_decay_then_apply():
    """The fused op on a 2 x 2 tile array: same F, levels and per-tile ledger as decay then apply."""
    dev = presets.sto_2024()
    p = PeripheryConfig(tile_rows=64, tile_cols=8)
    torch.manual_seed(1)
    w = torch.rand(12, 100) * 2 - 1
    v_bias = dev.v_bias_min_v + torch.rand(12, 100) * (dev.v_bias_max_v - dev.v_bias_min_v)
    scale_full = (torch.rand(12, 100) * 2 - 1) * 0.2
    ledgers, states = [], []
    for fused_op in (True, False):
        layer = _layer(100, 12, p, omega=0.0)
        layer.set_weights(w * 0.5)
        arr = layer.analog_module
        arr.set_bias(v_bias)
        arr.set_batch(2)
        ledger = attach_ledger(layer, EnergyLedger(), book_pending=False)  # random-init programming differs
        st = arr.state
        scale = st.tiled_weight(scale_full)
        gen = torch.Generator().manual_seed(2)
        for _ in range(4):
            u = torch.rand(2, 12, generator=gen) * 2 - 1
            v = st.to_tiled(torch.rand(2, 100, generator=gen) * 2 - 1)
            if fused_op:
                arr.decay_and_outer_update(0.05, scale, u, v)
            else:  # the reference: the two substrate operations one after the other
                arr.decay(0.05)
                arr.apply_short_term(scale.unsqueeze(0) * u[:, None, :, None] * v[:, :, None, :], tiled=True)
        flush_events(layer)
        ledgers.append(ledger)
        states.append(st.g_st.clone())
    assert torch.equal(states[0], states[1])
    a, b = (led.totals(("tile", "component")) for led in ledgers)
    assert {k[0] for k in a} == {"0.0", "0.1", "1.0", "1.1"}
    assert set(a) == set(b)
    for key in a:
        assert a[key].count == b[key].count, key
        assert math.isclose(a[key].energy_j, b[key].energy_j, rel_tol=1e-5), key
    assert a[("0.0", "st_pulse")].count > 0


def test_cost_model_components_are_nonnegative_and_book_adds_them():
    dev, p = presets.sto_2024(), PeripheryConfig()
    from stoxbar.crossbar.events import Events

    evs = [Events("read", 300, 40, 1, 2, reads=3, input_vectors=7, vector_rounds=9, drive_g_s=1e-3),
           Events("short_term", 300, 40, pulses_by_level=(5, 0, 2)),
           Events("decay", 300, 40, dt_s=0.1, chip_s=0.2, bias_held_s=2 * 2 * 300 * 40 * 0.1, bias_energy_j=1e-6),
           Events("program", 300, 40, program_pulses=10, program_device_j=1e-9)]
    ledger = EnergyLedger()
    total = 0.0
    for ev in evs:
        c = cost(ev, dev, p)
        assert all(n >= 0 and e >= 0 and math.isfinite(e) for n, e in c.parts.values())
        book(ledger, "L", "0.0", c)
        total += c.energy_j
    assert math.isclose(ledger.total_j, total, rel_tol=1e-12)
    with pytest.raises(ConfigError, match="events.op"):
        cost(Events("erase", 1, 1), dev, p)


def test_no_learning_rule_or_network_name_in_the_substrate():
    pattern = re.compile(r"hebbian|stpn|gamma|pong", re.IGNORECASE)
    files = sorted((ROOT / "crossbar").glob("*.py")) + sorted((ROOT / "devices").glob("*.py")) + [
        ROOT / "peripherals" / "config.py", ROOT / "peripherals" / "digital.py"]
    lines = [(f.name, n, line) for f in files for n, line in enumerate(f.read_text().splitlines(), 1)]
    # a layering rule ("may import ... never stpn/pong") names packages, not a rule the substrate runs
    hits = [(name, n) for name, n, line in lines if pattern.search(line) and "import" not in line.lower()
            and not line.lstrip().startswith(("stpn/", "pong/"))]
    assert hits == []


def test_accumulated_events_book_the_same_as_booking_every_operation():
    """Tiles accumulate events between flushes: flushing after every step or once gives one result."""
    dev = presets.sto_2024()
    p = PeripheryConfig(tile_rows=128, tile_cols=64)
    torch.manual_seed(4)
    w = torch.rand(10, 300) * 2 - 1
    xs = [torch.rand(2, 300) * 2 - 1 for _ in range(3)]
    results = []
    for read_each_step in (True, False):
        layer = _layer(300, 10, p, omega=0.0, device=dev)
        layer.set_weights(w * 0.5)
        arr = layer.analog_module
        arr.set_bias(torch.full((10, 300), 0.3))
        arr.set_batch(2)
        ledger = attach_ledger(layer, EnergyLedger(), book_pending=False)
        with torch.no_grad():
            for x in xs:
                layer(x)
                arr.decay_and_outer_update(0.05, arr.state.tiled_weight(w * 0.1), torch.ones(2, 10),
                                           arr.state.to_tiled(x))
                if read_each_step:
                    flush_events(layer)
        flush_events(layer)
        results.append(ledger.totals(("tile", "component", "event")))
        results[-1]["latency"] = ledger.latency_s(event="mvm")
    each, once = results
    assert each.pop("latency") == pytest.approx(once.pop("latency"), rel=1e-12)
    assert set(each) == set(once) and len(each) > 10
    for key, e in each.items():
        assert e.count == pytest.approx(once[key].count, rel=1e-12), key
        assert e.energy_j == pytest.approx(once[key].energy_j, rel=1e-9), key


def test_fused_op_without_a_ledger_skips_the_split_and_gives_the_same_state():
    dev = presets.sto_2024()
    p = PeripheryConfig(tile_rows=64, tile_cols=64)
    w = torch.rand(12, 150) * 2 - 1
    finals = []
    for with_ledger in (True, False):
        layer = _layer(150, 12, p, omega=0.0, device=dev)
        layer.set_weights(w * 0.5)
        arr = layer.analog_module
        arr.set_bias(torch.full((12, 150), 0.3))
        arr.set_batch(1)
        if with_ledger:
            ledger = attach_ledger(layer, EnergyLedger(), book_pending=False)
        st = arr.state
        gen = torch.Generator().manual_seed(3)
        counts = []
        for _ in range(3):
            x = torch.rand(1, 150, generator=gen) * 2 - 1
            counts.append(arr.decay_and_outer_update(0.05, st.tiled_weight(w * 0.2), torch.ones(1, 12), st.to_tiled(x))[1])
        flush_events(layer)
        finals.append((st.g_st.clone(), torch.stack(counts)))
    assert torch.equal(finals[0][0], finals[1][0]) and torch.equal(finals[0][1], finals[1][1])
    pulses = ledger.totals(("tile",), component="st_pulse")
    assert set(k[0] for k in pulses) == {"0.0", "1.0", "2.0"}
    assert sum(e.count for e in pulses.values()) == int(finals[0][1].sum())


def test_reading_a_ledger_twice_gives_the_same_result_and_books_nothing_new():
    """A ledger is plain data: its views never call into the tiles; the owner's flush books."""
    p = PeripheryConfig(tile_rows=64, tile_cols=8)
    layer = _layer(100, 12, p, omega=0.0)
    layer.set_weights((torch.rand(12, 100) * 2 - 1) * 0.5)
    arr = layer.analog_module
    arr.set_bias(torch.full((12, 100), 0.3))
    arr.set_batch(1)
    ledger = attach_ledger(layer, EnergyLedger(), book_pending=False)
    x = torch.rand(1, 100) * 2 - 1
    with torch.no_grad():
        layer(x)
    arr.decay_and_outer_update(0.05, arr.state.tiled_weight(torch.full((12, 100), 0.1)), torch.ones(1, 12),
                               arr.state.to_tiled(x))
    views = lambda: (ledger.to_dict(), ledger.latency_s(), len(ledger), ledger.by_component())  # noqa: E731
    first = views()
    assert first == views() and first[2] == 0  # recorded, not booked: reading books nothing
    flush_events(layer)
    booked = views()
    assert booked[2] > 0 and booked[0]["total_j"] > 0
    assert {e["event"] for e in booked[0]["entries"]} == {"mvm", "short_term_update", "decay"}
    assert views() == booked  # read again: the same
    flush_events(layer)
    assert views() == booked  # a second flush has nothing left to book


def test_read_weight_buffer_is_reused_equal_and_not_pickled():
    """The read's W + F goes into one buffer the state reuses (no fresh 68 MB tensor per read of 100
    games): the same values as a fresh ``effective_weight()``, the same storage on the next read, a
    new buffer when the batch changes, never in a pickle, and a fresh tensor where a graph needs it."""
    import pickle

    layer = _layer(300, 16, PeripheryConfig())
    arr = layer.analog_module
    arr.set_batch(3)
    st = arr.state
    st.g_st.normal_(0.0, 0.01 * st.device_model.g_range_s)  # some short-term state on every game
    with torch.no_grad():
        a = st.effective_weight(scratch=True)
        torch.testing.assert_close(a, st.effective_weight(), rtol=0, atol=0)
        ptr = a.data_ptr()
        y1 = layer(torch.rand(3, 300))
        assert st.effective_weight(scratch=True).data_ptr() == ptr  # the read reused it too
        assert torch.isfinite(y1).all()
    assert "_read_scratch" not in pickle.loads(pickle.dumps(st)).__dict__
    arr.set_batch(2)
    with torch.no_grad():
        assert st.effective_weight(scratch=True).shape[0] == 2
    fresh = st.effective_weight(scratch=True)  # grad mode on: a graph may keep it, so never the buffer
    assert fresh.data_ptr() != st.__dict__["_read_scratch"].data_ptr()
