"""The Pong m-STPN's energy boundaries as one use of the analyze cost model."""

from __future__ import annotations

import math

import torch

from stoxbar.analysis import DigitalOpCounter, digital_energy, sram_energy_j
from stoxbar.crossbar import EnergyLedger
from stoxbar.peripherals import DigitalPeriphery
from stoxbar.pong.accounting import boundaries, conv_macs, conv_params, record_digital_step
from stoxbar.pong.agent import ArchConfig, PongAgent


def test_encoder_macs_equal_the_ops_torch_runs():
    """The per-step MAC count of the conv encoder is what the flop counter sees in the real forward."""
    agent = PongAgent(ArchConfig()).eval()
    obs = torch.randint(0, 256, (1, 1, 84, 84), dtype=torch.uint8)
    counter = DigitalOpCounter()
    with torch.no_grad(), counter:
        agent.encode(obs)
    macs = sum(t.elements.get("mac", 0.0) for t in counter.tally.values())
    assert macs == conv_macs() == 1_073_152
    assert sum(p.numel() for p in agent.encoder.parameters()) == conv_params()
    # the heads: hidden x (actions + 1) MACs, as record_digital_step books them
    h = torch.rand(1, agent.arch.hidden)
    counter = DigitalOpCounter()
    with torch.no_grad(), counter:
        agent.actor(h), agent.critic(h)
    macs = sum(t.elements.get("mac", 0.0) for t in counter.tally.values())
    assert macs == agent.arch.hidden * (agent.arch.n_actions + 1)


def test_hebbian_books_the_gamma_reads():
    arch = ArchConfig()
    d = DigitalPeriphery()
    ledger = EnergyLedger()
    record_digital_step(ledger, d, arch.n_in, arch.hidden, arch.n_actions)
    syn = arch.hidden * (arch.n_in + arch.hidden)
    assert syn == 169_984
    gamma = ledger.totals(("layer", "component", "event"))[("stp", "sram", "gamma_read")]
    n_bytes = syn + arch.hidden + arch.n_in + arch.hidden  # Gamma, h and z_hat, int8
    assert gamma.count == n_bytes / 8
    assert math.isclose(gamma.energy_j, sram_energy_j(d, n_bytes), rel_tol=1e-12)
    assert math.isclose(gamma.energy_j, n_bytes / 8 * 10e-12, rel_tol=1e-12)  # Horowitz: 10 pJ per 64-bit word
    # the multiplies are unchanged: 2 int8 mults + 1 compare per synapse
    heb = ledger.by_component(layer="stp")["digital_hebbian"]
    assert math.isclose(heb, digital_energy(d, "mult", 2 * syn) + digital_energy(d, "compare", syn), rel_tol=1e-12)
    e = boundaries(ledger)
    assert math.isclose(e["array"]["by_component"]["sram"], gamma.energy_j)
    assert e["synapse_only"]["total_j"] == 0.0  # no analog events booked here
