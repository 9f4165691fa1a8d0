"""Asynchronous emulator groups of the A2C runner (cfg.env_groups 2): the same update as one group."""

import numpy as np
import pytest
import torch

import stoxbar.pong.a2c as A
from stoxbar.core.validation import ConfigError
from stoxbar.pong.agent import ArchConfig, PongAgent


def _run(groups: int, updates: int = 3):
    torch.manual_seed(0)
    arch = ArchConfig()
    cfg = A.TrainConfig(arch=arch, num_envs=4, rollout_len=5, env_groups=groups)
    agent = PongAgent(arch)
    runner = A.A2CRunner(agent, A.make_optimizer(agent, cfg), cfg, env_seed=3)
    try:
        terms = [runner.update()[0] for _ in range(updates)]
        return terms, np.concatenate(runner.obs), runner.state, agent.cell.theta.detach().clone()
    finally:
        runner.close()


def test_two_groups_give_the_same_updates_as_one():
    t1, obs1, st1, th1 = _run(1)
    t2, obs2, st2, th2 = _run(2)
    assert np.array_equal(obs1, obs2)  # the same games, the same actions (sampling is row by row)
    for a, b in zip(t1, t2):
        for k in ("loss", "policy_loss", "value_loss", "entropy", "grad_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7), k
    for s1, s2 in zip(st1, st2):
        assert s1.shape == s2.shape
        torch.testing.assert_close(s1, s2, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(th1, th2, rtol=1e-5, atol=1e-6)


def test_groups_bad_input():
    with pytest.raises(ConfigError, match="env_groups"):
        A.TrainConfig(num_envs=4, env_groups=3)
    with pytest.raises(ConfigError, match="divisible by env_groups"):
        A.TrainConfig(num_envs=5, env_groups=2)


def _run_threaded(updates: int = 2):
    torch.manual_seed(1)
    arch = ArchConfig()
    cfg = A.TrainConfig(arch=arch, num_envs=4, rollout_len=5, env_groups=2, group_threads=True)
    agent = PongAgent(arch)
    runner = A.A2CRunner(agent, A.make_optimizer(agent, cfg), cfg, env_seed=3)
    try:
        terms = [runner.update()[0] for _ in range(updates)]
        return terms, np.concatenate(runner.obs), agent.cell.theta.detach().clone(), agent.cell.W.detach().clone()
    finally:
        runner.close()


def test_group_threads_are_reproducible_and_train():
    t1, obs1, th1, w1 = _run_threaded()
    t2, obs2, th2, w2 = _run_threaded()
    assert np.array_equal(obs1, obs2)  # each group samples from its own seeded generator
    for a, b in zip(t1, t2):
        for k in ("loss", "value_loss", "entropy", "grad_norm"):
            assert np.isfinite(a[k]) and a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-8), k
    torch.testing.assert_close(th1, th2, rtol=1e-5, atol=1e-7)
    torch.manual_seed(1)
    fresh = PongAgent(ArchConfig())
    assert not torch.equal(fresh.cell.W.detach(), w1)  # the optimiser stepped with both groups' gradients
    with pytest.raises(ConfigError, match="group_threads needs env_groups"):
        A.TrainConfig(num_envs=4, group_threads=True)
