"""Agent steps per second of the Pong m-STPN's training loop (A2C; PPO): today's loop vs both cores.

Configs (paper architecture, m-STPN, 16 envs x 20-step rollouts, the real loop: emulators,
forward, BPTT, Adam; ``pong.a2c.measure_throughput``):

* ``baseline``: 1 torch thread, 1 emulator thread, one synchronous emulator group (the loop as it
  was before emulator groups existed; issue 16 measured 842 agent steps/s on a quiet machine);
* ``2 threads``: 2 torch threads, one group;
* ``2 groups``: 1 torch thread, two asynchronous emulator groups (each group's emulation overlaps
  the other group's forward pass);
* ``2 threads + 2 groups``: both;
* ``2 group threads``: two groups, each rolled out and back-propagated by its own Python thread
  (one intra-op thread each; the native kernels release the GIL).

``--ppo`` adds the recurrent PPO loop (pong/ppo.py; docs/stpn.md §11) with two group threads: the
fine-tune's settings (16 envs x 64 steps, 2 epochs x 4 minibatches) and the defaults (16 x 128,
4 x 4). A PPO update re-runs every step ``epochs`` times with BPTT, so its agent steps/s are those of
several A2C updates' worth of compute per step (ratios against the same baseline). Two more PPO
configs take session 13's changes back, in the same process: the minibatch split between two
threads of one intra-op thread each (before the update ran on both cores as intra-op threads), and
that with the step-by-step replay (encoder, cell and heads per step, before ``PongAgent.unroll``).

``--agents`` measures, besides the baseline and instead of the other configs, the PPO 16 x 128 loop of
each agent of the PPO comparison (``pong.comparison.AGENTS``, training/README.md), and the plain
recurrent baseline again with its plastic step forced (before the still step: Gamma frozen at 0 keeps
F at 0, so the cell skips it, ``MSTPNCell._still``).

``--two-runs`` measures, for each comparison agent, the PPO 16 x 128 loop with two group threads (one
process on both cores, how ``stoxbar train-comparison --group-threads`` trains one run at a time) against
two such training processes running at once, each with one torch thread and one emulator group (how
``--workers 2`` trains two runs at once; their agent steps/s summed). The two processes run this script
with ``--single AGENT``.

``--baseline-native PATH`` adds the baseline, the two-group-thread A2C loop and (with ``--ppo``) the 16 x 128
PPO loop (with ``--agents``: the two m-STPN agents' PPO loops) with the native kernels of an older build
(``benchmarks/_kernels.py``): the code before a kernel change, side by side.

Ratios are measured in one process, interleaved (round-robin repeats, median per config), so the
machine load affects all configs alike. The issue's goal: >= 2x the baseline, using both cores.
Usage: ``python benchmarks/bench_pong_training.py [--repeats N] [--updates U] [--ppo] [--ppo-updates U]
[--agents [AGENT ...]] [--two-runs] [--baseline-native PATH]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import torch

import _kernels  # benchmarks/_kernels.py (the script's folder is on sys.path)
from stoxbar.pong import ppo
from stoxbar.pong.a2c import measure_throughput
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.comparison import AGENTS
from stoxbar.stpn.cells import MSTPNCell

CONFIGS = {
    "baseline (1 thread, 1 group)": dict(threads=1, env_groups=1),
    "2 threads, 1 group": dict(threads=2, env_groups=1),
    "1 thread, 2 groups": dict(threads=1, env_groups=2),
    "2 threads, 2 groups": dict(threads=2, env_groups=2),
    "2 group threads": dict(threads=1, env_groups=2, group_threads=True),
}
_PPO128 = dict(threads=1, env_groups=2, group_threads=True, algo="ppo", rollout_len=128, ppo_epochs=4,
               ppo_minibatches=4)
PPO_CONFIGS = {
    "PPO 16x64, 2x4, 2 group threads": dict(threads=1, env_groups=2, group_threads=True, algo="ppo", rollout_len=64,
                                              ppo_epochs=2, ppo_minibatches=4),
    "PPO 16x128, 4x4, 2 group threads": _PPO128,
    # the same loop with this session's changes taken back, one at a time (same-process baselines)
    "PPO 16x128, 4x4, minibatch split between 2 threads (before the 2-core update)": dict(_PPO128, variant="split"),
    "PPO 16x128, 4x4, split, step-by-step replay (before unroll)": dict(_PPO128, variant="split+stepwise"),
}


def stepwise_evaluate_actions(agent, obs, actions, dones, state):
    """The PPO replay as it was before ``PongAgent.unroll``: encoder, cell and heads one step at a
    time (same numbers, tests/test_training.py)."""
    params = agent.step_params()
    logps, values, ents = [], [], []
    for t in range(obs.shape[0]):
        logits, value, state = agent(obs[t], state, params)
        logp_all = torch.log_softmax(logits, -1)
        logps.append(logp_all.gather(1, actions[t].long().unsqueeze(1)).squeeze(1))
        ents.append(-(logp_all.exp() * logp_all).sum(-1))
        values.append(value)
        state = agent.reset_state(state, dones[t])
    return torch.stack(logps), torch.stack(values), torch.stack(ents), state


def split_minibatch_step(self, buf, idx):
    """The PPO optimiser step as it was before the update took both cores as intra-op threads: the
    minibatch split between two threads of one intra-op thread each, each back-propagating its half
    (advantages normalised over the whole minibatch), the gradients summed with the halves' weights."""
    self.opt.zero_grad(set_to_none=True)
    adv = ppo.normalized(buf["adv"][:, idx])
    pool = self._threads(2, "ppo-half")
    cols = [c for c in torch.arange(len(idx)).tensor_split(2) if len(c)]
    parts = [f.result() for f in [pool.submit(self._minibatch_loss, buf, idx[c], adv[:, c]) for c in cols]]
    w = [len(c) / len(idx) for c in cols]
    for p in self.agent.parameters():
        if p.grad is not None:
            p.grad.mul_(w[0])  # equal halves (minibatches of 4 envs): each half's loss weighted by 1/2
    return self._step({k: float(sum(wi * part[k] for wi, part in zip(w, parts))) for k in parts[0]})


def _measure(arch, kw, updates, warmup):
    """Agent steps/s of one config, with a ``variant``'s older code swapped in for this call."""
    kw = dict(kw)
    variant = kw.pop("variant", "")
    kernels = kw.pop("kernels", None)
    arch = kw.pop("arch", arch)
    saved = ppo.evaluate_actions, ppo.PPORunner._minibatch_step, ppo.UPDATE_THREADS, MSTPNCell._still
    if "plastic step" in variant:
        MSTPNCell._still = lambda self, F, gam: False
    if "split" in variant:
        ppo.PPORunner._minibatch_step, ppo.UPDATE_THREADS = split_minibatch_step, None
    if "stepwise" in variant:
        ppo.evaluate_actions = stepwise_evaluate_actions
    try:
        with _kernels.use(kernels):
            return measure_throughput(arch, updates=updates, warmup=warmup, env_threads=1, **kw)["steps_per_s"]
    finally:
        ppo.evaluate_actions, ppo.PPORunner._minibatch_step, ppo.UPDATE_THREADS, MSTPNCell._still = saved


def _single(agent: str, updates: int) -> float:
    """Agent steps/s of one training process of ``agent`` on one core (``--workers``' layout)."""
    torch.set_num_threads(1)
    return measure_throughput(ArchConfig(**AGENTS[agent]), updates=updates, warmup=1, env_threads=1,
                              **dict(_PPO128, env_groups=1, group_threads=False))["steps_per_s"]


def _two_runs(agent: str, updates: int) -> float:
    """Summed agent steps/s of two ``--single`` processes of ``agent`` started together."""
    cmd = [sys.executable, os.path.abspath(__file__), "--single", agent, "--ppo-updates", str(updates)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a --single process failed: {[p.returncode for p in procs]}")
    return sum(float(o.strip().splitlines()[-1]) for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="round-robin repeats per config")
    ap.add_argument("--updates", type=int, default=15, help="timed updates per measurement (320 steps each)")
    ap.add_argument("--ppo", action="store_true", help="also the PPO loop (PPO_CONFIGS)")
    ap.add_argument("--ppo-updates", type=int, default=3, help="timed PPO updates per measurement (1-2 k steps each)")
    ap.add_argument("--baseline-native", default=None,
                    help="also the baseline, 2 group threads and PPO 16x128 (with --agents: the m-STPN agents' PPO) "
                         "with this older build's _native*.so")
    ap.add_argument("--agents", nargs="*", default=None, choices=list(AGENTS), metavar="AGENT",
                    help="also PPO 16x128 for each comparison agent (or those named), and the recurrent one with its "
                         "plastic step")
    ap.add_argument("--two-runs", action="store_true",
                    help="per comparison agent: one run on both cores (group threads) vs two one-core runs at once")
    ap.add_argument("--single", default=None, choices=list(AGENTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        print(f"{_single(args.single, args.ppo_updates):.3f}")
        return
    if args.two_runs:
        runs2 = {}
        for _ in range(args.repeats):
            for agent, fields in AGENTS.items():
                one = _measure(ArchConfig(), dict(_PPO128, arch=ArchConfig(**fields)), args.ppo_updates, 1)
                two = _two_runs(agent, args.ppo_updates)
                runs2.setdefault(agent, []).append((one, two))
                print(f"  {agent}: one run, 2 group threads {one:.0f}; two runs at once {two:.0f} steps/s", flush=True)
        print(f"PPO 16x128 training, {os.cpu_count()} CPUs, median of {args.repeats} interleaved runs of "
              f"{args.ppo_updates} updates: agent steps/s")
        print(f"{'agent':10s} {'one run':>9s} {'two runs':>9s} {'ratio':>7s}  runs (one / two)")
        for agent, v in runs2.items():
            one, two = statistics.median(x for x, _ in v), statistics.median(y for _, y in v)
            print(f"{agent:10s} {one:9.0f} {two:9.0f} {two / one:6.2f}x  " + " ".join(f"{x:.0f}/{y:.0f}" for x, y in v))
        return
    arch = ArchConfig()
    configs = {**CONFIGS, **(PPO_CONFIGS if args.ppo else {})}
    if args.agents is not None:  # the baseline and the agents only
        configs = {"baseline (1 thread, 1 group)": CONFIGS["baseline (1 thread, 1 group)"]}
        names = args.agents or list(AGENTS)
        for name in names:
            configs[f"PPO 16x128, agent {name}"] = dict(_PPO128, arch=ArchConfig(**AGENTS[name]))
        if "recurrent" in names:
            configs["PPO 16x128, agent recurrent, plastic step (before the still step)"] = dict(
                _PPO128, arch=ArchConfig(**AGENTS["recurrent"]), variant="plastic step")
    if args.baseline_native:
        old = _kernels.load(args.baseline_native)
        for name in ("baseline (1 thread, 1 group)", "2 group threads") + (
                ("PPO 16x128, 4x4, 2 group threads",) if args.ppo else ()) + (
                ("PPO 16x128, agent mstpn", "PPO 16x128, agent stp_only") if args.agents is not None else ()):
            if name not in configs:
                continue
            configs[f"{name}, older kernels"] = dict(configs[name], kernels=old)
    runs = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, kw in configs.items():
            is_ppo = kw.get("algo") == "ppo"
            runs[name].append(_measure(arch, kw, args.ppo_updates if is_ppo else args.updates, 1 if is_ppo else 2))
            print(f"  {name}: {runs[name][-1]:.0f} steps/s", flush=True)
    base = statistics.median(runs["baseline (1 thread, 1 group)"])
    print(f"Pong m-STPN training, {os.cpu_count()} CPUs, median of {args.repeats} interleaved runs "
          f"of {args.updates} updates")
    w = max(map(len, runs))
    print(f"{'config':{w}s} {'steps/s':>9s} {'vs baseline':>12s}  runs")
    for name, v in runs.items():
        m = statistics.median(v)
        print(f"{name:{w}s} {m:9.0f} {m / base:11.2f}x  {' '.join(f'{x:.0f}' for x in v)}")
    if args.baseline_native:
        old_base = statistics.median(runs["baseline (1 thread, 1 group), older kernels"])
        print(f"against the baseline with the older kernels ({old_base:.0f} steps/s): " + ", ".join(
            f"{name} {statistics.median(v) / old_base:.2f}x" for name, v in runs.items()))


if __name__ == "__main__":
    main()
