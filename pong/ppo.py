"""PPO for the Pong agent, with truncated BPTT through the carried (h, F) (``stoxbar train --algo ppo``).

The recurrent PPO of CleanRL's ``ppo_atari_lstm.py`` (the issue's reference for style and settings;
read, not copied), adapted to this agent:

* **Rollout** (no graph): N envs step T = ``rollout_len`` agent steps with the current policy; kept:
  the uint8 frames, actions, their log-probabilities, values, rewards, game ends, and the (h, F) each
  env started the rollout with. The envs run as ``env_groups`` asynchronous groups (ale-py
  send/recv) so the emulators play while the other group's forward pass runs, as A2C's runner.
* **Advantages** by GAE (``gamma``, ``gae_lambda``: CleanRL's 0.99 / 0.95 via the CLI defaults of
  ``--algo ppo``), bootstrapped with V of the observation after the rollout.
* **Update**: ``ppo_epochs`` passes; each splits the N envs into ``ppo_minibatches`` groups of whole
  env sequences (the recurrent state forbids mixing steps of one env across minibatches), re-runs
  the agent over each group's T steps from its stored starting (h, F) (resets at game ends, as in the
  rollout: BPTT through the whole window) and takes one Adam step on the clipped surrogate
  ``max(-A r, -A clip(r, 1 - c, 1 + c))`` (advantages normalised over the minibatch) + ``value_coef`` x
  clipped value loss (CleanRL's ``clip_vloss``, 0.5 (R - V)^2 at the larger of the clipped and
  unclipped errors) - ``entropy_coef`` x entropy, global grad-norm clip ``max_grad_norm``, then the
  device constraints. With ``group_threads`` (the setting that uses both cores) the update runs with
  ``UPDATE_THREADS`` intra-op threads: the emulators are idle then, and the epochs on one real
  rollout took 5.66 s this way against 6.19 s with each minibatch split between two threads of one
  intra-op thread each (the layout before; quiet machine, BENCHMARKS.md).
* The (h, F) carried into the next rollout is the rollout's, computed with the pre-update policy
  (CleanRL's convention).
* With ``target_kl`` (default off) the update stops at the first minibatch whose ``approx_kl`` (measured
  before its step, against the rollout's policy) exceeds it, without that step: Stable-Baselines3's PPO
  ``target_kl`` early stop (SB3 stops at 1.5 x its target; here at the value given). It bounds how far
  one update moves the policy whatever its gradients say (docs/stpn.md §11.3).

Logged per update (progress.csv): the loss terms of the last minibatch step averaged over the update,
``approx_kl`` (CleanRL's ``(r - 1) - log r`` estimator), ``clip_frac`` (share of ratios outside
the clip range) and, with ``target_kl``, ``kl_stop`` (the share of updates it stopped).

May import: torch, numpy, stoxbar.pong.{env,rollout}.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from stoxbar.pong.agent import StateGradClip
from stoxbar.pong.rollout import EnvRunner, detach_state, evaluate_actions, gae
from stoxbar.pong.env import OBS_SHAPE

UPDATE_THREADS = 2  # intra-op threads of a group-threads update: the two cores of the machines we train on


@contextmanager
def intra_op_threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads in this thread (None: unchanged), then restore."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def ppo_loss(new_logp: Tensor, old_logp: Tensor, values: Tensor, old_values: Tensor, entropies: Tensor,
             advantages: Tensor, returns: Tensor, clip_coef: float, value_coef: float, entropy_coef: float,
             normalize: bool = True) -> Tuple[Tensor, Dict[str, float]]:
    """The clipped PPO loss over one minibatch (module docstring); every tensor [T, n].

    ``normalize``: the advantages are normalised here over the given tensor (:func:`normalized`);
    False when the caller normalised them over the whole minibatch (a minibatch split between threads).
    Returns (loss, terms) with terms loss, policy_loss, value_loss, entropy, approx_kl, clip_frac.
    """
    adv = normalized(advantages) if normalize else advantages
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)).mean()
    v_clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    value_loss = 0.5 * torch.max((values - returns).pow(2), (v_clipped - returns).pow(2)).mean()
    entropy = entropies.mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_frac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    terms = {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
             "approx_kl": approx_kl, "clip_frac": clip_frac}
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def normalized(advantages: Tensor) -> Tensor:
    """Advantages with mean 0 and std 1 over all elements (a single element is only centred)."""
    adv = advantages - advantages.mean()
    return adv / (advantages.std() + 1e-8) if adv.numel() > 1 else adv


class PPORunner(EnvRunner):
    """The environments, the carried (h, F) and one PPO update (rollout without graph, then
    ``ppo_epochs`` x ``ppo_minibatches`` optimiser steps)."""

    # -- rollout ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _rollout(self):
        """T steps in all envs with the current policy; returns the buffers and the finished games."""
        agent, cfg = self.agent, self.cfg
        G, T, N = cfg.env_groups, cfg.rollout_len, cfg.num_envs
        n = N // G
        state0 = detach_state(self.state)
        states = [tuple(s[g * n:(g + 1) * n] for s in state0) for g in range(G)]
        obs = np.empty((T, N) + OBS_SHAPE, dtype=np.uint8)
        actions = torch.zeros(T, N, dtype=torch.long)
        logps, values = torch.zeros(T, N), torch.zeros(T, N)
        rewards, dones = ([[None] * G for _ in range(T)] for _ in range(2))
        finished: List[Tuple[int, float, int]] = []
        sparsity: List[float] = []
        params = agent.step_params()
        for t in range(T):
            for g in range(G):
                if t > 0:  # group g's emulators played step t-1 while the other group computed
                    states[g] = self._finish_step(g, t - 1, states[g], rewards, dones, finished)
                sl = slice(g * n, (g + 1) * n)
                obs[t, sl] = self.obs[g]
                logits, value, states[g] = agent(self.obs[g], states[g], params)
                logp_all = torch.log_softmax(logits, -1)
                a = torch.multinomial(logp_all.exp(), 1).squeeze(1)
                sp = getattr(agent.cell, "last_sparsity", None)
                if sp is not None:
                    sparsity.append(sp)
                actions[t, sl], values[t, sl] = a, value
                logps[t, sl] = logp_all.gather(1, a.unsqueeze(1)).squeeze(1)
                self.envs[g].send(a.numpy())
        for g in range(G):
            states[g] = self._finish_step(g, T - 1, states[g], rewards, dones, finished)
        last_value = torch.cat([agent(self.obs[g], states[g], params)[1] for g in range(G)])
        self.state = tuple(torch.cat(parts) for parts in zip(*states))
        cat = lambda rows: torch.stack([torch.cat(r) for r in rows])  # noqa: E731  [T][G] -> [T, N]
        dones_t = cat(dones)
        adv, ret = gae(cat(rewards), values, dones_t, last_value, cfg.gamma, cfg.gae_lambda)
        buf = {"obs": torch.from_numpy(obs), "actions": actions, "logps": logps, "values": values,
               "dones": dones_t, "adv": adv, "ret": ret, "state0": state0}
        return buf, sorted(finished), (float(np.mean(sparsity)) if sparsity else float("nan"))

    # -- update ----------------------------------------------------------------------------------
    def _minibatch_loss(self, buf, idx: Tensor, adv: Tensor, carry=None) -> Dict[str, float]:
        """Replay envs ``idx`` over the rollout from their starting state and back-propagate the loss;
        ``adv`` [T, len(idx)]: their advantages, normalised over the minibatch; ``carry``: applied to the state
        each step carries (default: the state-gradient clip of ``cfg.state_grad_clip``, if any)."""
        cfg = self.cfg
        state = tuple(s[idx] for s in buf["state0"])
        obs = buf["obs"][:, idx]
        clip = StateGradClip(cfg.state_grad_clip) if carry is None and cfg.state_grad_clip else None
        new_logp, new_v, ents, _ = evaluate_actions(self.agent, obs, buf["actions"][:, idx], buf["dones"][:, idx],
                                                    state, clip if carry is None else carry)
        loss, terms = ppo_loss(new_logp, buf["logps"][:, idx], new_v, buf["values"][:, idx], ents, adv,
                               buf["ret"][:, idx], cfg.clip_coef, cfg.value_coef, cfg.entropy_coef, normalize=False)
        loss.backward()
        if clip is not None:  # the share of the state gradients the clip scaled (docs/stpn.md §11.2)
            terms["state_clip_frac"] = clip.clipped / max(clip.total, 1)
        return terms

    def _minibatch_step(self, buf, idx: Tensor) -> Dict[str, float]:
        """One optimiser step on envs ``idx``; none where the policy has already moved more than
        ``cfg.target_kl`` from the rollout's (``kl_stop`` 1 in the returned terms: the update stops)."""
        self.opt.zero_grad(set_to_none=True)
        adv = normalized(buf["adv"][:, idx])  # over the whole minibatch
        terms = self._minibatch_loss(buf, idx, adv)
        if self.cfg.target_kl and terms["approx_kl"] > self.cfg.target_kl:
            self.opt.zero_grad(set_to_none=True)
            return dict(terms, kl_stop=1.0)
        return self._step(terms)  # clip, Adam step, device constraints

    def learn(self, buf) -> Dict[str, float]:
        """The PPO epochs on one rollout's buffers; returns the loss terms averaged over the steps."""
        cfg = self.cfg
        acc: Dict[str, float] = {}
        steps = 0
        stop = False
        with intra_op_threads(UPDATE_THREADS if cfg.group_threads else None):
            for _ in range(cfg.ppo_epochs):
                for idx in torch.randperm(cfg.num_envs).tensor_split(cfg.ppo_minibatches):
                    terms = self._minibatch_step(buf, idx)
                    stop = bool(terms.pop("kl_stop", 0.0))
                    for k, v in terms.items():
                        acc[k] = acc.get(k, 0.0) + v
                    steps += 1
                    if stop:
                        break
                if stop:
                    break
        out = {k: v / steps for k, v in acc.items() if k != "grad_norm"}
        applied = steps - stop  # the stopping minibatch took no step (and has no grad_norm)
        if "grad_norm" in acc:
            out["grad_norm"] = acc["grad_norm"] / applied
        if cfg.target_kl:  # per update: 1 if the KL stopped it (the log's mean: the share of updates stopped)
            out["kl_stop"] = float(stop)
        return out

    def update(self) -> Tuple[Dict[str, float], List[Tuple[int, float, int]]]:
        """One rollout and its PPO epochs. Returns (mean loss terms over the optimiser steps, finished
        games as (step of the rollout 1..T, return, length))."""
        buf, finished, sparsity = self._rollout()
        terms = self.learn(buf)
        terms["sparsity"] = sparsity
        return terms, finished
