"""The held decay bias priced in training (TrainConfig.bias_energy_coef): the price is the chip's own booking of
the bias, and a run that pays it holds less bias."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.crossbar import EnergyLedger, flush_events
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.a2c import TrainConfig, train
from stoxbar.pong.accounting import boundaries
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.checkpoint import load_agent
from stoxbar.stpn.analog import AnalogMSTPNCell
from stoxbar.stpn.cells import MSTPNCell

DT = 4 / 60
TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


@pytest.mark.parametrize("scale, addressing", [(1.0, "per_cell"), (2.5, "per_cell"), (1.0, "row_col"),
                                                (1.0, "global")])
def test_held_bias_energy_is_what_the_chip_books(scale, addressing):
    """MSTPNCell.held_bias_energy_j per step = the chip's `bias` component per step (the same cells, biases and
    price), with Gamma = 0 so no short-term increment adds its share; W beyond the window is programmed at its edge
    (scale 2.5 puts some |W| above 1); a scheme's learned biases are held as learned."""
    dev = presets.sto_2024()
    torch.manual_seed(0)
    cell = MSTPNCell(20, 8, dev, DT, use_kernel=False, decay_addressing=addressing)
    with torch.no_grad():
        cell.gam.zero_()
        cell.W.mul_(scale)
    w_max = float(cell.W.detach().abs().max())
    analog = AnalogMSTPNCell(20, 8, dev, DT, PeripheryConfig(bias_addressing=addressing), perfect_io=True,
                             decay_addressing=addressing)
    analog.load_state_dict(cell.state_dict(), strict=False)
    if w_max > 1:  # the chip refuses |W| > 1: program the clipped weights, as the price assumes
        with torch.no_grad():
            analog.W.clamp_(-1.0, 1.0)
    analog.program()
    ledger = EnergyLedger()
    analog.attach(ledger, "stp")
    state = analog.initial_state(1)
    for _ in range(3):
        with torch.no_grad():
            _, state = analog(torch.randn(1, 20), state)
    flush_events(analog)
    booked = boundaries(ledger)["array"]["by_component"]["bias"]
    price = float(cell.held_bias_energy_j().detach())
    assert price > 0 and math.isclose(booked, 3 * price, rel_tol=1e-6)
    # differentiable to the decay parameters, and to W unless held fixed (as training prices it)
    cell.held_bias_energy_j().backward()
    assert cell.theta.grad is not None and cell.theta.grad.abs().sum() > 0 and cell.W.grad.abs().sum() > 0
    cell.zero_grad()
    cell.held_bias_energy_j(through_w=False).backward()
    assert cell.theta.grad.abs().sum() > 0 and (cell.W.grad is None or cell.W.grad.abs().sum() == 0)


def test_a_run_that_pays_for_its_bias_holds_less_of_it(tmp_path):
    """200 agent steps of A2C (20 updates, a high lr) with the bias priced far above the task's loss: the held bias per step falls (logged
    in progress.csv, and in the saved agent), where the same run unpriced leaves it within a few %."""
    out = {}
    for coef in (0.0, 100.0):
        run = train(TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=200, log_every=1, lr=0.03, seed=1,
                                bias_energy_coef=coef, runs_dir=str(tmp_path / f"c{coef:g}")), echo=lambda s: None)
        with open(run / "progress.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        e = [float(r["bias_energy_uj"]) for r in rows]
        assert all(x > 0 for x in e)
        assert (rows[0]["bias_penalty"] != "") == (coef > 0)
        agent, _ = load_agent(run / "checkpoint.pt")
        assert math.isclose(float(agent.cell.held_bias_energy_j().detach()) * 1e6, e[-1], rel_tol=1e-4)
        out[coef] = e
    assert out[100.0][-1] < 0.8 * out[100.0][0]
    assert abs(out[0.0][-1] / out[0.0][0] - 1) < 0.05


def test_bias_energy_coef_is_checked():
    with pytest.raises(ConfigError, match=r"bias_energy_coef = -1"):
        TrainConfig(arch=TINY, bias_energy_coef=-1.0)
    with pytest.raises(ConfigError, match=r"bias_energy_coef = 1.0: prices the m-STPN's held decay biases"):
        TrainConfig(arch=ArchConfig(arch="bottleneck", cell="stpn", hidden=8, bottleneck=16), bias_energy_coef=1.0)
