"""The Pong m-STPN's digital work is counted by analyze's op counter from the step torch runs."""

from __future__ import annotations

import math

import torch

import stoxbar.pong.accounting as accounting
from stoxbar.analysis import DigitalOpCounter, OpWatch, digital_energy, sram_energy_j
from stoxbar.crossbar import EnergyLedger, flush_events
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.accounting import StepCounter, boundaries, encoder_work, step_entries
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.evaluate import build_analog_cell


def _analog_agent(arch: ArchConfig = ArchConfig()):
    torch.manual_seed(0)
    agent = PongAgent(arch).eval()
    ledger = EnergyLedger()
    periphery = PeripheryConfig()
    build_analog_cell(agent, presets.get_preset(arch.device_preset), periphery).attach(ledger, "stp")
    return agent, ledger, periphery


def _frames(n: int):
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (1, 1, 84, 84), dtype=torch.uint8, generator=gen) for _ in range(n)]


def test_the_hand_written_op_table_is_gone():
    for name in ("CONV_LAYERS", "conv_macs", "conv_params", "record_digital_step", "digital_step_entries"):
        assert not hasattr(accounting, name), name


def test_encoder_work_is_what_the_flop_counter_sees():
    assert encoder_work(ArchConfig()) == (1_073_152, 9_264)  # the paper's two convs: MACs, weights + biases
    macs, params = encoder_work(ArchConfig(arch="bottleneck"))
    assert macs == 1_073_152 + 2592 * 256 and params == 9_264 + 2592 * 256 + 256


def test_step_digital_work_is_the_op_counter_of_the_agent_forward():
    """The entries a step books are those of the op counter run over that step's forward, and every
    step of a shape counts the same (so counting the first one is exact)."""
    agent, ledger, periphery = _analog_agent()
    d = periphery.digital
    state = agent.initial_state(1)
    frames = _frames(4)
    steps = StepCounter(agent, d)
    with steps:
        for obs in frames[:3]:
            _, state = agent.act(obs, state)
    assert sum(steps.steps.values()) == 3 and len(steps.entries) == 1
    booked = EnergyLedger()
    steps.book(booked)
    assert not steps.steps  # booked once
    # an independent count of a later step (other data, other state) over the same forward
    counter = DigitalOpCounter()
    with torch.no_grad(), OpWatch(agent, counter), counter:
        agent(frames[3], state)
    one = {k[:4]: k[4:] for k in step_entries(counter, d)}
    assert one == {k[:4]: k[4:] for k in next(iter(steps.entries.values()))}  # the same op sequence
    for (layer, tile, comp, event), (count, energy) in one.items():
        e = booked.totals(("layer", "tile", "component", "event"))[(layer, tile, comp, event)]
        assert e.count == 3 * count and math.isclose(e.energy_j, 3 * energy, rel_tol=1e-12)
    # what the counter saw: the encoder's MACs, the heads' MACs, the Hebbian request of the synapses
    arch = agent.arch
    syn = arch.hidden * (arch.n_in + arch.hidden)
    mac = {layer: count for (layer, _, comp, _), (count, _) in one.items() if comp == "digital_mac"}
    assert mac == {"encoder": 1_073_152, "heads": arch.hidden * (arch.n_actions + 1)}
    stp = {comp: v for (layer, _, comp, _), v in one.items() if layer == "stp"}
    assert stp["digital_mult"][0] == 2 * syn and stp["digital_compare"][0] == syn
    n_bytes = syn + arch.hidden + arch.n_in + arch.hidden  # Gamma, h and z_hat, int8
    assert stp["sram"][0] == n_bytes / 8
    assert math.isclose(stp["sram"][1], sram_energy_j(d, n_bytes), rel_tol=1e-12)
    assert math.isclose(stp["digital_mult"][1] + stp["digital_compare"][1],
                        digital_energy(d, "mult", 2 * syn) + digital_energy(d, "compare", syn), rel_tol=1e-12)
    # the cell's own ops (normalise, gain, bias, tanh) are the neuron's
    neuron = {comp: v[0] for (layer, _, comp, _), v in one.items() if layer == "neuron"}
    assert neuron["digital_nonlinear"] == arch.hidden  # one tanh per unit
    assert neuron["digital_divide"] == arch.n_in + arch.hidden  # z / max|z|
    # nothing of the tiles' own work leaks into the digital count (no op of the read or the pulses)
    assert set(layer for layer, *_ in one) == {"agent", "encoder", "neuron", "stp", "heads"}


def test_boundaries_of_a_played_step_nest():
    agent, ledger, periphery = _analog_agent()
    state = agent.initial_state(1)
    with StepCounter(agent, periphery.digital) as steps:
        for obs in _frames(2):
            _, state = agent.act(obs, state)
    flush_events(agent)
    steps.book(ledger)
    e = boundaries(ledger)
    assert 0 < e["synapse_only"]["total_j"] < e["array"]["total_j"] < e["system"]["total_j"]
    assert math.isclose(e["system"]["total_j"], ledger.total_j, rel_tol=1e-12)
    assert {"digital_mult", "digital_compare", "sram"} <= set(e["array"]["by_component"])
