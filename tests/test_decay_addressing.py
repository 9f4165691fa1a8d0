"""The m-STPN learns its decay under a bias-addressing scheme (issue 17 point 1).

``ArchConfig.decay_addressing`` / ``MSTPNCell(decay_addressing=...)``: the decay biases the network
learns are ones the crossbar's lines can hold, so the chip holds them without projection residual;
``stoxbar train --init-from CKPT --decay-addressing S`` starts from a per-synapse agent with its
biases fitted to the scheme, and the scheme's parameters then train.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.a2c import TrainConfig, param_drift, initial_cell_params, start_agent, train
from stoxbar.pong.ablate import apply_ablation
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.checkpoint import load_agent, save_checkpoint
from stoxbar.stpn.analog import AnalogMSTPNCell
from stoxbar.stpn.cells import DECAY_ADDRESSINGS, MSTPNCell

DEV = presets.sto_2024()
DT = 4 / 60
SCHEMES = list(DECAY_ADDRESSINGS)


def _cell(scheme, n_in=7, hidden=5, seed=0):
    torch.manual_seed(seed)
    return MSTPNCell(n_in, hidden, DEV, DT, use_kernel=False, decay_addressing=scheme).double()


def _additive_residual(v):
    return (v - v.mean(0, keepdim=True) - v.mean(1, keepdim=True) + v.mean()).abs().max()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_learned_biases_have_the_scheme_structure_and_stay_in_range(scheme):
    cell = _cell(scheme)
    v = cell.trained_v_bias().detach()
    assert v.shape == (5, 12)
    assert float(v.min()) >= DEV.v_bias_min_v - 1e-12 and float(v.max()) <= DEV.v_bias_max_v + 1e-12
    spread_over_units = (v - v[:1]).abs().max()  # same bias down a row line (all units)
    spread_over_inputs = (v - v[:, :1]).abs().max()  # same bias along a column line (all inputs)
    if scheme in ("per_row", "global"):
        assert spread_over_units < 1e-12
    if scheme in ("per_column", "global"):
        assert spread_over_inputs < 1e-12
    if scheme == "row_col":
        assert _additive_residual(v) < 1e-12 and spread_over_units > 1e-3 and spread_over_inputs > 1e-3
    if scheme == "per_cell":
        assert _additive_residual(v) > 1e-3
    # tau follows the device law at those biases, and Lambda = exp(-dt/tau)
    assert torch.allclose(cell.tau_s(), torch.as_tensor(DEV.tau_s(v)), rtol=1e-9)
    assert torch.allclose(cell.lambda_(), torch.exp(-DT / cell.tau_s()), rtol=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_decay_parameter_gets_a_gradient(scheme):
    cell = _cell(scheme)
    (cell.lambda_() * torch.linspace(0, 1, 60, dtype=torch.float64).view(5, 12)).sum().backward()
    for name in cell.decay_parameters():
        g = getattr(cell, name).grad
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().max()) > 0, name
    groups = cell.param_groups(1e-3, 1e-5)
    assert [id(p) for p in groups[2]["params"]] == [id(getattr(cell, n)) for n in cell.decay_parameters()]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_chip_holds_the_learned_biases_without_projection_residual(scheme):
    cell = _cell(scheme, n_in=20, hidden=6).float()
    p = PeripheryConfig(bias_addressing=scheme).with_tile(16, 8)  # several physical tiles
    analog = AnalogMSTPNCell.from_cell(cell, p)
    rep = analog.chip.bias_report
    assert rep.scheme == scheme and rep.clipped == 0
    assert rep.max_residual_v < 2e-6  # float32 rounding of the voltages only
    if scheme != "per_cell":  # a per-synapse agent on the same chip is projected with a real residual
        free = AnalogMSTPNCell.from_cell(_cell("per_cell", n_in=20, hidden=6).float(), p)
        assert free.chip.bias_report.rms_residual_v > 1e-3


def test_fit_decay_to_bias_is_the_least_squares_fit_of_each_scheme():
    src = _cell("per_cell")
    v = src.trained_v_bias().detach()
    back = _cell("per_cell", seed=1)
    back.fit_decay_to_bias(v)
    assert torch.allclose(back.trained_v_bias(), v, atol=1e-3)  # within the sigmoid's 1e-4 ends
    for scheme, want in (("per_row", v.mean(0, keepdim=True)), ("per_column", v.mean(1, keepdim=True)),
                         ("global", v.mean())):
        c = _cell(scheme)
        c.fit_decay_to_bias(v)
        assert torch.allclose(c.trained_v_bias(), want.expand_as(v), atol=1e-6), scheme
    add = 0.2 + 0.1 * torch.rand(1, 12, dtype=torch.float64) + 0.1 * torch.rand(5, 1, dtype=torch.float64)
    rng = DEV.v_bias_max_v - DEV.v_bias_min_v  # an additive matrix strictly inside the range (the ends are sigmoid limits)
    add = DEV.v_bias_min_v + 0.3 * rng + (add - add.min()) * 0.4 * rng / float(add.max() - add.min())
    rc = _cell("row_col")
    rc.fit_decay_to_bias(add)
    assert torch.allclose(rc.trained_v_bias(), add, atol=1e-6)
    with pytest.raises(ConfigError, match="expected \\(5, 12\\)"):
        rc.fit_decay_to_bias(add.t())


def test_row_col_ablations_saturate_tau_at_the_right_end():
    for name, want in (("tau_min", DEV.tau_min_s), ("tau_max", DEV.tau_max_s)):
        agent = type("A", (), {})()
        agent.cell = _cell("row_col")
        apply_ablation(agent, name)
        assert torch.allclose(agent.cell.tau_s(), torch.full((5, 12), want, dtype=torch.float64), rtol=1e-3), name


def test_bad_decay_addressing_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="decay_addressing = 'diagonal'"):
        ArchConfig(decay_addressing="diagonal")
    with pytest.raises(ConfigError, match="only the m-STPN"):
        ArchConfig(cell="stpn", decay_addressing="row_col")
    with pytest.raises(ConfigError, match="init_decay_addressing needs init_from"):
        TrainConfig(init_decay_addressing="row_col")
    out = subprocess.run([sys.executable, "-m", "stoxbar.scripts.cli", "train", "--decay-addressing", "diagonal"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--decay-addressing" in out.stderr and "Traceback" not in out.stderr


TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


def test_fine_tuning_under_a_scheme_starts_from_the_fitted_biases_and_they_train(tmp_path):
    base = train(TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=10, runs_dir=str(tmp_path / "a"),
                             seed=3), echo=lambda s: None)
    start, ckpt = load_agent(base / "checkpoint.pt")
    with torch.no_grad():  # a plastic start: 10 steps leave Gamma too small for pulses, and without F no decay to learn
        start.cell.gam.mul_(30)
    save_checkpoint(tmp_path / "plastic.pt", start, train_config=ckpt["train_config"])
    cfg = TrainConfig(num_envs=2, rollout_len=5, total_steps=40, log_every=1, runs_dir=str(tmp_path / "b"), seed=4,
                      lr=3e-3, init_from=str(tmp_path / "plastic.pt"), init_decay_addressing="row_col")
    moved, _ = start_agent(cfg)
    assert moved.arch.decay_addressing == "row_col"
    v0 = start.cell.trained_v_bias().detach()
    vm = moved.cell.trained_v_bias().detach()  # the two-way additive least-squares fit of the start's biases
    fit = v0.mean(0, keepdim=True) + v0.mean(1, keepdim=True) - v0.mean()
    assert torch.allclose(vm, fit.clamp(DEV.v_bias_min_v, DEV.v_bias_max_v), atol=2e-3)
    for k, p in start.state_dict().items():  # everything else is the checkpoint's
        if k not in ("cell.theta",):
            assert torch.equal(p, moved.state_dict()[k]), k
    run = train(cfg, echo=lambda s: None)
    tuned, ckpt = load_agent(run / "checkpoint.pt")
    assert tuned.arch.decay_addressing == "row_col" and ckpt["train_config"]["init_decay_addressing"] == "row_col"
    drift = param_drift(tuned, initial_cell_params(TrainConfig.from_dict(ckpt["train_config"])))
    assert drift["theta_drift"] > 0 and drift["theta_row_drift"] > 0  # both line parts moved
    assert _additive_residual(tuned.cell.trained_v_bias().detach()) < 1e-9
