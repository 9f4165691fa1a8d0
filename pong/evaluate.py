"""Evaluate a Pong agent: games on the simulated STO chip (or in float) with the energy report.

Shared by ``stoxbar play`` and the studies (``stoxbar sweep``): build the analog STP layer from a
trained agent, play N games, book the digital work of every step (counted by the op counter,
:class:`~stoxbar.pong.accounting.StepCounter`) and the analog layer's events (flushed after each
game), and turn the ledger into the ``synapse_only`` / ``array`` / ``system`` boundaries plus the
GPU baseline.

May import: numpy, torch, stoxbar.crossbar, stoxbar.peripherals, stoxbar.stpn, stoxbar.pong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from stoxbar.crossbar import EnergyLedger, flush_events
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.accounting import StepCounter, boundaries, gpu_baseline
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.env import EVAL_STICKY, STEP_PERIOD_S, make_pong_env


def build_analog_cell(agent: PongAgent, chip_device, periphery: PeripheryConfig):
    """Swap the agent's m-STPN cell for the analog one on tiles of ``chip_device``; returns it.

    The learned parameters (and the device the network was trained for, which fixes its taus)
    are kept; W is programmed onto the conductances and each tau onto a bias voltage.
    """
    from stoxbar.stpn.analog import AnalogMSTPNCell

    agent.cell = AnalogMSTPNCell.from_cell(agent.cell, periphery, chip_device)
    return agent.cell


def play_game(agent: PongAgent, env, max_steps: int, greedy: bool, gen: torch.Generator) -> tuple[float, int, bool]:
    """One game on a 1-env vector env; returns (agent points - opponent points, agent steps,
    truncated: stopped at ``max_steps`` before the game ended)."""
    obs = env.reset()
    state = agent.initial_state(1)
    score, steps = 0.0, 0
    with torch.no_grad():
        while steps < max_steps:
            actions, state = agent.act(obs, state, greedy=greedy, generator=gen)
            obs, reward, done, _ = env.step(actions)
            score += float(reward[0])
            steps += 1
            if bool(done[0]):
                return score, steps, False
    return score, steps, True


@dataclass
class PlayResult:
    """Scores, lengths and truncation flags of the games played, each game's energy per boundary
    (J; analog play only), wall time (s) and the energy ledger."""

    scores: List[float] = field(default_factory=list)
    steps: List[int] = field(default_factory=list)
    truncated: List[bool] = field(default_factory=list)
    energy_per_game: List[Dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    ledger: EnergyLedger = field(default_factory=EnergyLedger)

    @property
    def agent_steps(self) -> int:
        return sum(self.steps)

    @property
    def simulated_s(self) -> float:
        """Seconds of play simulated (agent steps x step period)."""
        return self.agent_steps * STEP_PERIOD_S

    def energy_spread(self) -> Dict[str, Dict[str, float]]:
        """Per boundary: mean, std (sample; 0 for one game), min and max of the games' own energies (J);
        empty without per-game energies (float play)."""
        out = {}
        for k in (self.energy_per_game[0] if self.energy_per_game else ()):
            x = np.array([g[k] for g in self.energy_per_game])
            out[k] = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
                      "min": float(x.min()), "max": float(x.max())}
        return out


def play_games(agent: PongAgent, games: int, seed: int, greedy: bool, max_steps: int,
               periphery: Optional[PeripheryConfig] = None, ledger: Optional[EnergyLedger] = None,
               after_game: Optional[Callable[[float], None]] = None, sticky: float = EVAL_STICKY) -> PlayResult:
    """Play ``games`` full games (env seeds ``seed``, ``seed + 1``, ...; sticky actions with
    probability ``sticky``, default the evaluation protocol's 0.25, noop starts).

    With ``periphery`` given, the digital work of every step (neurons, Hebbian request, encoder,
    heads) is booked in ``ledger`` as well, after each game; the analog layer's events are
    flushed into the ledger it is attached to after each game too (attach it to the same one), so
    each game's energy per boundary is the difference of the totals before and after it.
    """
    result = PlayResult(ledger=ledger if ledger is not None else EnergyLedger())
    digital = StepCounter(agent, periphery.digital) if periphery is not None else None
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    before = boundary_totals(result.ledger) if periphery is not None else {}
    for game in range(games):
        env = make_pong_env(1, seed=seed + game, sticky=sticky)
        try:
            with digital if digital is not None else nullcontext():
                score, steps, cut = play_game(agent, env, max_steps, greedy, gen)
        finally:
            env.close()
            flush_events(agent)  # the game boundary: book what the tiles recorded
            if digital is not None:
                digital.book(result.ledger)
        result.scores.append(score)
        result.steps.append(steps)
        result.truncated.append(cut)
        if periphery is not None:
            after = boundary_totals(result.ledger)
            result.energy_per_game.append({k: after[k] - before.get(k, 0.0) for k in after})
            before = after
        if after_game is not None:
            after_game(score)
    result.wall_s = time.perf_counter() - t0
    return result


def boundary_totals(ledger: EnergyLedger) -> Dict[str, float]:
    """Energy (J) booked so far at each boundary (per-game energies are differences of these)."""
    return {name: float(b["total_j"]) for name, b in boundaries(ledger).items()}


def energy_report(result: PlayResult, arch: ArchConfig, analog: bool) -> dict:
    """``synapse_only`` / ``array`` / ``system`` (analog only) and ``gpu_baseline``, in J in total."""
    energy = boundaries(result.ledger) if analog else {}
    energy["gpu_baseline"] = gpu_baseline(arch, result.agent_steps)
    return energy
