"""Pong env checks, A2C maths, learning on real Pong frames, checkpoints, train/resume."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from stoxbar.core import fsio
from stoxbar.pong.a2c import TrainConfig, a2c_loss, evaluate_actions, gae, train, train_main
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import CheckpointError, load_agent, load_checkpoint, new_run_dir, save_checkpoint
from stoxbar.pong.env import STEP_PERIOD_S, check_obs, make_pong_env
from stoxbar.core.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


# -- environment -------------------------------------------------------------------------------


def test_observation_shape_is_checked():
    assert check_obs(np.zeros((2, 84, 84), np.uint8)).shape == (2, 1, 84, 84)
    for bad in (np.zeros((2, 84, 84, 3)), np.zeros((2, 4, 84, 84)), np.zeros((84, 84)), np.zeros((2, 1, 42, 42))):
        with pytest.raises(ConfigError, match=r"expected \[N, 1, 84, 84\]"):
            check_obs(bad)
    with pytest.raises(ConfigError, match="num_envs"):
        check_obs(np.zeros((3, 1, 84, 84)), num_envs=2)
    with pytest.raises(ConfigError, match=r"expected \[B, 1, 84, 84\]"):
        PongAgent.obs_to_tensor(torch.zeros(2, 3, 84, 84, dtype=torch.uint8))


def test_pong_env_shapes_and_determinism():
    assert STEP_PERIOD_S == pytest.approx(4 / 60)
    runs = []
    for _ in range(2):
        env = make_pong_env(2, seed=3)
        obs = env.reset()
        assert obs.shape == (2, 1, 84, 84) and obs.dtype == np.uint8
        frames = [obs]
        for t in range(30):
            obs, r, done, _ = env.step(np.array([t % 6, (t + 3) % 6]))
            frames.append(obs)
        assert r.dtype == np.float32 and done.dtype == bool
        with pytest.raises(ConfigError, match="actions shape"):
            env.step(np.zeros(3, dtype=np.int64))
        env.close()
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])


# -- A2C maths -----------------------------------------------------------------------------------


def test_gae_matches_hand_computation():
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [0.25], [1.0]])
    d = torch.tensor([[False], [True], [False]])
    last = torch.tensor([4.0])
    adv, ret = gae(r, v, d, last, gamma=0.9, lam=1.0)
    # lambda = 1: discounted returns, cut at the end of the game after step 1, bootstrap after step 2
    torch.testing.assert_close(ret[:, 0], torch.tensor([1.0 + 0.9 * 0.0, 0.0, 2.0 + 0.9 * 4.0]))
    torch.testing.assert_close(adv, ret - v)
    adv0, _ = gae(r, v, d, last, gamma=0.9, lam=0.0)  # one-step TD errors
    torch.testing.assert_close(adv0[:, 0], torch.tensor([1 + 0.9 * 0.25 - 0.5, 0.0 - 0.25, 2 + 0.9 * 4 - 1.0]))


def _real_pong_batch(T=32, N=4, warm=60, seed=11):
    """Random-play Pong frames (deterministic); points are lost in the window, so returns != 0."""
    env = make_pong_env(N, seed=seed)
    rng = np.random.default_rng(seed)
    obs = env.reset()
    for _ in range(warm):
        obs, *_ = env.step(rng.integers(0, 6, N))
    frames, actions, rewards, dones = [], [], [], []
    for _ in range(T):
        a = rng.integers(0, 6, N)
        frames.append(obs)
        obs, r, d, _ = env.step(a)
        actions.append(a), rewards.append(r), dones.append(d)
    env.close()
    return frames, torch.tensor(np.array(actions)), torch.tensor(np.array(rewards)), torch.tensor(np.array(dones))


@pytest.mark.parametrize("cell", ["mstpn", "stpn"])
def test_unroll_equals_step_by_step_forward_with_a_reset(cell):
    """PongAgent.unroll (encoder and heads batched over the sequence) gives the numbers and the
    gradients of T calls of forward with the state reset after a finished game."""
    frames, _, _, dones = _real_pong_batch(T=6, N=3, warm=20)
    dones[2, 1] = True  # env 1's game ends after step 2: its (h, F) restart from zero
    torch.manual_seed(3)
    agent = PongAgent(ArchConfig(arch="bottleneck", cell=cell, hidden=8, bottleneck=16))
    state0 = tuple(torch.rand_like(s) for s in agent.initial_state(3))
    logits, values, state = agent.unroll(torch.from_numpy(np.stack(frames)), state0, dones)
    (logits.square().sum() + values.sum()).backward()
    grads = [p.grad.clone() for p in agent.parameters()]
    agent.zero_grad()
    ref, st = [], state0
    for t in range(len(frames)):
        lg, v, st = agent(frames[t], st)
        ref.append((lg, v))
        st = agent.reset_state(st, dones[t])
    (sum(lg.square().sum() + v.sum() for lg, v in ref)).backward()
    torch.testing.assert_close(logits, torch.stack([lg for lg, _ in ref]))
    torch.testing.assert_close(values, torch.stack([v for _, v in ref]))
    for a, b in zip(state, st):
        torch.testing.assert_close(a, b)
    for g, p in zip(grads, agent.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match=r"expected \[T, B, 1, 84, 84\]"):
        agent.unroll(torch.zeros(3, 1, 84, 84, dtype=torch.uint8), state0, dones)


@pytest.mark.parametrize("cell", ["mstpn", "stpn"])
def test_a2c_updates_fit_the_value_of_real_pong_frames(cell):
    """Deterministic: 50 A2C updates on one fixed batch of real Pong frames must explain most of
    the variance of the returns (a constant predictor scores 1.0; broken gradients stay >= 1)."""
    frames, actions, rewards, dones = _real_pong_batch()
    assert (rewards != 0).sum() >= 2  # the batch holds lost points: targets are not trivial
    _, returns = gae(rewards, torch.zeros_like(rewards), dones, torch.zeros(rewards.shape[1]), 0.99, 1.0)
    var = float(returns.var(unbiased=False))
    torch.manual_seed(0)
    agent = PongAgent(ArchConfig(arch="bottleneck", cell=cell, hidden=16, bottleneck=64))
    opt = torch.optim.Adam(agent.param_groups(3e-3), lr=3e-3)
    value_losses = []
    for _ in range(50):
        logps, values, ents, _ = evaluate_actions(agent, frames, actions, dones, agent.initial_state(4))
        loss, terms = a2c_loss(logps, values, ents, returns - values.detach(), returns, value_coef=0.5,
                               entropy_coef=0.01)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 40.0)
        opt.step()
        agent.apply_constraints()
        value_losses.append(terms["value_loss"])
    assert all(np.isfinite(value_losses))
    assert value_losses[-1] < 0.7 * var < value_losses[0], (var, value_losses)
    assert float(agent.cell.W.detach().abs().max()) <= (1.0 if cell == "mstpn" else np.inf)


# -- checkpoints ---------------------------------------------------------------------------------


def _saved(tmp_path, arch=TINY):
    torch.manual_seed(1)
    agent = PongAgent(arch)
    opt = torch.optim.Adam(agent.param_groups(1e-3), lr=1e-3)
    path = save_checkpoint(tmp_path / "ck.pt", agent, optimizer=opt.state_dict(), counters={"update": 3})
    return agent, path


def test_checkpoint_round_trip_is_exact(tmp_path):
    agent, path = _saved(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    loaded, ckpt = load_agent(path, expected_arch=TINY)
    assert ckpt["counters"] == {"update": 3} and "optimizer" in ckpt
    assert loaded.arch == agent.arch and loaded.device_model == agent.device_model
    for (k, a), (k2, b) in zip(agent.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    obs = np.random.default_rng(0).integers(0, 255, (2, 1, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        out_a = agent(obs, agent.initial_state(2))
        out_b = loaded(obs, loaded.initial_state(2))
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])


def test_checkpoint_refuses_other_architecture(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"another architecture.*hidden: checkpoint 8 vs requested 16"):
        load_checkpoint(path, expected_arch=dataclasses.replace(TINY, hidden=16))
    with pytest.raises(CheckpointError, match="cell"):
        load_agent(path, expected_arch=dataclasses.replace(TINY, cell="stpn"))


def test_checkpoint_corrupt_truncated_or_incomplete(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt is corrupt or truncated"):
        load_checkpoint(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    part = tmp_path / "part.pt"
    torch.save({"format": "stoxbar-pong-agent", "version": 1, "arch": TINY.to_dict()}, part)
    with pytest.raises(CheckpointError, match=r"part\.pt lacks keys \['device', 'model'\]"):
        load_checkpoint(part)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["cell.W"]
    torch.save(ckpt, tmp_path / "noweight.pt")
    with pytest.raises(CheckpointError, match=r"missing \['cell.W'\]"):
        load_agent(tmp_path / "noweight.pt")


def test_new_run_dirs_never_collide(tmp_path):
    a = new_run_dir(tmp_path, "train", seed=0)
    b = new_run_dir(tmp_path, "train", seed=0)
    assert a != b and a.is_dir() and b.is_dir() and a.name.startswith("train-") and "seed0" in a.name


# -- the training loop ---------------------------------------------------------------------------


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_logs_checkpoints_and_resumes(tmp_path):
    cfg = TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=40, checkpoint_every=2, log_every=1,
                      snapshot_every=2, runs_dir=str(tmp_path), seed=5)
    run = train(cfg, echo=lambda s: None)
    names = {p.name for p in run.iterdir()}
    assert {"checkpoint.pt", "checkpoint-u0000004.pt", "progress.csv", "config.json", "train.log"} <= names
    ckpt = load_checkpoint(run / "checkpoint.pt", expected_arch=TINY)
    assert ckpt["counters"]["update"] == 4 and ckpt["counters"]["steps"] == 40
    rows = _rows(run / "progress.csv")
    assert [int(r["update"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) and float(r["steps_per_s"]) > 0 for r in rows)
    assert 0.0 <= float(rows[-1]["sparsity"]) <= 1.0
    run2 = train(dataclasses.replace(cfg, total_steps=60), resume=str(run), echo=lambda s: None)
    assert run2 == run
    assert load_checkpoint(run / "checkpoint.pt")["counters"]["update"] == 6
    assert [int(r["update"]) for r in _rows(run / "progress.csv")] == [1, 2, 3, 4, 5, 6]
    assert len(list(tmp_path.iterdir())) == 1  # resuming never opens a second run


def test_fine_tune_starts_from_the_checkpoint_with_sticky_actions(tmp_path):
    """--init-from: a new run starts from the checkpoint's weights (drift 0 before the first step),
    takes its architecture, records the sticky probability, and the weights then move."""
    base = train(TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=10, runs_dir=str(tmp_path / "a"),
                             seed=3), echo=lambda s: None)
    start, _ = load_agent(base / "checkpoint.pt")
    cfg = TrainConfig(num_envs=2, rollout_len=5, total_steps=20, log_every=1, runs_dir=str(tmp_path / "b"),
                      seed=4, sticky=0.25, init_from=str(base / "checkpoint.pt"))  # default arch: replaced
    run = train(cfg, echo=lambda s: None)
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["train_config"]["sticky"] == 0.25 and saved["arch"] == TINY.to_dict()
    assert saved["train_config"]["init_from"] == str((base / "checkpoint.pt").resolve())
    # its lineage, recorded at the start: the start file's bytes and the seed of the run from scratch, also
    # through a second fine-tune (whose start, the first fine-tune, has seed 4)
    assert saved["train_config"]["init_sha256"] == fsio.file_sha256(base / "checkpoint.pt")
    assert saved["train_config"]["init_root_seed"] == 3
    again = train(dataclasses.replace(cfg, init_from=str(run / "checkpoint.pt"), runs_dir=str(tmp_path / "d"),
                                      total_steps=10, seed=5), echo=lambda s: None)
    assert load_checkpoint(again / "checkpoint.pt")["train_config"]["init_root_seed"] == 3
    tuned, _ = load_agent(run / "checkpoint.pt")
    moved = [n for n, p in tuned.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert moved  # trained on from there
    rows = _rows(run / "progress.csv")
    assert 0.0 < float(rows[0]["W_drift"]) < 0.05  # drift is measured from the checkpoint, not a fresh init
    with pytest.raises(ConfigError, match="sticky = 1"):
        TrainConfig(sticky=1.0)
    assert train_main(["--init-from", str(tmp_path / "missing.pt"), "--runs-dir", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()


def test_training_variants_stp_only_and_no_plasticity(tmp_path):
    """The comparison's m-STPN variants train and load back as themselves: STP-only (no h feedback:
    the plastic layer's input ignores h) and the plain recurrent baseline (Gamma stays 0, F stays 0)."""
    for variant in (dict(h_feedback=False), dict(plastic=False)):
        arch = dataclasses.replace(TINY, **variant)
        run = train(TrainConfig(arch=arch, num_envs=2, rollout_len=5, total_steps=20, runs_dir=str(tmp_path),
                                seed=2), echo=lambda s: None)
        agent, _ = load_agent(run / "checkpoint.pt", expected_arch=arch)
        assert agent.arch == arch and agent.cell.h_feedback == arch.h_feedback
        if not arch.plastic:
            assert not agent.cell.gam.requires_grad and torch.count_nonzero(agent.cell.gam) == 0
            _, (_, F) = agent.cell(torch.rand(2, arch.n_in), agent.initial_state(2))
            assert torch.count_nonzero(F) == 0
        else:  # h_prev does not reach the plastic layer
            x, (h0, F0) = torch.rand(2, arch.n_in), agent.initial_state(2)
            a, _ = agent.cell(x, (h0, F0))
            b, _ = agent.cell(x, (torch.rand_like(h0), F0))
            assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="plastic = False: only the m-STPN"):
        ArchConfig(cell="stpn", plastic=False)
    with pytest.raises(ConfigError, match="h_feedback = 'no'"):
        ArchConfig(h_feedback="no")


def test_collapse_guard_restores_the_best_checkpoint_with_a_lower_lr():
    from stoxbar.pong.a2c import CollapseGuard, make_optimizer

    torch.manual_seed(0)
    agent = PongAgent(TINY)
    opt = make_optimizer(agent, TrainConfig(arch=TINY, lr=1e-3))
    off = CollapseGuard(0.0, 0.5)
    off.checkpointed(10.0, agent, opt)
    assert not off.collapsed(-21.0)  # drop 0: never
    guard = CollapseGuard(8.0, 0.5)
    guard.checkpointed(5.0, agent, opt)
    good = {k: v.clone() for k, v in agent.state_dict().items()}
    guard.checkpointed(3.0, agent, opt)  # not better: the copy stays the +5 one
    with torch.no_grad():
        agent.actor.weight.add_(1.0)
    assert not guard.collapsed(-2.9) and guard.collapsed(-3.1)  # 5 - 8 = -3
    assert guard.rollback(agent, opt) == pytest.approx(5e-4)
    assert all(torch.equal(v, good[k]) for k, v in agent.state_dict().items())
    assert [g["lr"] for g in opt.param_groups][0] == pytest.approx(5e-4)
    assert guard.rollback(agent, opt) == pytest.approx(2.5e-4)  # compounding
    with pytest.raises(ConfigError, match="rollback_lr_factor = 0"):
        TrainConfig(rollback_lr_factor=0.0)


def test_training_comparison_trains_the_run_furthest_behind_resumes_and_reports(tmp_path):
    from stoxbar.pong.comparison import ComparisonConfig, comparison_report, parse_runs, run_comparison, run_of

    cfg = ComparisonConfig(agents=("stp_only", "recurrent"), seeds=(0, 1), frames=4 * 80, arch="bottleneck",
                           hidden=8, bottleneck=16, num_envs=2)
    lines: list = []
    # 1 update (40 steps) a turn; two emulator groups of one game, each in its own thread
    assert run_comparison(tmp_path, cfg, chunk_minutes=1e-4, echo=lines.append, group_threads=True)
    assert len(lines) == 8  # 4 runs x 2 turns, each resumed in its own run directory
    order = [" ".join(line.split(":")[1].split()) for line in lines]
    assert order == ["stp_only seed 0", "stp_only seed 1", "recurrent seed 0", "recurrent seed 1"] * 2
    for agent, seed in (("stp_only", 0), ("stp_only", 1), ("recurrent", 0), ("recurrent", 1)):
        run = run_of(tmp_path, agent, seed)
        ck = load_checkpoint(run / "checkpoint.pt")
        assert ck["counters"]["steps"] == 80 and ck["train_config"]["sticky"] == 0.25
        assert ck["train_config"]["group_threads"] is True and ck["train_config"]["env_groups"] == 2
        assert ck["arch"]["h_feedback"] is (agent != "stp_only") and ck["arch"]["plastic"] is (agent != "recurrent")
        assert len(list(run.parent.iterdir())) == 1
    assert run_comparison(tmp_path, cfg, echo=lines.append) and len(lines) == 8  # all finished: nothing to do
    with pytest.raises(ConfigError, match="other settings"):
        run_comparison(tmp_path, dataclasses.replace(cfg, frames=800), echo=lines.append)
    # the spike guard is the one setting a comparison may change: saved, and each run takes it at its next turn
    from stoxbar.pong.comparison import _train_turn, saved_settings

    spiky = dataclasses.replace(cfg, grad_spike=20.0)
    assert run_comparison(tmp_path, spiky, echo=lines.append) and lines[-1].startswith("comparison: grad_spike 0 -> 20")
    assert saved_settings(tmp_path) == spiky
    _train_turn(tmp_path, spiky, "stp_only", 0, 1, 1, 1e-4)
    ck = load_checkpoint(run_of(tmp_path, "stp_only", 0) / "checkpoint.pt")
    assert ck["train_config"]["grad_spike"] == 20.0 and ck["counters"]["steps"] == 80
    with pytest.raises(ConfigError, match="other settings"):
        run_comparison(tmp_path, dataclasses.replace(spiky, lr=1e-3), echo=lines.append)
    with pytest.raises(ConfigError, match="grad_spike = 1.0: allowed: 0"):
        dataclasses.replace(cfg, grad_spike=1.0)
    lines = lines[:8]
    # the run furthest behind goes first: one started elsewhere waits until the others catch up
    ahead = tmp_path / "ahead"
    train(cfg.train_config("recurrent", 1, ahead / "recurrent" / "seed1", 1, 1, 1e-4, False), echo=lambda s: None)
    lines.clear()
    assert run_comparison(ahead, cfg, chunk_minutes=1e-4, echo=lines.append)
    assert [" ".join(line.split(":")[1].split()) for line in lines] == [
        "stp_only seed 0", "stp_only seed 1", "recurrent seed 0", "stp_only seed 0", "stp_only seed 1",
        "recurrent seed 0", "recurrent seed 1"]
    # --first: the chosen runs go to the budget before the others, in the order given
    lines.clear()
    assert run_comparison(tmp_path / "first", cfg, chunk_minutes=1e-4, echo=lines.append,
                          first=parse_runs(cfg, ["recurrent:1", "stp_only:1"]))
    assert [" ".join(line.split(":")[1].split()) for line in lines] == [
        "recurrent seed 1", "recurrent seed 1", "stp_only seed 1", "stp_only seed 1", "stp_only seed 0",
        "recurrent seed 0", "stp_only seed 0", "recurrent seed 0"]
    for bad in ("mstpn:0", "stp_only:2", "stp_only", "stp_only:x"):
        with pytest.raises(ConfigError, match=f"first: '{bad}' is not a run of this comparison; allowed: AGENT:SEED"):
            parse_runs(cfg, [bad])
    rows = comparison_report(tmp_path, window=2)
    assert set(rows) == {"stp_only", "recurrent"} and rows["recurrent"]["seeds"] == 2
    assert rows["recurrent"]["equal_budget_frames"] == 320 and "equal budget of 0.00 M frames" in (
        tmp_path / "comparison.md").read_text()
    assert (tmp_path / "comparison.png").stat().st_size > 0 and "| recurrent | 2 |" in (tmp_path / "comparison.md").read_text()
    # gradient spikes per run: logged intervals far above the run's median norm, steps the guard skipped
    assert rows["recurrent"]["gradient_spikes_per_seed"] == [(0, 0), (0, 0)]
    assert "gradient spikes: logged intervals > 20x the median norm / steps skipped" in (tmp_path / "comparison.md").read_text()
    with pytest.raises(ConfigError, match="agents: 'lstm' unknown"):
        ComparisonConfig(agents=("lstm",))


def test_gradient_spikes_counts_intervals_far_above_the_median_and_the_skipped_steps(tmp_path):
    from stoxbar.pong.comparison import gradient_spikes

    norms = [1.0, 0.8, 1.2, 0.9, 25.0, 1e6, 1.1]  # median 1.1: two intervals above 20x
    rows = ["update,grad_norm,grad_skips"] + [f"{10 * i},{g},{'' if i < 3 else 2}" for i, g in enumerate(norms)]
    (tmp_path / "progress.csv").write_text("\n".join(rows) + "\n")
    assert gradient_spikes(tmp_path) == (2, 8)  # skips logged since session 26 (empty before)
    assert gradient_spikes(tmp_path / "nowhere") == (0, 0)


def test_training_comparison_with_workers_trains_runs_in_processes_of_their_own(tmp_path):
    """``workers`` 2: two runs train at once, each in a worker process (one emulator group, no group
    threads), each turn resumed in the run's own directory, the run furthest behind starting as soon as a
    worker is free; the same budgets and report as one at a time."""
    from stoxbar.pong.comparison import ComparisonConfig, run_comparison, run_of

    cfg = ComparisonConfig(agents=("stp_only", "recurrent"), seeds=(0,), frames=4 * 80, arch="bottleneck",
                           hidden=8, bottleneck=16, num_envs=2)
    lines: list = []
    assert run_comparison(tmp_path, cfg, chunk_minutes=1e-4, echo=lines.append, workers=2)
    assert len(lines) == 4 and all("(worker " in line for line in lines)  # 2 runs x 2 turns of one update
    assert sorted(" ".join(line.split(":")[1].split()) for line in lines) == ["recurrent seed 0"] * 2 + [
        "stp_only seed 0"] * 2
    for agent in cfg.agents:
        run = run_of(tmp_path, agent, 0)
        ck = load_checkpoint(run / "checkpoint.pt")
        assert ck["counters"]["steps"] == 80 and ck["train_config"]["threads"] == 1
        assert ck["train_config"]["env_groups"] == 1 and ck["train_config"]["group_threads"] is False
        assert len(list(run.parent.iterdir())) == 1
    assert run_comparison(tmp_path, cfg, echo=lines.append, workers=2) and len(lines) == 4  # nothing left
    with pytest.raises(ConfigError, match="group_threads: with workers = 2 each run trains in a process of its own"):
        run_comparison(tmp_path, cfg, echo=lines.append, workers=2, group_threads=True)
    with pytest.raises(ConfigError, match="workers = 0"):
        run_comparison(tmp_path, cfg, echo=lines.append, workers=0)


_DRIVER = """
import sys
from stoxbar.pong.comparison import ComparisonConfig, ComparisonInterrupted, run_comparison
cfg = ComparisonConfig(agents=("stp_only", "recurrent"), seeds=(0,), frames=1e7, arch="bottleneck", hidden=8,
                       bottleneck=16, num_envs=2)
try:
    run_comparison(sys.argv[1], cfg, chunk_minutes=30, echo=print, workers=2)
except ComparisonInterrupted as exc:  # as the CLI (scripts/cli.py) reports it
    print(exc, file=sys.stderr)
    sys.exit(130)
"""


def _comparison_driver(root: Path):
    """A comparison of two small runs trained by two workers (the CLI's comparison is the paper agent's:
    too slow to start for a test)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _DRIVER, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_runs(root: Path, agents, timeout_s: float = 120.0) -> list:
    """The run directories of ``agents`` once each is locked by a live worker that has logged an update."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [next(iter(sorted((root / a / "seed0").glob("train-*"))), None) for a in agents]
        if all(r is not None and fsio.lock_holder(r) and (r / "progress.csv").is_file() for r in runs):
            return runs
        time.sleep(0.5)
    raise AssertionError("the comparison's workers did not start")


def test_training_comparison_workers_survive_ctrl_c_and_a_killed_driver(tmp_path):
    """SIGINT to the driver alone (its workers have process groups of their own): each worker finishes
    its update and checkpoints, the driver exits 130 naming the runs. ``kill -9`` of the driver: the
    kernel sends each worker SIGINT (PR_SET_PDEATHSIG), which checkpoints and exits; nothing is left
    holding a run, and the next call resumes both runs from those checkpoints."""
    import signal
    import time

    from stoxbar.pong.comparison import run_of

    agents = ("stp_only", "recurrent")
    drv = _comparison_driver(tmp_path / "int")
    runs = _wait_for_runs(tmp_path / "int", agents)
    drv.send_signal(signal.SIGINT)
    out, err = drv.communicate(timeout=180)
    assert drv.returncode == 130, err
    assert "interrupted by SIGINT; the runs in progress (" in err and "stp_only seed 0" in err and \
        "recurrent seed 0" in err and "finished their update and saved their checkpoints" in err
    for run in runs:
        assert fsio.lock_holder(run) is None
        assert load_checkpoint(run / "checkpoint.pt")["counters"]["steps"] > 0

    drv = _comparison_driver(tmp_path / "kill")
    runs = _wait_for_runs(tmp_path / "kill", agents)
    drv.kill()
    drv.communicate(timeout=30)
    deadline = time.monotonic() + 180
    while any(fsio.lock_holder(r) for r in runs) and time.monotonic() < deadline:
        time.sleep(0.5)
    steps = []
    for run in runs:
        assert fsio.lock_holder(run) is None, "a worker outlived its driver"
        steps.append(load_checkpoint(run / "checkpoint.pt")["counters"]["steps"])
    assert min(steps) > 0
    assert [run_of(tmp_path / "kill", a, 0) for a in agents] == runs  # what the next call resumes


def test_mean_at_budget_reads_a_committed_run_at_an_earlier_budget():
    """The equal-budget column of the comparison report: the last games that ended by the budget, read
    from a committed run's episodes.csv (append-only, so the value at 1 M frames stays), checked against
    the CSV read here independently."""
    from stoxbar.pong.comparison import mean_at_budget, run_of

    run = run_of(ROOT / "training" / "comparison_ppo", "stp_only", 0)
    with open(run / "episodes.csv") as f:
        rows = [(float(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
    by_1m = [ret for fr, ret in rows if fr <= 1e6][-100:]
    assert len(by_1m) == 100 and mean_at_budget(run, 100, 1e6) == pytest.approx(sum(by_1m) / 100)
    assert mean_at_budget(run, 100, 1e6) == pytest.approx(-20.56)  # golden: the run at 1 M frames
    assert mean_at_budget(run, 100, 4e6) > mean_at_budget(run, 100, 1e6) + 4  # the run that learns
    assert math.isnan(mean_at_budget(run, 100, 0))  # no game ended by then


def test_train_cli_reports_bad_config(capsys):
    assert train_main(["--envs", "0"]) == 2
    assert "num_envs = 0" in capsys.readouterr().err


def test_compare_curves_cuts_runs_at_the_same_budget(tmp_path):
    from stoxbar.pong.a2c import compare_curves

    runs = []
    for cell, returns in (("mstpn", [-21.0, -19.0, -15.0, -5.0]), ("stpn", [-20.0, -20.0, -18.0])):
        d = tmp_path / cell
        d.mkdir()
        (d / "config.json").write_text(f'{{"arch": {{"arch": "paper", "cell": "{cell}"}}, "seed": 1}}')
        with open(d / "episodes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["episode", "steps", "frames", "return", "length"])
            for i, r in enumerate(returns):
                w.writerow([i + 1, (i + 1) * 1000, (i + 1) * 4000, r, 900])
        runs.append(d)
    out = tmp_path / "curves.png"
    summary = compare_curves(runs, out, window=2, max_frames=12_000)
    assert summary[str(runs[0])]["mean_return_last_2"] == -17.0  # games at 8k and 12k frames
    assert summary[str(runs[1])]["mean_return_last_2"] == -19.0
    assert summary[str(runs[0])]["games"] == 3 and out.stat().st_size > 5_000
    with pytest.raises(FileExistsError):
        compare_curves(runs, out)
