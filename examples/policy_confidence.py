"""How sure is a Pong agent of its moves? The policy behind greedy play, measured in play.

Greedy evaluation (``stoxbar play``) takes the argmax of the agent's 6 action probabilities. Pong's minimal action
set holds duplicate moves (FIRE moves the paddle as NOOP does, RIGHTFIRE as RIGHT, LEFTFIRE as LEFT), so a policy
can be sure of its move yet split between the two actions that make it, and its argmax can then pick a third
action whose move is less probable. This script plays G greedy games (as ``stoxbar play --chips``: in float32, or
on the chip with ``--chip``) for at most S steps and reports, over every step of every game:

* the policy's mean entropy in nats (ln 6 = 1.79: uniform; ln 2 = 0.69: a sure move split evenly over two actions);
* the mean probability of the greedy action, and of the most probable move (its actions' probabilities summed);
* the fraction of steps whose greedy action makes another move than the most probable one.

Used in training/README.md (``lowent/``: does a sharper policy play better greedy?).
Usage: ``python examples/policy_confidence.py [--small] [--checkpoint PATH] [--games 4] [--steps 1500] [--chip]``
(``--small``: 2 games of 400 steps).
"""

from __future__ import annotations

import argparse
import math
from typing import Dict, List, Sequence

import torch

from stoxbar.crossbar import EnergyLedger
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, chip_device, load_agent
from stoxbar.pong.chips import play_chips
from stoxbar.pong.env import make_pong_env
from stoxbar.pong.evaluate import build_analog_cell


def move_groups(action_names: Sequence[str]) -> torch.Tensor:
    """The move index of each action: actions equal but for FIRE share one (NOOP/FIRE, RIGHT/RIGHTFIRE, ...)."""
    keys: List[str] = []
    out = []
    for name in action_names:
        key = name.replace("FIRE", "") or "NOOP"
        if key not in keys:
            keys.append(key)
        out.append(keys.index(key))
    return torch.tensor(out)


def confidence(logits: torch.Tensor, groups: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per row of ``logits [B, A]``: entropy (nats), the greedy action's probability, the most probable move's
    probability, and whether the greedy action's move is another one (1.0) or that move (0.0)."""
    logp = torch.log_softmax(logits.double(), -1)
    p = logp.exp()
    by_move = torch.zeros(p.shape[0], int(groups.max()) + 1, dtype=p.dtype).index_add_(1, groups, p)
    greedy = p.argmax(-1)
    return {"entropy": -(p * logp).sum(-1), "greedy_p": p.gather(1, greedy[:, None])[:, 0],
            "move_p": by_move.max(-1).values, "other_move": (groups[greedy] != by_move.argmax(-1)).double()}


def run(checkpoint: str = str(SHIPPED_CHECKPOINT), games: int = 4, steps: int = 1500, chip: bool = False,
        seed: int = 0) -> Dict[str, float]:
    """Play ``games`` greedy games (on one chip with ``chip``) for at most ``steps`` steps; the means above."""
    agent, _ = load_agent(checkpoint)
    periphery = ledger = None
    if chip:
        periphery, ledger = PeripheryConfig(), EnergyLedger()
        build_analog_cell(agent, chip_device(agent, checkpoint), periphery).attach(ledger, "stp")
    env = make_pong_env(1)
    try:
        groups = move_groups(env.action_names)
    finally:
        env.close()
    sums: Dict[str, float] = {}
    n = [0]

    def act(obs, state, greedy=True, generator=None):  # the agent's own greedy step, measured on the way
        logits, _, state = agent(obs, state)
        for k, v in confidence(logits.cpu(), groups).items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        n[0] += logits.shape[0]
        return logits.argmax(-1).cpu().numpy(), state

    agent.act = act
    res = play_chips(agent, games, 1, seed, True, steps, periphery, ledger)
    out = {k: v / n[0] for k, v in sums.items()}
    out.update(steps=float(n[0]), score_mean=sum(res.scores) / games)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    ap.add_argument("--games", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--chip", action="store_true", help="play on the STO chip (default: float32)")
    ap.add_argument("--small", action="store_true", help="2 games of 400 steps")
    args = ap.parse_args()
    if args.small:
        args.games, args.steps = 2, 400
    r = run(args.checkpoint, args.games, args.steps, args.chip)
    print(f"{int(r['steps'])} agent steps ({args.games} greedy games of at most {args.steps} steps, "
          f"{'chip' if args.chip else 'float32'}): entropy {r['entropy']:.3f} nats (uniform {math.log(6):.3f}), "
          f"greedy action p {r['greedy_p']:.3f}, most probable move p {r['move_p']:.3f}, "
          f"greedy action makes another move: {r['other_move']:.2%} of steps")


if __name__ == "__main__":
    main()
