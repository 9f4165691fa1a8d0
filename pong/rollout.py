"""What the Pong training runners share: the environments and the carried (h, F), finishing an
emulator step, the optimiser step, the advantage estimate and the replay of a stored sequence.

:class:`EnvRunner` is the base of the A2C runner (pong/a2c.py) and the PPO runner (pong/ppo.py); both
loops, checkpoints and logs are pong/a2c.py's ``train``.

May import: numpy, torch, stoxbar.pong.{agent,env}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from stoxbar.pong.agent import PongAgent, check_mstpn_training
from stoxbar.pong.env import make_pong_env


def gae(rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float, lam: float
        ) -> Tuple[Tensor, Tensor]:
    """Generalised advantage estimation over [T, N] (dones[t]: the game ended after step t).

    Returns (advantages, returns = advantages + values), both detached.
    """
    values, last_value = values.detach(), last_value.detach()
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        nonterminal = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        running = delta + gamma * lam * nonterminal * running
        adv[t] = running
        next_value = values[t]
    return adv, adv + values


def evaluate_actions(agent: PongAgent, obs: Any, actions: Tensor, dones: Tensor, state,
                     state_grad_clip: Optional[Callable[[Any], Any]] = None) -> Tuple[Tensor, Tensor, Tensor, Any]:
    """Re-run the agent over a stored sequence (obs: [T, N, 1, 84, 84] or T frames of [N, 1, 84, 84];
    actions/dones [T, N]) with :meth:`PongAgent.unroll` (``state_grad_clip`` passed on).

    Returns (logps, values, entropies) [T, N] with the graph, and the final state.
    """
    if not isinstance(obs, Tensor):
        obs = torch.stack([o if isinstance(o, Tensor) else torch.from_numpy(np.ascontiguousarray(o)) for o in obs])
    logits, values, state = agent.unroll(obs, state, dones, state_grad_clip=state_grad_clip)
    logp_all = torch.log_softmax(logits, -1)
    logps = logp_all.gather(2, actions.long().unsqueeze(2)).squeeze(2)
    ents = -(logp_all.exp() * logp_all).sum(-1)
    return logps, values, ents, state


def detach_state(state):
    return tuple(s.detach() for s in state)


GRAD_WINDOW = 100  # the spike guard's window of applied steps' gradient norms (assumption: ~6 PPO updates)
GRAD_WARMUP = 20  # applied steps before the guard judges (assumption)


class SpikeGuard:
    """Refuses optimiser steps whose pre-clip gradient norm is a spike: above ``factor`` x the median norm of
    the last GRAD_WINDOW applied steps, once GRAD_WARMUP of them are known (``factor`` 0: off). Exploding
    gradients through the recurrent state (h, F) over the BPTT window show as norms 10^2-10^6 x the median for
    a few steps before a collapse (docs/stpn.md §11.1); the global clip bounds such a step's size but not its
    direction, and Adam keeps it in its moments. ``norms`` is the window (a checkpoint keeps it, so a resumed
    run is guarded from its first step); GRAD_WINDOW refusals in a row raise (the gradients exploded for good)."""

    def __init__(self, factor: float, norms: Sequence[float] = ()):
        self.factor = float(factor)
        self.norms: deque = deque((float(v) for v in norms), maxlen=GRAD_WINDOW)
        self.skips = self._in_a_row = 0
        self.norm_max = 0.0

    def median(self) -> float:
        return float(np.median(self.norms)) if self.norms else float("nan")

    def skip(self, gn: float) -> bool:
        """Judge one step of pre-clip norm ``gn``: True = skip it (counted); False = apply it (joins the window)."""
        self.norm_max = max(self.norm_max, gn)
        if self.factor > 0 and len(self.norms) >= GRAD_WARMUP and gn > self.factor * self.median():
            self.skips += 1
            self._in_a_row += 1
            if self._in_a_row >= GRAD_WINDOW:
                raise FloatingPointError(
                    f"{GRAD_WINDOW} optimiser steps in a row had gradient norms above grad_spike = {self.factor:g} x "
                    f"the median of the last applied ones ({self.median():.3g}): the gradients exploded for good; "
                    "resume from an earlier snapshot (checkpoint-uNNNNNNN.pt)")
            return True
        self._in_a_row = 0
        self.norms.append(gn)
        return False

    def stats(self) -> Dict[str, float]:
        """Steps skipped and the largest pre-clip norm since the last call (for the progress log)."""
        out = {"grad_skips": float(self.skips), "grad_norm_max": self.norm_max}
        self.skips, self.norm_max = 0, 0.0
        return out


class EnvRunner:
    """The environments (``cfg.env_groups`` vector envs of num_envs/env_groups games, stepped
    asynchronously with ale-py's send/recv), the carried (h, F), the game records and the
    optimiser step; a subclass adds ``update() -> (loss terms, finished games)``."""

    def __init__(self, agent: PongAgent, opt: torch.optim.Optimizer, cfg: Any, env_seed: int):
        self.agent, self.opt, self.cfg = agent, opt, cfg
        n = cfg.num_envs // cfg.env_groups
        self.envs = [make_pong_env(n, seed=env_seed + g * n, num_threads=cfg.env_threads, sticky=cfg.sticky)
                     for g in range(cfg.env_groups)]
        self.obs = [env.reset() for env in self.envs]
        self.state = agent.initial_state(cfg.num_envs)
        self.ep_ret = np.zeros(cfg.num_envs)
        self.ep_len = np.zeros(cfg.num_envs, dtype=np.int64)
        self._pool = None  # group_threads: the groups' worker threads
        self.spikes = SpikeGuard(cfg.grad_spike)
        check_mstpn_training(cfg, agent.arch)
        self._limit_recurrent_norm()  # a start above the bound is projected before its first rollout
        if agent.arch.cell == "mstpn":  # the run's setting, on the agent it trains (docs/stpn.md §11.5)
            agent.cell.hebbian_activity_grad = cfg.hebbian_grad == "full"

    def _finish_step(self, g: int, t: int, state, rewards, dones, finished, slot: Optional[int] = None):
        """Receive group ``g``'s step ``t`` (sent earlier): observations, rewards, finished games
        (stored at ``rewards[t][slot]``, slot defaulting to ``g``)."""
        n = self.cfg.num_envs // self.cfg.env_groups
        slot = g if slot is None else slot
        self.obs[g], r, done, _ = self.envs[g].recv()
        rewards[t][slot], dones[t][slot] = torch.from_numpy(r), torch.from_numpy(done)
        sl = slice(g * n, (g + 1) * n)
        self.ep_ret[sl] += r
        self.ep_len[sl] += 1
        for i in np.nonzero(done)[0] + g * n:
            finished.append((t + 1, float(self.ep_ret[i]), int(self.ep_len[i])))
            self.ep_ret[i], self.ep_len[i] = 0.0, 0
        return self.agent.reset_state(state, done) if done.any() else state

    def _threads(self, n: int, name: str):
        """The runner's pool of ``n`` worker threads (made at first use, shut down by :meth:`close`), each
        with one intra-op thread (OpenMP's thread count is per calling thread)."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(n, thread_name_prefix=name, initializer=torch.set_num_threads,
                                            initargs=(1,))
        return self._pool

    def _step(self, terms: Dict[str, float]) -> Dict[str, float]:
        """Clip the accumulated gradient, take the optimiser step, apply the parameter constraints; a step the
        spike guard refuses (``cfg.grad_spike``, :class:`SpikeGuard`) is skipped: no parameter and no optimiser
        state changes (Adam would otherwise keep the spike in its moments for ~1,000 steps). With
        ``cfg.bias_energy_coef`` the held decay bias's price (uJ per step, MSTPNCell.held_bias_energy_j) is added
        to the loss here, once per optimiser step, its gradient joining the rollout's before the clip; the price
        steers the decay parameters only (W, the task's, is held fixed in it)."""
        coef = self.cfg.bias_energy_coef
        if coef:
            e_uj = self.agent.cell.held_bias_energy_j(through_w=False) * 1e6
            (coef * e_uj).backward()
            terms["bias_penalty"] = coef * float(e_uj.detach())
        gn = float(torch.nn.utils.clip_grad_norm_(self.agent.parameters(), self.cfg.max_grad_norm))
        if not np.isfinite(gn):
            raise FloatingPointError("non-finite gradient norm; resume from the last checkpoint with another "
                                     "seed or a lower lr")
        terms["grad_norm"] = gn
        if self.spikes.skip(gn):
            self.opt.zero_grad(set_to_none=True)
            return terms
        self.opt.step()
        self.agent.apply_constraints()
        self._limit_recurrent_norm()
        return terms

    def _limit_recurrent_norm(self) -> None:
        """``cfg.recurrent_norm_max`` (if set): the m-STPN's h -> h map projected to it (docs/stpn.md §11.4)."""
        if self.cfg.recurrent_norm_max:
            self.agent.cell.limit_recurrent_norm(self.cfg.recurrent_norm_max)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for env in self.envs:
            env.close()
