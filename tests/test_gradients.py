"""Gradient directions (pong/gradients.py, `stoxbar gradients`): the statistics by hand and against known
signals, their sign-flip null, the tied decay rows, and a real run on the shipped agent with real Pong."""

from __future__ import annotations

import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.pong.a2c import TrainConfig
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, load_agent
from stoxbar.pong.gradients import (StateGradProbe, direction_stats, gradient_directions, recurrent_gain,
                                    state_gradient_profile, tied_views)
from stoxbar.pong.rollout import evaluate_actions
from stoxbar.scripts.cli import main


def test_direction_stats_by_hand():
    """Two samples of two entries: mean (2, 3), unbiased variance (2, 2), t = (2, 3); the two-sided 5 % critical
    value of t with 1 degree of freedom is 12.71, so nothing is significant; signal power (13 - 4/2) / 4."""
    r = direction_stats(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), flips=0)
    assert (r["entries"], r["live"], r["significant"]) == (2, 2, 0.0)
    assert r["median_abs_t"] == pytest.approx(2.0)  # torch's median of two values is the lower one
    assert r["signal_power"] == pytest.approx(2.75)
    assert r["rms_gradient"] == pytest.approx(((1 + 9) / 2 + (4 + 16) / 2) ** 0.5 / 2 ** 0.5)
    assert "null_significant" not in r


def test_noise_has_no_direction_and_a_signal_has_one():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(32, 4000, generator=gen)
    r = direction_stats(noise, flips=50, generator=gen)
    assert 0.035 < r["significant"] < 0.065 and 0.035 < r["null_significant"] < 0.065  # the test's level, 5 %
    assert r["median_abs_t"] == pytest.approx(0.682, abs=0.04)  # median |t| of Student's t, 31 dof
    assert abs(r["signal_power"]) < 0.02 and abs(r["null_signal_power"]) < 0.02
    # mean 0.5 per entry, noise 1: signal power 0.25, t ~ 0.5 sqrt(32) = 2.8 -> most entries significant
    r = direction_stats(noise + 0.5, flips=50, generator=gen)
    assert r["signal_power"] == pytest.approx(0.25, abs=0.03)
    assert r["significant"] > 0.6 and r["null_significant"] < 0.08 and r["null_signal_power_q95"] < 0.03
    assert r["p_significant"] == r["p_signal_power"] == pytest.approx(1 / 51)  # no null draw reaches a real direction
    # entries that never receive a gradient are counted but left out of the t statistics
    sparse = torch.cat([noise + 0.5, torch.zeros(32, 4000)], dim=1)
    s = direction_stats(sparse, flips=0)
    assert (s["entries"], s["live"]) == (8000, 4000) and s["significant"] == pytest.approx(r["significant"])


def test_tied_rows_sum_the_decay_gradient_over_units_inputs_and_all():
    agent = PongAgent(ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16))
    views = tied_views(agent)
    assert set(views) == {"cell.theta[unit]", "cell.theta[input]", "cell.theta[all]"}
    g = torch.randn(agent.cell.theta.shape)
    assert torch.equal(views["cell.theta[unit]"][1](g), g.sum(1))
    assert torch.equal(views["cell.theta[input]"][1](g), g.sum(0))
    assert views["cell.theta[all]"][1](g).item() == pytest.approx(float(g.sum()), rel=1e-6)
    stpn = PongAgent(ArchConfig(arch="bottleneck", cell="stpn", hidden=8, bottleneck=16))
    assert set(tied_views(stpn)) == {"cell.lam[unit]", "cell.lam[input]", "cell.lam[all]"}


def test_gradient_directions_of_the_shipped_agent_on_real_pong_are_reproducible(tmp_path, capsys):
    agent, ckpt = load_agent(SHIPPED_CHECKPOINT)
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    kw = dict(rollouts=2, envs=4, minibatches=2, rollout_len=12, seed=7, flips=20)
    a = gradient_directions(agent, cfg, **kw)
    b = gradient_directions(agent, cfg, **kw)
    assert a == b and a["samples"] == 4
    rows = a["rows"]
    assert {"cell.W", "cell.gam", "cell.theta", "cell.theta[unit]", "cell.theta[all]", "actor.weight"} <= set(rows)
    assert rows["cell.theta"]["entries"] == agent.cell.theta.numel() and rows["cell.theta[unit]"]["entries"] == 64
    assert rows["cell.W"]["rms_gradient"] > 0 and 0 < rows["cell.theta"]["live"] <= rows["cell.theta"]["entries"]
    out = tmp_path / "g.json"
    assert main(["gradients", str(SHIPPED_CHECKPOINT), "--rollouts", "1", "--envs", "2", "--minibatches", "2",
                 "--rollout-len", "4", "--flips", "5", "--only", "cell.theta", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cell.theta[all]" in text and "cell.W " not in text and out.exists()
    for argv, msg in ((["--rollouts", "0"], "rollouts = 0"), (["--envs", "4", "--minibatches", "5"], "minibatches = 5"),
                      (["--rollouts", "1", "--minibatches", "1"], "rollouts x minibatches = 1"),
                      (["--json", str(out)], "--json")):
        assert main(["gradients", str(SHIPPED_CHECKPOINT), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("stoxbar gradients: error:") and msg in err and "\n" not in err


def test_state_grad_probe_records_the_gradient_reaching_each_carried_state():
    """The probe's per-step norms equal the gradients autograd keeps on the carried states themselves."""
    from test_training import _real_pong_batch

    frames, actions, _, dones = _real_pong_batch(T=10, N=3, warm=20)
    frames = torch.from_numpy(__import__("numpy").stack(frames))
    torch.manual_seed(1)
    agent = PongAgent(ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16))
    state0 = tuple(torch.rand_like(s) for s in agent.initial_state(3))
    kept = []

    class Keep(StateGradProbe):
        def __call__(self, state):
            state = super().__call__(state)
            for x in state:
                if x.requires_grad:
                    x.retain_grad()
            kept.append(state)
            return state

    probe = Keep()
    logp = evaluate_actions(agent, frames, actions, dones, state0, probe)[0]
    (-logp.sum()).backward()
    norms = probe.norms(3)  # [T, B, 2]
    assert norms.shape == (10, 3, 2) and float(norms[:-1].min()) > 0
    for t, state in enumerate(kept[:-1]):
        for i, x in enumerate(state):
            torch.testing.assert_close(norms[t, :, i], x.grad.reshape(3, -1).norm(dim=1))

    # a cut: F detached at every step, the BPTT runs through h only: no gradient reaches a carried F, and the
    # parameters' gradient is that of a carry that detaches F itself, and not the full BPTT's
    g_full = [p.grad.clone() for p in agent.parameters() if p.grad is not None]
    agent.zero_grad()
    cut = StateGradProbe(cut="F")
    logp = evaluate_actions(agent, frames, actions, dones, state0, cut)[0]
    (-logp.sum()).backward()
    g_cut = [p.grad.clone() for p in agent.parameters() if p.grad is not None]
    assert float(cut.norms(3)[..., 1].abs().max()) == 0.0 and float(cut.norms(3)[:-1, :, 0].min()) > 0
    agent.zero_grad()
    logp = evaluate_actions(agent, frames, actions, dones, state0, lambda s: (s[0], s[1].detach()))[0]
    (-logp.sum()).backward()
    for a, b in zip(g_cut, [p.grad for p in agent.parameters() if p.grad is not None]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not all(torch.allclose(a, b) for a, b in zip(g_cut, g_full))
    with pytest.raises(ConfigError, match="cut_state = 'G'"):
        StateGradProbe(cut="G")


def test_state_gradient_profile_on_real_pong(tmp_path, capsys):
    agent, ckpt = load_agent(SHIPPED_CHECKPOINT)
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    kw = dict(rollouts=1, envs=4, minibatches=2, rollout_len=12, seed=7)
    a = state_gradient_profile(agent, cfg, clips=(1e6, 1e-9), **kw)
    assert a == state_gradient_profile(agent, cfg, clips=(1e6, 1e-9), **kw)  # reproducible
    assert len(a["minibatches"]) == 2
    for rec in a["minibatches"]:
        assert rec["grad_norm"] > 0 and rec["state_grad_max"] > 0 and rec["peak_over_median"] >= 1.0
        assert 0 <= rec["peak_step"] < 12
        assert rec["clipped"]["1e+06"]["grad_norm"] == pytest.approx(rec["grad_norm"], rel=1e-6)
        assert rec["clipped"]["1e+06"]["cosine"] == pytest.approx(1.0, abs=1e-5)
        assert rec["clipped"]["1e-09"]["cosine"] < 0.9999  # ~no BPTT through (h, F) is another gradient
    out = tmp_path / "p.json"
    assert main(["gradients", str(SHIPPED_CHECKPOINT), "--state-profile", "--clips", "0.3", "--rollouts", "1",
                 "--envs", "2", "--minibatches", "2", "--rollout-len", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "clip 0.3: norm, cos" in text and "spectral radius" in text and out.exists()
    for argv, msg in ((["--state-profile", "--clips", "0"], "state_grad_clip = 0"),
                      (["--clips", "0.3"], "--clips needs --state-profile"),
                      (["--state-profile", "--hebbian-grad", "sometimes"], "hebbian_grad = 'sometimes'"),
                      (["--cut-state", "F"], "--cut-state needs --state-profile")):
        assert main(["gradients", str(SHIPPED_CHECKPOINT), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("stoxbar gradients: error:") and msg in err and "\n" not in err


def test_recurrent_gain_of_the_m_stpn_h_to_h_map():
    torch.manual_seed(0)
    agent = PongAgent(ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16))
    c = agent.cell
    with torch.no_grad():
        c.W.zero_()
        c.W[torch.arange(8), c.n_in + torch.arange(8)] = 0.5  # h -> h: 0.5 x identity; the x inputs: 0
        c.gain.fill_(3.0)
    g = recurrent_gain(agent)
    assert g["sigma_max"] == pytest.approx(1.5) and g["spectral_radius"] == pytest.approx(1.5)
    c.h_feedback = False
    assert recurrent_gain(agent) is None
    assert recurrent_gain(PongAgent(ArchConfig(arch="bottleneck", cell="stpn", hidden=8, bottleneck=16))) is None
