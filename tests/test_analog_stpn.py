"""The analog m-STPN layer on STO tiles reproduces the digital m-STPN under ideal settings."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from stoxbar.analysis import DigitalOpCounter, OpWatch, book_tally, digital_energy
from stoxbar.crossbar import EnergyLedger, flush_events
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.accounting import boundaries
from stoxbar.stpn.analog import AnalogMSTPNCell
from stoxbar.stpn.cells import MSTPNCell

DT = 4 / 60


def _pair(device, periphery=None, n_in=20, hidden=8, seed=0):
    torch.manual_seed(seed)
    digital = MSTPNCell(n_in, hidden, device, DT, use_kernel=False)
    with torch.no_grad():  # Gamma large enough that pulses actually fire
        digital.gam.uniform_(-0.2, 0.2)
    analog = AnalogMSTPNCell(n_in, hidden, device, DT, periphery, perfect_io=True)
    analog.load_state_dict(digital.state_dict(), strict=False)
    analog.program()
    return digital, analog


@pytest.mark.parametrize("tile_rows", [512, 8])  # one tile, and a tiled array (4 row-tiles)
@pytest.mark.parametrize("decay", [False, True])
def test_analog_equals_digital_under_ideal_settings(tile_rows, decay):
    device = presets.ideal()
    if decay:
        device = replace(device, tau_min_s=0.1, tau_max_s=100.0)
    digital, analog = _pair(device, PeripheryConfig().with_tile(tile_rows, 8))
    b = 3
    sd, sa = digital.initial_state(b), analog.initial_state(b)
    pulses = 0
    for t in range(12):
        x = torch.randn(b, 20)
        with torch.no_grad():
            hd, sd = digital(x, sd)
            ha, sa = analog(x, sa)
        pulses += int(digital.last_level_counts.sum())
        assert torch.allclose(ha, hd, atol=1e-5), f"step {t}"
        assert torch.allclose(analog.short_term_weights(), sd[1], atol=1e-6), f"step {t}"
    assert pulses > 0  # the comparison exercised the short-term pulses


def test_episode_reset_zeroes_only_finished_chips():
    digital, analog = _pair(presets.sto_2024())
    s = analog.initial_state(2)
    for _ in range(5):
        with torch.no_grad():
            _, s = analog(torch.randn(2, 20), s)
    before = analog.short_term_weights().clone()
    assert before.abs().sum() > 0
    s = analog.reset_state(s, torch.tensor([True, False]))
    after = analog.short_term_weights()
    assert after[0].abs().sum() == 0 and torch.equal(after[1], before[1])
    assert s[0][0].abs().sum() == 0


def test_boundaries_nest_and_sum_from_components():
    _, analog = _pair(presets.sto_2024())
    analog.rpu_config.forward.is_perfect = False
    ledger = EnergyLedger()
    analog.attach(ledger, "stp")
    s = analog.initial_state(1)
    counter = DigitalOpCounter()  # the cell's digital work, counted from the ops its steps run
    for _ in range(4):
        with torch.no_grad(), OpWatch(analog, counter), counter:
            _, s = analog(torch.randn(1, 20), s)
    flush_events(analog)
    book_tally(ledger, PeripheryConfig().digital, counter.tally, event="step")
    assert counter.tally["syn"].ops == {"decay_and_outer_update": 4}  # the Hebbian request, once per step
    e = boundaries(ledger)
    # numbers, not re-sums (the ledger refuses negative entries; boundaries sum their own parts): the
    # synapse boundary holds exactly the paper's three synapse components, at the array's values; the
    # system adds the cell's digital work, e.g. the Hebbian request's 2 int8 mults per synapse and step
    # (Horowitz 45 nm: 0.2 pJ each, docs/peripherals-energy.md), priced by the digital periphery
    syn, arr, system = (e[name]["by_component"] for name in ("synapse_only", "array", "system"))
    assert set(syn) == {"bias", "st_pulse", "cell_read"} and all(syn[k] == arr[k] > 0 for k in syn)
    assert {"syn.digital_mult", "syn.digital_compare", "syn.sram"} <= set(system) - set(arr)
    synapses = 8 * (20 + 8)
    d = PeripheryConfig().digital
    assert math.isclose(system["syn.digital_mult"], 4 * 2 * synapses * 0.2e-12, rel_tol=1e-9)
    assert math.isclose(system["syn.digital_mult"], digital_energy(d, "mult", 4 * 2 * synapses), rel_tol=1e-12)
    assert 0 < e["synapse_only"]["total_j"] <= e["array"]["total_j"] <= e["system"]["total_j"]
    assert math.isclose(e["system"]["total_j"], ledger.total_j, rel_tol=1e-12)
