"""Batched chips: G Pong games on C simulated chip instances, all stepped together in one process.

One ale-py vector env holds the G games (env ``i`` seeded ``seed + i``, as :func:`play_games`
seeds game ``i``); the analog STP layer holds C chip instances in one crossbar state whose
long-term conductances carry a leading chip-slot dimension (``CrossbarState.program_chips``):
game ``i`` runs on chip ``i // (G / C)``. Each chip is programmed with its own draws (open-loop
programming: its own d2d factors and c2c error); each game has its own short-term state F and its
own read-noise draws. Every read, decay and pulse of all chips is one batched torch operation
(the native CPU kernels where they apply, torch elsewhere, on any torch device).

A game's record ends at its first episode end (or at ``max_steps``: flagged truncated). The
vector env would restart a finished game at once; instead the finished game leaves the batch
(``PongAgent.keep_slots``: its chip slot stops reading, pulsing and holding bias; its emulator
gets NOOPs, unrecorded), so the ledger holds exactly the games' own events and the mean energy per
game at each boundary is ``ledger total / games``.

Each game's own energy (``energy_per_game``, analog play): the tiles record events summed over the
batch, not per slot, so the run is cut into segments at the steps where games end (the set of
games playing is constant within one); at each cut the events are booked and the segment's energy
is split equally among the games that played it. A game's energy is the sum over its segments, so
the per-game energies add up to the ledger's total exactly. The split is exact for the parts that
every playing game incurs alike (leakage and bias held per chip slot and interval, the periphery
of each input vector's read, the digital work per step: over 99.8 % of the shipped agent's system
energy, measured, docs/stpn.md §8.1) and a segment mean for the data-dependent parts (short-term
pulses and the half-selected cells, the read drive, the bias on |F|): the spread across games comes
from their lengths.

A float cell (``periphery`` None) steps its F in place (:func:`~stoxbar.stpn.cells.state_in_place`): the loop
keeps no earlier state, and a fresh F per step (68 MB at 100 games) cost more than the step's arithmetic.

``chips = 1`` keeps today's sequential path (:func:`~stoxbar.pong.evaluate.play_games`): one chip,
games one after another, the same scores for the same seed.

May import: numpy, torch, stoxbar.core.validation, stoxbar.crossbar, stoxbar.peripherals, stoxbar.stpn,
stoxbar.pong.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from stoxbar.core.validation import ConfigError, check_int
from stoxbar.crossbar import EnergyLedger, flush_events
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.accounting import StepCounter
from stoxbar.pong.agent import PongAgent
from stoxbar.pong.env import EVAL_STICKY, make_pong_env
from stoxbar.pong.evaluate import PlayResult, boundary_totals
from stoxbar.stpn.cells import state_in_place

MAX_CHIPS = 1024  # assumption: the vector env's limit on games (PongVecEnv num_envs <= 1024) bounds the chips


def check_games_chips(games: int, chips: int, games_flag: str = "--games", chips_flag: str = "--chips") -> int:
    """Games per chip, after checking ``chips`` in [1, MAX_CHIPS] and that it divides ``games``."""
    check_int(chips_flag, chips, 1, MAX_CHIPS)
    check_int(games_flag, games, 1, MAX_CHIPS)
    if games % chips:
        raise ConfigError(f"{games_flag} = {games}, {chips_flag} = {chips}: {games_flag} must be a multiple of "
                          f"{chips_flag} (each chip plays the same number of games); allowed {chips_flag}: "
                          f"the divisors of {games} in [1, {MAX_CHIPS}]")
    return games // chips


def default_chips(games: int, at_most: int = 5) -> int:
    """The chips a study trial spreads ``games`` over by default: the largest divisor of ``games`` not
    above ``at_most`` (assumption: 5, so the default 20 games run as 4 games on each of 5 chips)."""
    return max(c for c in range(1, min(games, at_most) + 1) if games % c == 0)


@dataclass
class ChipsResult(PlayResult):
    """A :class:`~stoxbar.pong.evaluate.PlayResult` (no per-game energy: see the module docstring) with
    the chip of each game."""

    chip: List[int] = field(default_factory=list)

    def per_game(self, seed: int) -> List[Dict[str, Any]]:
        """One record per game, in game order: its env seed (``seed + i``, as :func:`play_chips` seeds them),
        chip, score, agent steps, whether ``max_steps`` cut it short and (analog play) its own energy
        per boundary (``energy_j``, module docstring)."""
        energy = self.energy_per_game or [None] * len(self.scores)
        return [{"env_seed": seed + i, "chip": c, "score": s, "steps": n, "truncated": t,
                 **({"energy_j": e} if e else {})}
                for i, (c, s, n, t, e) in enumerate(zip(self.chip, self.scores, self.steps, self.truncated, energy))]

    def chip_means(self) -> List[float]:
        """Mean score of each chip's games."""
        n = max(self.chip) + 1 if self.chip else 0
        return [float(np.mean([s for s, c in zip(self.scores, self.chip) if c == k])) for k in range(n)]


def play_chips(agent: PongAgent, games: int, chips: int, seed: int, greedy: bool, max_steps: int,
               periphery: Optional[PeripheryConfig] = None, ledger: Optional[EnergyLedger] = None,
               sticky: float = EVAL_STICKY, device: str = "cpu", env_threads: int = 1) -> ChipsResult:
    """Play ``games`` games on ``chips`` chip instances together (module docstring).

    ``agent``'s cell is the analog one (already programmed, attached to ``ledger``) or a float cell
    (``periphery`` None: float play, no energy). The chips are programmed here from the torch seed
    ``seed`` (``AnalogMSTPNCell.program_chips``), after the agent was moved to ``device``.
    """
    per_chip = check_games_chips(games, chips)
    result = ChipsResult(ledger=ledger if ledger is not None else EnergyLedger())
    tdev = torch.device(device)
    agent.to(tdev)
    if hasattr(agent.cell, "program_chips"):
        gen = torch.Generator(device=tdev).manual_seed(seed)
        agent.cell.program_chips(chips, per_chip, gen)
    digital = StepCounter(agent, periphery.digital) if periphery is not None else None
    gen = torch.Generator(device=tdev).manual_seed(seed)
    env = make_pong_env(games, seed=seed, num_threads=env_threads, sticky=sticky)
    scores = np.zeros(games)
    steps = np.zeros(games, dtype=np.int64)
    own: Dict[str, np.ndarray] = {}  # boundary -> each game's energy so far (J)
    before = boundary_totals(result.ledger)

    def settle(members: np.ndarray) -> None:
        """Book the segment that ``members`` played and split its energy equally among them."""
        nonlocal before
        flush_events(agent)
        digital.book(result.ledger)
        after = boundary_totals(result.ledger)
        for k, v in after.items():
            own.setdefault(k, np.zeros(games))[members] += (v - before.get(k, 0.0)) / len(members)
        before = after

    try:
        obs = env.reset()
        state = agent.initial_state(games)
        t0 = time.perf_counter()  # wall time of the steps (the emulators' noop-start reset is before it)
        live = np.arange(games)  # the games still playing, in batch order
        actions = np.zeros(games, dtype=np.int64)  # finished games' emulators get NOOP (0)
        # the loop keeps no earlier state: a float cell's native step overwrites F in place (stpn/cells.py)
        with torch.no_grad(), state_in_place(agent.cell), (digital if digital is not None else nullcontext()):
            while live.size and int(steps[live].max()) < max_steps:
                a, state = agent.act(torch.from_numpy(obs[live]).to(tdev), state, greedy=greedy, generator=gen)
                actions[:] = 0
                actions[live] = a
                obs, reward, done, _ = env.step(actions)
                scores[live] += reward[live]
                steps[live] += 1
                ended = done[live]
                if ended.any() and digital is not None:
                    settle(live)  # a segment ends: the games that played it share its energy
                if ended.all():
                    live = live[:0]
                elif ended.any():  # finished games leave the batch: their chip slots stop reading and pulsing
                    state = agent.keep_slots(state, torch.from_numpy(~ended))
                    live = live[~ended]
            if live.size and digital is not None:
                settle(live)  # the games cut at max_steps
    finally:
        env.close()
        flush_events(agent)
        if digital is not None:
            digital.book(result.ledger)
    result.scores = [float(s) for s in scores]
    result.steps = [int(n) for n in steps]
    result.truncated = [bool(t) for t in np.isin(np.arange(games), live)]  # still playing at max_steps
    result.chip = [i // per_chip for i in range(games)]
    if own:
        result.energy_per_game = [{k: float(v[i]) for k, v in own.items()} for i in range(games)]
    result.wall_s = time.perf_counter() - t0
    return result


def energy_per_game(ledger: EnergyLedger, games: int) -> Dict[str, float]:
    """Mean J per game at each boundary: the ledger's totals (exactly the games' events) over ``games``."""
    from stoxbar.pong.accounting import boundaries

    return {name: float(b["total_j"]) / games for name, b in boundaries(ledger).items()}
