"""Recurrent PPO (pong/ppo.py): the clipped loss by hand, replay equals rollout, learning on real frames,
the training loop (logs, resume, threads) and bad input."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.pong.a2c import TrainConfig, evaluate_actions, make_optimizer, train, train_main
from stoxbar.pong.agent import ArchConfig, PongAgent, StateGradClip
from stoxbar.pong.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stoxbar.pong.ppo import PPORunner, ppo_loss
from stoxbar.pong.rollout import GRAD_WARMUP, GRAD_WINDOW, SpikeGuard
from test_training import _real_pong_batch  # random-play frames of real Pong, as the A2C tests use

TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


def test_ppo_loss_matches_hand_computation():
    """Two samples: one ratio inside the clip range, one outside (its gradient is cut)."""
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.55, 0.8]])).requires_grad_(True)  # ratios 1.1, 1.6
    adv = torch.tensor([[1.0, 3.0]])  # normalised: (-1/sqrt2, +1/sqrt2) (std of two values = sqrt 2)
    v_old = torch.tensor([[0.0, 0.0]])
    v_new = torch.tensor([[0.5, 0.05]])
    ret = torch.tensor([[1.0, 1.0]])
    ent = torch.tensor([[1.0, 2.0]])
    loss, terms = ppo_loss(new, old, v_new, v_old, ent, adv, ret, clip_coef=0.2, value_coef=0.5, entropy_coef=0.01)
    a = np.array([-1.0, 1.0]) / np.sqrt(2.0)
    r = np.array([1.1, 1.6])
    pg = np.maximum(-a * r, -a * np.clip(r, 0.8, 1.2)).mean()
    # value clip 0.2: 0.5 -> 0.2 (error 0.8^2 larger than 0.5^2), 0.05 stays (0.95^2 both)
    vl = 0.5 * np.mean([max(0.5 ** 2, 0.8 ** 2), 0.95 ** 2])
    assert terms["policy_loss"] == pytest.approx(pg, rel=1e-6)
    assert terms["value_loss"] == pytest.approx(vl, rel=1e-6)
    assert terms["entropy"] == pytest.approx(1.5)
    assert terms["loss"] == pytest.approx(pg + 0.5 * vl - 0.01 * 1.5, rel=1e-6)
    assert terms["clip_frac"] == pytest.approx(0.5)
    assert terms["approx_kl"] == pytest.approx(np.mean((r - 1) - np.log(r)), rel=1e-5)
    loss.backward()
    assert new.grad[0, 1] == 0.0 and new.grad[0, 0] != 0.0  # the clipped sample gives no policy gradient


def test_rollout_replay_reproduces_the_rollouts_log_probs():
    """The update re-runs each env from its stored (h, F): before any step, the replayed
    log-probabilities and values equal the rollout's (so the first ratio is 1)."""
    torch.manual_seed(0)
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=12, algo="ppo", env_groups=2)
    agent = PongAgent(TINY)
    runner = PPORunner(agent, make_optimizer(agent, cfg), cfg, env_seed=7)
    try:
        runner._rollout()  # a non-zero starting state for the second rollout
        buf, _, _ = runner._rollout()
        assert any(s.abs().sum() > 0 for s in buf["state0"])
        idx = torch.tensor([2, 0])
        with torch.no_grad():
            logp, v, _, _ = evaluate_actions(agent, buf["obs"][:, idx], buf["actions"][:, idx], buf["dones"][:, idx],
                                             tuple(s[idx] for s in buf["state0"]))
        torch.testing.assert_close(logp, buf["logps"][:, idx], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v, buf["values"][:, idx], rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_ppo_steps_raise_the_probability_of_advantaged_actions():
    """On a fixed batch of real frames, PPO steps raise the log-probability of actions with positive
    advantages and lower the others', and the clip bounds how far one update moves them (ratio <= ~1 + clip)."""
    frames, actions, rewards, dones = _real_pong_batch(T=24)
    torch.manual_seed(0)
    agent = PongAgent(TINY)
    state0 = agent.initial_state(4)
    with torch.no_grad():
        logp0, v0, _, _ = evaluate_actions(agent, frames, actions, dones, state0)
    adv = torch.ones_like(logp0)
    adv[:, 2:] = -1.0  # envs 0, 1: favoured actions; envs 2, 3: disfavoured (normalisation keeps the signs)
    opt = torch.optim.Adam(agent.param_groups(5e-3), lr=5e-3)
    kls = []
    for _ in range(30):
        logp, v, ent, _ = evaluate_actions(agent, frames, actions, dones, state0)
        loss, terms = ppo_loss(logp, logp0, v, v0, ent, adv, v0 + adv, 0.1, 0.5, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        agent.apply_constraints()
        kls.append(terms["approx_kl"])
    with torch.no_grad():
        logp1, _, _, _ = evaluate_actions(agent, frames, actions, dones, state0)
    up, down = float((logp1 - logp0)[:, :2].mean()), float((logp1 - logp0)[:, 2:].mean())
    assert up > 0.01 and down < -0.01, (up, down)  # a sign error in the surrogate reverses both
    assert float((logp1 - logp0)[:, :2].exp().mean()) < 1.35  # the clip stops the push at about 1 + 0.1
    assert all(np.isfinite(kls))


def test_state_grad_clip_bounds_each_samples_gradient_and_passes_the_state_unchanged():
    x = torch.randn(3, 4, 5, requires_grad=True)
    clip = StateGradClip(1.0)
    (y, z) = clip((x, torch.zeros(3)))
    assert torch.equal(y, x) and not z.requires_grad
    g = torch.randn(3, 4, 5)
    g[0] *= 10.0 / g[0].norm()  # above the clip: scaled to norm 1, same direction
    g[1] *= 0.1 / g[1].norm()  # below: unchanged
    g[2] = 0.0
    y.backward(g)
    assert float(x.grad[0].norm()) == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(x.grad[0], g[0] / 10.0)
    assert torch.equal(x.grad[1], g[1]) and torch.equal(x.grad[2], g[2])
    assert (clip.clipped, clip.total) == (1, 3)
    with pytest.raises(ConfigError, match="state_grad_clip = 0"):
        StateGradClip(0.0)


def test_ppo_state_grad_clip_between_full_and_truncated_bptt():
    """On real frames: a clip far above the state gradients changes no parameter gradient; a clip near 0 gives
    the gradient of a BPTT cut at every step (each step's state detached)."""
    frames, actions, rewards, dones = _real_pong_batch(T=16)
    frames = torch.from_numpy(np.stack(frames))
    torch.manual_seed(0)
    agent = PongAgent(TINY)
    state0 = tuple(torch.rand_like(s) for s in agent.initial_state(4))
    params = [p for p in agent.parameters() if p.requires_grad]

    def grads(c=0.0, cut=False):
        agent.zero_grad(set_to_none=True)
        if cut:  # the truncated reference, step by step
            x = agent.encode(frames.reshape((-1,) + tuple(frames.shape[2:]))).reshape(16, 4, -1)
            state, hs = state0, []
            for t in range(16):
                h, state = agent.cell(x[t], tuple(s.detach() for s in state), agent.step_params())
                hs.append(h)
                state = agent.reset_state(state, dones[t])
            logits = agent.actor(torch.stack(hs))
            logp = torch.log_softmax(logits, -1).gather(2, actions.unsqueeze(2)).squeeze(2)
        else:
            logp = evaluate_actions(agent, frames, actions, dones, state0, StateGradClip(c) if c else None)[0]
        (-logp.sum()).backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])

    full = grads()
    torch.testing.assert_close(grads(1e6), full, rtol=0, atol=0)
    cut, tiny = grads(cut=True), grads(1e-12)
    torch.testing.assert_close(tiny, cut, rtol=1e-4, atol=1e-7)
    assert float((full - cut).norm()) > 1e-3 * float(full.norm())  # the BPTT through (h, F) is not nothing here


def test_target_kl_stops_the_update_before_the_step_that_exceeds_it():
    """The first minibatch sees the rollout's own policy (approx_kl 0) and steps; with a target near 0 the
    second exceeds it and the update stops there, without its step. Off, every minibatch of every epoch steps."""
    torch.manual_seed(0)
    steps = {}
    for target in (0.0, 1e-12):
        cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=8, algo="ppo", ppo_epochs=2, ppo_minibatches=2,
                          target_kl=target, max_grad_norm=0.5, lr=1e-3)
        agent = PongAgent(TINY)
        opt = make_optimizer(agent, cfg)
        runner = PPORunner(agent, opt, cfg, env_seed=3)
        try:
            terms, _ = runner.update()
        finally:
            runner.close()
        steps[target] = max(int(st["step"]) for st in opt.state.values())
        assert np.isfinite(terms["grad_norm"]) and terms["grad_norm"] > 0
        assert terms.get("kl_stop", 0.0) == (1.0 if target else 0.0) and ("kl_stop" in terms) == bool(target)
    assert steps == {0.0: 4, 1e-12: 1}


def test_recurrent_norm_limit_projects_the_h_to_h_map_and_holds_through_training(tmp_path):
    """MSTPNCell.limit_recurrent_norm scales W's h columns to the bound (x columns untouched; a no-op below it);
    a run with recurrent_norm_max starts projected and stays within the bound after its optimiser steps."""
    from stoxbar.pong.gradients import recurrent_gain

    torch.manual_seed(0)
    agent = PongAgent(TINY)
    c = agent.cell
    with torch.no_grad():
        c.gain.mul_(40.0)  # sigma_max well above 1
    before = recurrent_gain(agent)["sigma_max"]
    x_cols = c.W[:, :c.n_in].clone()
    assert before > 1.0 and c.limit_recurrent_norm(0.5) == pytest.approx(before)
    assert recurrent_gain(agent)["sigma_max"] == pytest.approx(0.5, rel=1e-6)
    assert torch.equal(c.W[:, :c.n_in], x_cols)
    w = c.W.clone()
    c.limit_recurrent_norm(0.6)  # already below: unchanged
    assert torch.equal(c.W, w)
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=8, total_steps=64, checkpoint_every=1, log_every=1,
                      runs_dir=str(tmp_path), seed=2, algo="ppo", ppo_epochs=2, ppo_minibatches=2, lr=1e-2,
                      recurrent_norm_max=0.05)
    run = train(cfg, echo=lambda s: None)
    trained = PongAgent(TINY)
    trained.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
    assert recurrent_gain(trained)["sigma_max"] <= 0.05 * (1 + 1e-6)
    with pytest.raises(ConfigError, match="recurrent_norm_max = 1.0: bounds the m-STPN's h -> h map"):
        TrainConfig(arch=dataclasses.replace(TINY, cell="stpn"), recurrent_norm_max=1.0)
    with pytest.raises(ConfigError, match="recurrent_norm_max"):
        TrainConfig(recurrent_norm_max=-1.0)
    # a fine-tune's agent is the checkpoint's: an STPN start is refused before any run directory exists
    stpn = tmp_path / "stpn.pt"
    save_checkpoint(stpn, PongAgent(dataclasses.replace(TINY, cell="stpn")))
    runs = tmp_path / "finetune"
    with pytest.raises(ConfigError, match="allowed for cell 'stpn'"):
        train(dataclasses.replace(cfg, init_from=str(stpn), runs_dir=str(runs), recurrent_norm_max=1.0),
              echo=lambda s: None)
    assert not runs.exists() or not any(runs.iterdir())



def test_hebbian_grad_setting_reaches_the_trained_cell(tmp_path):
    """``hebbian_grad = "stop_activity"``: the runner sets it on the agent it trains (a runner of the default
    leaves the full gradient); a run trains with it (Gamma and W move, W elsewhere than under the full gradient
    from the same start) and keeps it in its config; a bad value or a non-m-STPN cell is refused with one line
    naming the field."""
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=8, total_steps=64, checkpoint_every=1, log_every=1,
                      runs_dir=str(tmp_path), seed=2, algo="ppo", ppo_epochs=2, ppo_minibatches=2, lr=1e-2,
                      hebbian_grad="stop_activity")
    agent = PongAgent(TINY)
    for setting, flag in (("stop_activity", False), ("full", True)):
        runner = PPORunner(agent, None, dataclasses.replace(cfg, hebbian_grad=setting), env_seed=0)
        runner.close()
        assert agent.cell.hebbian_activity_grad is flag
    torch.manual_seed(2)
    start = PongAgent(TINY).state_dict()
    run = train(cfg, echo=lambda s: None)
    trained = load_checkpoint(run / "checkpoint.pt")
    assert TrainConfig.from_dict(trained["train_config"]).hebbian_grad == "stop_activity"
    for name in ("cell.gam", "cell.W"):
        assert not torch.equal(trained["model"][name], start[name])
    full = load_checkpoint(train(dataclasses.replace(cfg, hebbian_grad="full"), echo=lambda s: None) / "checkpoint.pt")
    assert not torch.allclose(full["model"]["cell.W"], trained["model"]["cell.W"])  # the same start, other gradients
    with pytest.raises(ConfigError, match="hebbian_grad = 'sometimes'.*'full', 'stop_activity'"):
        TrainConfig(hebbian_grad="sometimes")
    with pytest.raises(ConfigError, match="hebbian_grad = 'stop_activity': a setting of the m-STPN's Hebbian"):
        TrainConfig(arch=dataclasses.replace(TINY, cell="stpn"), hebbian_grad="stop_activity")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("threads", [False, True])
def test_ppo_training_run_logs_and_resumes(tmp_path, threads):
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=8, total_steps=64, checkpoint_every=1, log_every=1,
                      runs_dir=str(tmp_path), seed=2, algo="ppo", ppo_epochs=2, ppo_minibatches=2,
                      max_grad_norm=0.5, gae_lambda=0.95, lr=2.5e-4, env_groups=2, group_threads=threads)
    run = train(cfg, echo=lambda s: None)
    rows = _rows(run / "progress.csv")
    assert [int(r["update"]) for r in rows] == [1, 2]
    for r in rows:
        assert float(r["approx_kl"]) >= 0.0 and 0.0 <= float(r["clip_frac"]) <= 1.0
        assert float(r["grad_norm"]) > 0 and np.isfinite(float(r["loss"]))
        assert float(r["lr"]) == pytest.approx(2.5e-4)
    assert float(rows[-1]["W_drift"]) > 0.0  # the plastic layer's weights moved
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["train_config"]["algo"] == "ppo" and ckpt["counters"]["steps"] == 64
    # every optimiser step's pre-clip norm is logged (max per interval) and, applied, kept for the spike guard
    assert all(float(r["grad_norm_max"]) >= float(r["grad_norm"]) > 0 and r["grad_skips"] == "0" for r in rows)
    assert len(ckpt["grad_norms"]) == 2 * 2 * 2 and ckpt["train_config"]["grad_spike"] == 0.0  # updates x epochs x mb
    train(dataclasses.replace(cfg, total_steps=96), resume=str(run), echo=lambda s: None)
    assert load_checkpoint(run / "checkpoint.pt")["counters"]["update"] == 3
    # --resume keeps the run's own grad_spike unless the command line gives one (resume_overrides)
    train(dataclasses.replace(cfg, total_steps=128, grad_spike=50.0), resume=str(run), echo=lambda s: None)
    assert load_checkpoint(run / "checkpoint.pt")["train_config"]["grad_spike"] == 0.0
    train(dataclasses.replace(cfg, total_steps=160, grad_spike=50.0), resume=str(run), echo=lambda s: None,
          resume_overrides=("grad_spike",))
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["train_config"]["grad_spike"] == 50.0 and len(ckpt["grad_norms"]) == 5 * 2 * 2
    train(dataclasses.replace(cfg, total_steps=192, state_grad_clip=0.3), resume=str(run), echo=lambda s: None,
          resume_overrides=("state_grad_clip",))
    assert load_checkpoint(run / "checkpoint.pt")["train_config"]["state_grad_clip"] == 0.3
    rows = _rows(run / "progress.csv")
    assert rows[0]["state_clip_frac"] == "" and 0.0 <= float(rows[-1]["state_clip_frac"]) <= 1.0
    with pytest.raises(ConfigError, match="resume_overrides"):
        train(cfg, resume=str(run), echo=lambda s: None, resume_overrides=("lr",))


def test_spike_guard_skips_norms_far_above_the_median_of_the_applied_ones():
    g = SpikeGuard(20.0)
    assert [g.skip(1.0 + 0.01 * i) for i in range(GRAD_WARMUP - 1)] == [False] * (GRAD_WARMUP - 1)
    assert not g.skip(1e6)  # before GRAD_WARMUP applied steps nothing is judged (the spike is applied)
    assert g.skip(1e6) and g.skip(40.0)  # now: > 20 x the median (~1.1) is skipped ...
    assert not g.skip(15.0) and len(g.norms) == GRAD_WARMUP + 1  # ... a larger but ordinary norm is applied
    assert g.stats() == {"grad_skips": 2.0, "grad_norm_max": 1e6} and g.stats() == {"grad_skips": 0.0, "grad_norm_max": 0.0}
    assert not any(SpikeGuard(0.0, [1.0] * 50).skip(1e9) for _ in range(3))  # factor 0: off
    g = SpikeGuard(20.0, [1.0] * GRAD_WINDOW)  # a checkpoint's window: guarded from the first step
    assert len(g.norms) == GRAD_WINDOW and g.skip(21.0) and not g.skip(19.0)
    for _ in range(GRAD_WINDOW - 1):
        g.skip(1e3)
    with pytest.raises(FloatingPointError, match=f"{GRAD_WINDOW} optimiser steps in a row"):
        g.skip(1e3)


def test_a_spiking_gradient_changes_neither_the_weights_nor_adam(tmp_path):
    """A real PPO update on real Pong whose policy-head gradient is blown up 1e6x by a hook: every optimiser
    step is a spike and is skipped (weights and Adam's moments as before); without the hook the next update
    applies its steps."""
    torch.manual_seed(0)
    agent = PongAgent(TINY)
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=8, algo="ppo", ppo_epochs=2, ppo_minibatches=2,
                      max_grad_norm=0.5, gae_lambda=0.95, lr=2.5e-4, grad_spike=20.0)
    opt = make_optimizer(agent, cfg)
    runner = PPORunner(agent, opt, cfg, env_seed=1)
    try:
        runner.update()  # 4 applied steps: Adam has state
        runner.spikes.norms.extend([runner.spikes.median()] * GRAD_WARMUP)  # past the warm-up
        runner.spikes.stats()
        before = {n: p.detach().clone() for n, p in agent.named_parameters()}
        moments = {n: opt.state[p]["exp_avg_sq"].clone() for n, p in agent.named_parameters() if p in opt.state}
        head = next(p for n, p in agent.named_parameters() if n.startswith("actor") and n.endswith("weight"))
        hook = head.register_hook(lambda g: g * 1e6)
        terms, _ = runner.update()
        hook.remove()
        assert runner.spikes.stats()["grad_skips"] == 4 and terms["grad_norm"] > 1e3
        assert all(torch.equal(p, before[n]) for n, p in agent.named_parameters())
        assert all(torch.equal(opt.state[p]["exp_avg_sq"], moments[n]) for n, p in agent.named_parameters()
                   if p in opt.state)
        runner.update()
        assert runner.spikes.stats()["grad_skips"] == 0
        assert any(not torch.equal(p, before[n]) for n, p in agent.named_parameters())
    finally:
        runner.close()


def test_a_checkpoint_with_a_damaged_spike_window_is_refused(tmp_path):
    cfg = TrainConfig(arch=TINY, num_envs=2, rollout_len=4, total_steps=8, runs_dir=str(tmp_path), algo="ppo",
                      ppo_minibatches=1)
    run = train(cfg, echo=lambda s: None)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    agent = PongAgent(TINY)
    agent.load_state_dict(ckpt["model"])
    extra = {k: ckpt[k] for k in ("optimizer", "train_config", "counters", "recent_returns", "rng")}
    save_checkpoint(run / "checkpoint.pt", agent, **extra, grad_norms=[1.0, float("nan")])
    with pytest.raises(CheckpointError, match="grad_norms is not a list of finite numbers"):
        train(dataclasses.replace(cfg, total_steps=16), resume=str(run), echo=lambda s: None)


def test_ppo_bad_input(capsys):
    with pytest.raises(ConfigError, match="algo"):
        TrainConfig(algo="dqn")
    with pytest.raises(ConfigError, match="ppo_minibatches = 5"):
        TrainConfig(num_envs=4, algo="ppo", ppo_minibatches=5)
    with pytest.raises(ConfigError, match="clip_coef"):
        TrainConfig(algo="ppo", clip_coef=0.0)
    with pytest.raises(ConfigError, match=r"grad_spike = 1.5: allowed: 0 \(off\) or \[2, 1e\+06\]"):
        TrainConfig(grad_spike=1.5)
    assert train_main(["--algo", "ppo", "--grad-spike", "-1"]) == 2
    assert "grad_spike = -1.0: allowed range is [0, 1e+06]" in capsys.readouterr().err
    assert train_main(["--algo", "ppo", "--state-grad-clip", "-0.5"]) == 2
    assert "state_grad_clip = -0.5: allowed range is [0, 1e+06]" in capsys.readouterr().err
    assert train_main(["--algo", "a2c", "--state-grad-clip", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "state_grad_clip = 0.5: a PPO option; allowed for algo 'a2c': 0" in err and len(
        err.strip().splitlines()) == 1
    assert train_main(["--algo", "ppo", "--target-kl", "-0.01"]) == 2
    assert "target_kl = -0.01: allowed range is [0, 10]" in capsys.readouterr().err
    assert train_main(["--algo", "ppo", "--ppo-epochs", "0"]) == 2
    assert "ppo_epochs = 0" in capsys.readouterr().err


def test_comparison_with_ppo_and_settings_saved_before_algo_existed(tmp_path):
    """``train-comparison --algo ppo`` trains PPO runs (PPO's rollout, lambda, clip); a comparison whose
    comparison.json predates the ``algo`` field continues as A2C, and switching it to PPO is refused."""
    import json

    from stoxbar.pong.comparison import ComparisonConfig, run_comparison, run_of

    cfg = ComparisonConfig(agents=("stp_only",), seeds=(0,), frames=4 * 512, arch="bottleneck", hidden=8,
                           bottleneck=16, num_envs=4, algo="ppo", lr=2.5e-4)
    assert run_comparison(tmp_path / "ppo", cfg, chunk_minutes=1e-4, echo=lambda s: None)
    tc = load_checkpoint(run_of(tmp_path / "ppo", "stp_only", 0) / "checkpoint.pt")["train_config"]
    assert (tc["algo"], tc["rollout_len"], tc["gae_lambda"], tc["max_grad_norm"]) == ("ppo", 128, 0.95, 0.5)
    old = dataclasses.replace(cfg, algo="a2c", lr=7e-4, frames=4 * 80)
    (tmp_path / "old").mkdir()
    saved = old.to_dict()
    del saved["algo"]
    (tmp_path / "old" / "comparison.json").write_text(json.dumps(saved))
    assert run_comparison(tmp_path / "old", old, chunk_minutes=1e-4, echo=lambda s: None)
    with pytest.raises(ConfigError, match="other settings"):
        run_comparison(tmp_path / "old", dataclasses.replace(old, algo="ppo"), echo=lambda s: None)
    with pytest.raises(ConfigError, match="algo"):
        ComparisonConfig(algo="sac")


def test_group_threads_update_uses_both_cores_and_takes_the_same_steps(monkeypatch):
    """With group threads the PPO epochs run with two intra-op threads (the emulators are idle then):
    the same optimiser steps as one thread, the thread count restored afterwards."""
    import copy

    torch.manual_seed(0)
    cfg = TrainConfig(arch=TINY, num_envs=4, rollout_len=6, algo="ppo", env_groups=2, ppo_epochs=2,
                      ppo_minibatches=2)
    agent = PongAgent(TINY)
    runner = PPORunner(agent, torch.optim.SGD(agent.parameters(), lr=1.0), cfg, env_seed=5)
    try:
        buf, _, _ = runner._rollout()
    finally:
        runner.close()
    both = PPORunner.__new__(PPORunner)  # the same update code on a copy, without emulators
    both.agent = copy.deepcopy(agent)
    both.opt = torch.optim.SGD(both.agent.parameters(), lr=1.0)
    both.cfg, both._pool = dataclasses.replace(cfg, group_threads=True), None
    both.spikes = SpikeGuard(both.cfg.grad_spike)
    seen = []
    loss = PPORunner._minibatch_loss
    monkeypatch.setattr(PPORunner, "_minibatch_loss", lambda self, *a: seen.append(torch.get_num_threads())
                        or loss(self, *a))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # the training loop's default (--threads 1)
    try:
        torch.manual_seed(1)
        t1 = runner.learn(buf)
        torch.manual_seed(1)
        t2 = both.learn(buf)
        assert seen == [1] * 4 + [2] * 4 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
    assert t1["loss"] == pytest.approx(t2["loss"], rel=1e-5) and t1["grad_norm"] == pytest.approx(t2["grad_norm"], rel=1e-4)
    for (name, p1), p2 in zip(agent.named_parameters(), both.agent.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6, msg=name)


def test_anneal_lr_falls_linearly_to_zero_through_resumes_and_rollbacks(tmp_path):
    """``anneal_lr``: every parameter group's lr is its base x (1 - steps / total_steps) before each update (the
    logged lr, the checkpoint's optimiser state); the base travels with the optimiser state, so a resume to a
    larger total continues from the base, not from the last annealed lr; a rollback scales the base; the CLI
    flag reaches the config, and is kept on --resume."""
    from stoxbar.pong.a2c import CollapseGuard, set_annealed_lr

    cfg = TrainConfig(arch=TINY, num_envs=2, rollout_len=4, total_steps=32, checkpoint_every=1, log_every=1,
                      runs_dir=str(tmp_path), seed=1, algo="ppo", ppo_epochs=1, ppo_minibatches=1, lr=1e-3,
                      theta_lr_scale=3.0, anneal_lr=True)
    run = train(cfg, echo=lambda s: None)
    lrs = [float(r["lr"]) for r in _rows(run / "progress.csv")]
    assert lrs == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])  # 8 steps per update of 32
    groups = load_checkpoint(run / "checkpoint.pt")["optimizer"]["param_groups"]
    bases = sorted(g["lr_base"] for g in groups)
    assert bases[-1] == pytest.approx(3 * bases[0]) and all(g["lr"] == pytest.approx(g["lr_base"] / 4) for g in groups)
    train(dataclasses.replace(cfg, total_steps=64), resume=str(run), echo=lambda s: None)  # base kept: 1e-3 x 1/2 ...
    assert [float(r["lr"]) for r in _rows(run / "progress.csv")][4:] == pytest.approx([5e-4, 3.75e-4, 2.5e-4, 1.25e-4])
    agent = PongAgent(TINY)
    opt = make_optimizer(agent, cfg)
    guard = CollapseGuard(5.0, 0.5)
    guard.checkpointed(0.0, agent, opt)
    set_annealed_lr(opt, 0.5)
    guard.checkpointed(1.0, agent, opt)
    guard.rollback(agent, opt)
    set_annealed_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * 0.5)  # the base halved, then annealed
    train_main(["--arch", "bottleneck", "--hidden", "8", "--bottleneck", "16", "--envs", "2", "--rollout", "4",
                "--steps", "8", "--runs-dir", str(tmp_path / "cli"), "--anneal-lr", "--algo", "ppo",
                "--ppo-minibatches", "1"])
    (cli_run,) = (tmp_path / "cli").iterdir()
    assert TrainConfig.from_dict(load_checkpoint(cli_run / "checkpoint.pt")["train_config"]).anneal_lr is True
    with pytest.raises(ConfigError, match="anneal_lr must be true or false"):
        TrainConfig(anneal_lr="yes")
