"""Would overlapping the emulators with the chip step speed batched play up? (issue 16, play speed)

``stoxbar play --chips`` steps all games' emulators, then all chips, one after the other. This
benchmark splits 100 games into two halves (two agents of 50 games on 5 chips each, two vector envs
of 50 games) and times, interleaved in one process, the same steps played two ways:

* ``seq``: half A's agent step, then its emulators; half B's agent step, then its emulators;
* ``overlap``: half A's emulators step (ale-py's asynchronous ``send``) while half B's agent step
  runs, and the other way round (at most one half in flight, so each ``recv`` returns that half).

Both do the same work on the same games; only the schedule differs. Run on a quiet machine::

    python benchmarks/bench_play_overlap.py --threads 2 --env-threads 1 --steps 60 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bench_play import chip_agent
from stoxbar.pong.env import EVAL_STICKY, make_pong_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--env-threads", type=int, default=1, help="emulator threads per half")
    ap.add_argument("--steps", type=int, default=60, help="agent steps per timed run")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    half = 50
    agents = []
    for seed in (0, 1):
        agent, _, _ = chip_agent()
        agent.cell.program_chips(5, half // 5, torch.Generator().manual_seed(seed))
        agents.append(agent)
    envs = [make_pong_env(half, seed=s, num_threads=args.env_threads, sticky=EVAL_STICKY) for s in (0, half)]
    obs = [e.reset() for e in envs]
    states = [a.initial_state(half) for a in agents]
    gen = torch.Generator().manual_seed(0)

    def act(i: int) -> np.ndarray:
        a, states[i] = agents[i].act(torch.from_numpy(obs[i]), states[i], greedy=True, generator=gen)
        return np.asarray(a)

    rates = {"seq": [], "overlap": []}
    with torch.no_grad():
        for mode in ["seq", "overlap"] * args.repeats:
            t0 = time.perf_counter()
            for k in range(args.steps):
                if mode == "seq":
                    for i in (0, 1):
                        obs[i] = envs[i].step(act(i))[0]
                else:
                    envs[0].send(act(0))
                    if k:
                        obs[1] = envs[1].recv()[0]
                    b = act(1)
                    obs[0] = envs[0].recv()[0]
                    envs[1].send(b)
            if mode == "overlap":
                obs[1] = envs[1].recv()[0]
            rates[mode].append(2 * half * args.steps / (time.perf_counter() - t0))
    for e in envs:
        e.close()
    out = {m: {"agent_steps_per_s_median": float(np.median(r)), "runs": [round(x) for x in r]} for m, r in rates.items()}
    out["overlap_vs_seq"] = out["overlap"]["agent_steps_per_s_median"] / out["seq"]["agent_steps_per_s_median"]
    out["config"] = vars(args)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
