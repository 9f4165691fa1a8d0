"""Does a parameter's gradient have a direction? Gradient signal-to-noise of an agent at a checkpoint.

A drift (mean |p - p0|, logged during training) says that a parameter moved, not that the loss moved
it: Adam scales each entry's step by its own gradient magnitude, so an entry whose gradient is pure
noise still random-walks about ``lr`` per step (docs/stpn.md §9: 0.028 after 19,536 steps at 2.5e-4).
This module asks the question at the parameters themselves (``stoxbar gradients CHECKPOINT``):

* **Samples.** The recurrent PPO loss (:mod:`stoxbar.pong.ppo`, the comparison's objective; at the
  rollout's own policy the clipped surrogate's gradient is the plain policy gradient) is
  back-propagated ``K = rollouts x minibatches`` times: ``rollouts`` rollouts of ``rollout_len`` steps
  of the checkpoint's sampled policy in ``envs`` fresh emulators (sticky as the run trained, env seeds
  from ``seed``), each split into ``minibatches`` groups of whole env sequences, as the training
  splits them. No optimiser step is taken: every sample is a gradient at the same parameters, and the
  global-norm clip (one factor per step for all entries) is left out.
* **Per entry** j of a parameter (``live``: the entries with a non-zero gradient in some sample;
  the others, e.g. the synapses of an input that stayed 0, are left out of the t statistics), over
  the K samples: mean ``m_j``, standard deviation ``s_j``,
  ``t_j = m_j / (s_j / sqrt(K))``. With no direction, t_j follows Student's t with K - 1 degrees of
  freedom if the entry's gradient is Gaussian; it is not (sparse inputs leave most samples of a
  synapse 0), so each statistic is reported beside its **sign-flip null** (:func:`direction_stats`:
  the samples' signs flipped at random, which keeps everything but a direction):

  - ``significant``: the share of entries with |t_j| above the two-sided 5 % critical value
    (``NULL_SIGNIFICANT``);
  - ``median_abs_t``;
  - ``signal_power`` = sum_j (m_j^2 - s_j^2 / K) / sum_j s_j^2: the squared mean gradient, corrected
    for its own noise, over one sample's noise power (0 with no direction; 1 where one minibatch
    gradient holds as much direction as noise).

* **Tied rows** for the plastic layer's decay parameters of shape [H, P] (the m-STPN's ``theta``,
  the STPN's ``Lambda``): the per-sample sum of the gradient over the inputs (``NAME[unit]``, H
  entries: the gradient of one shift common to a unit's P decays, what a per-column parameter
  receives), over the units (``NAME[input]``, P entries: per row) and over all (``NAME[all]``: one
  global shift). A direction too weak to show per synapse can show in these sums.

Where does a spiking gradient come from (``stoxbar gradients CHECKPOINT --state-profile``,
:func:`state_gradient_profile`, docs/stpn.md §11.2)? Per minibatch of the same PPO loss: the pre-clip
parameter-gradient norm; by a hook on the state each replayed step carries (:class:`StateGradProbe`), each
env's norm of the loss gradient reaching its h_t and F_t (together); for the env with the largest, the step
of its peak and the peak over that env's median over the window (an unstable stretch of the recurrence shows
as a peak 10^2-10^3 x the median, docs/stpn.md §11.2); and, for each ``--clips`` NORM, the parameter
gradient with the state gradient clipped per step to NORM (``StateGradClip``): its norm and its cosine with
the unclipped one. ``--cut-state h`` or ``F`` detaches that part of the carried state at every step (the BPTT
then runs through the other only): which path carries a spike (docs/stpn.md §11.5); ``--hebbian-grad`` measures
under another setting of the m-STPN's Hebbian gradient than the run's.

May import: scipy, torch, stoxbar.core.validation, stoxbar.pong.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from scipy import stats
from torch import Tensor

from stoxbar.core.validation import ConfigError, check_choice, check_int
from stoxbar.pong.a2c import TrainConfig
from stoxbar.pong.agent import PongAgent, StateGradClip
from stoxbar.pong.ppo import PPORunner, normalized

NULL_SIGNIFICANT = 0.05  # two-sided test level of `significant` (its expectation with no direction)
# assumption: a bound on rollouts x minibatches; every sample is kept (float32, ~2 MB per sample of the paper
# agent), so 512 samples hold ~1 GB, and their float64 statistics one parameter at a time ~0.7 GB more
MAX_SAMPLES = 512


def _stats(m: Tensor, s2: Tensor, k: int, live: Tensor) -> Dict[str, float]:
    """`significant`, `median_abs_t`, `signal_power` from the per-entry means ``m`` and sums of squares ``s2``."""
    var = ((s2 - k * m * m) / (k - 1)).clamp_min(0.0)  # unbiased per-entry variance
    t = (m[live] / (var[live] / k).sqrt().clamp_min(1e-300)).abs()
    crit = float(stats.t.ppf(1 - NULL_SIGNIFICANT / 2, k - 1))
    noise = float(var.sum())
    return {"significant": float((t > crit).double().mean()) if t.numel() else float("nan"),
            "median_abs_t": float(t.median()) if t.numel() else float("nan"),
            "signal_power": float((m.pow(2) - var / k).sum()) / noise if noise > 0 else float("nan")}


def direction_stats(samples: Tensor, flips: int = 100, generator: torch.Generator = None) -> Dict[str, Any]:
    """Statistics of one parameter (module docstring) from its ``samples`` [K >= 2, entries] and their
    sign-flip null: the same statistics with each sample's sign flipped at random (``flips`` draws; one
    sign per sample, so the entries' sparsity and correlations are kept and only a direction is
    removed), as ``null_NAME`` (mean over the draws), ``null_NAME_q95`` (their 95th percentile) and
    ``p_NAME`` = (1 + draws at or above the observed value) / (1 + ``flips``), the permutation p-value
    of "no direction"."""
    k = check_int("samples", samples.shape[0], 2)
    check_int("flips", flips, 0)
    g = samples.reshape(k, -1).double()
    s2 = (g * g).sum(0)
    live = s2 > 0  # entries that received a gradient (an input that stayed 0 leaves its synapses none)
    m = g.mean(0)
    out: Dict[str, Any] = {"entries": int(g.shape[1]), "live": int(live.sum()),
                           "rms_gradient": float((s2 / k).mean().sqrt()),
                           "rms_mean_gradient": float(m.pow(2).mean().sqrt()),
                           **_stats(m, s2, k, live)}
    if flips:
        signs = torch.randint(0, 2, (flips, k), generator=generator, dtype=torch.float64) * 2 - 1
        null = [_stats((sg[:, None] * g).mean(0), s2, k, live) for sg in signs]
        for name in ("significant", "median_abs_t", "signal_power"):
            vals = torch.tensor([n[name] for n in null], dtype=torch.float64)
            out[f"null_{name}"] = float(vals.mean())
            out[f"null_{name}_q95"] = float(vals.quantile(0.95))
            out[f"p_{name}"] = (1 + int((vals >= out[name]).sum())) / (1 + flips)  # one-sided permutation p
    return out


def tied_views(agent: PongAgent) -> Dict[str, Tuple[str, Callable[[Tensor], Tensor]]]:
    """``row name -> (parameter name, gradient -> tied gradient)`` for the plastic layer's [H, P] decay
    parameters (module docstring); ``{}`` for a cell without them."""
    cell = agent.cell
    names = cell.decay_parameters() if hasattr(cell, "decay_parameters") else ("lam",)
    out: Dict[str, Tuple[str, Callable[[Tensor], Tensor]]] = {}
    for name, p in cell.named_parameters():
        if name in names and p.dim() == 2 and p.shape[0] > 1 and p.shape[1] > 1:
            full = f"cell.{name}"
            out[f"{full}[unit]"] = (full, lambda g: g.sum(1))
            out[f"{full}[input]"] = (full, lambda g: g.sum(0))
            out[f"{full}[all]"] = (full, lambda g: g.sum().reshape(1))
    return out


def _minibatches(agent: PongAgent, cfg: TrainConfig, rollouts: int, envs: int, minibatches: int, rollout_len: int,
                 seed: int, **overrides) -> Iterator[Tuple[int, int, PPORunner, Dict[str, Any], Tensor]]:
    """The minibatches both analyses replay: ``rollouts`` rollouts of ``rollout_len`` steps of the checkpoint's
    sampled policy in ``envs`` fresh emulators (env i: ``seed`` + i; torch seeded with ``seed`` in a forked RNG),
    each split into ``minibatches`` groups of whole env sequences, as the training splits them. ``cfg``: the run's
    training configuration, with PPO, one emulator group, these sizes and ``overrides``. Yields (rollout,
    minibatch, runner, buffers, env indices); the emulators are closed and the gradients cleared at the end."""
    check_int("envs", envs, 2, 1024)  # checked here, before the first sample is asked for
    check_int("minibatches", minibatches, 1, envs)
    check_int("seed", seed, 0, 2**31 - 1 - envs)
    cfg = dataclasses.replace(cfg, algo="ppo", num_envs=envs, rollout_len=rollout_len, ppo_minibatches=minibatches,
                              env_groups=1, group_threads=False, ppo_epochs=1, **overrides)

    def samples():
        agent.train()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            runner = PPORunner(agent, None, cfg, env_seed=seed)
            try:
                for r in range(rollouts):
                    buf, _, _ = runner._rollout()
                    for m, idx in enumerate(torch.arange(envs).tensor_split(minibatches)):
                        yield r, m, runner, buf, idx
            finally:
                agent.zero_grad(set_to_none=True)
                runner.close()

    return samples()


def gradient_directions(agent: PongAgent, cfg: TrainConfig, rollouts: int = 8, envs: int = 16,
                        minibatches: int = 4, rollout_len: int = 128, seed: int = 100_000, flips: int = 100,
                        progress: Callable[[int, int], None] = lambda i, n: None) -> Dict[str, Any]:
    """Sample the loss gradient ``rollouts x minibatches`` times at ``agent``'s parameters (module docstring).

    ``cfg``: the run's training configuration (its sticky probability, discount, loss coefficients);
    its algorithm, envs and rollout length are replaced by the arguments. ``seed`` seeds the emulators
    (env i: seed + i), the policy's action draws and the sign-flip null (the same call gives the same
    numbers). Returns ``{"samples": K, "settings": {...}, "rows": {name: direction_stats + shape}}``, a
    row per trainable parameter of ``agent`` and the tied rows of :func:`tied_views`.
    """
    check_int("rollouts", rollouts, 1)
    check_int("rollout_len", rollout_len, 1, 1000)
    batches = _minibatches(agent, cfg, rollouts, envs, minibatches, rollout_len, seed)
    k = rollouts * minibatches
    if k < 2 or k > MAX_SAMPLES:
        raise ConfigError(f"rollouts x minibatches = {k}: must be in [2, {MAX_SAMPLES}] (gradient samples)")
    params = {n: p for n, p in agent.named_parameters() if p.requires_grad}
    views = {n: (n, lambda g: g) for n in params} | tied_views(agent)
    samples: Dict[str, List[Tensor]] = {row: [] for row in views}
    done = 0
    for _, _, runner, buf, idx in batches:
        agent.zero_grad(set_to_none=True)
        runner._minibatch_loss(buf, idx, normalized(buf["adv"][:, idx]))
        for row, (name, view) in views.items():
            g = params[name].grad
            samples[row].append(view(torch.zeros_like(params[name]) if g is None else g.detach()).clone())
        done += 1
        progress(done, k)
    gen = torch.Generator().manual_seed(seed)
    rows = {row: {"shape": list(v[0].shape), **direction_stats(torch.stack(v), flips, gen)}
            for row, v in samples.items()}
    return {"samples": k, "settings": {"rollouts": rollouts, "envs": envs, "minibatches": minibatches,
                                       "rollout_len": rollout_len, "seed": seed, "sticky": cfg.sticky,
                                       "flips": flips, "level": NULL_SIGNIFICANT},
            "rows": rows}


def format_rows(result: Dict[str, Any], only: List[str] = ()) -> List[str]:
    """The result as text lines: one per row (``only``: rows whose name starts with one of these), each
    statistic beside its sign-flip null's mean."""
    lines = [f"{result['samples']} gradient samples; each statistic / its sign-flip null's mean (no direction), "
             "p: the share of null draws at or above it",
             f"{'parameter':<22} {'entries':>7} {'live':>7} {'rms grad':>9} {'significant':>13} {'p':>5} "
             f"{'median |t|':>13} {'signal power':>17} {'p':>5}"]
    for name, r in result["rows"].items():
        if only and not any(name.startswith(o) for o in only):
            continue
        pair = lambda k, f: (f"{r[k]:{f}}/{r['null_' + k]:{f}}" if "null_" + k in r else f"{r[k]:{f}}")  # noqa: E731
        p = lambda k: f"{r['p_' + k]:.2f}" if "p_" + k in r else "-"  # noqa: E731
        lines.append(f"{name:<22} {r['entries']:>7d} {r['live']:>7d} {r['rms_gradient']:>9.3g} "
                     f"{pair('significant', '.3f'):>13} {p('significant'):>5} {pair('median_abs_t', '.3f'):>13} "
                     f"{pair('signal_power', '.4f'):>17} {p('signal_power'):>5}")
    return lines


STATE_PARTS = ("h", "F")  # the carried state's tensors, in order (a cut names one)


class StateGradProbe:
    """Applied to the state each replayed step carries (``PongAgent.unroll``'s ``state_grad_clip``): detaches
    the part named by ``cut`` (``STATE_PARTS``; the BPTT runs through the rest), applies ``clip`` (if any), then
    records, in backward, each sample's norm of the gradient reaching each carried tensor (before the clip of that
    step passes it on). ``norms()``: [T, B, tensors], 0 where none arrived."""

    def __init__(self, clip: Optional[StateGradClip] = None, cut: Optional[str] = None):
        self.clip = clip
        self.cut = None if cut is None else STATE_PARTS.index(check_choice("cut_state", cut, STATE_PARTS))
        self._rows: List[List[Optional[Tensor]]] = []

    def __call__(self, state):
        if self.cut is not None:
            state = tuple(s.detach() if i == self.cut else s for i, s in enumerate(state))
        state = self.clip(state) if self.clip is not None else state
        row: List[Optional[Tensor]] = [None] * len(state)
        self._rows.append(row)
        for i, s in enumerate(state):
            if s.requires_grad:
                s.register_hook(lambda g, i=i, row=row: row.__setitem__(
                    i, None if g is None else g.detach().reshape(g.shape[0], -1).norm(dim=1)))
        return state

    def norms(self, batch: int) -> Tensor:
        zero = torch.zeros(batch)
        return torch.stack([torch.stack([zero if v is None else v for v in row], dim=1) for row in self._rows])


def recurrent_gain(agent: PongAgent) -> Optional[Dict[str, float]]:
    """The m-STPN's long-term h -> h map, gain x W[:, h inputs] (F's short-term part and tanh' left out):
    its largest singular value and spectral radius. Above 1, the linearised recurrence expands along some
    direction wherever the units are off saturation: the stretches of docs/stpn.md §11.2. None for a cell
    without the digital gain (the STPN normalises its weights per unit) or with the h feedback cut."""
    cell = agent.cell
    if not hasattr(cell, "gain") or not getattr(cell, "h_feedback", True):
        return None
    with torch.no_grad():
        m = (cell.gain[:, None] * cell.W)[:, cell.n_pre - cell.hidden:].double()
        return {"sigma_max": float(torch.linalg.svdvals(m)[0]),
                "spectral_radius": float(torch.linalg.eigvals(m).abs().max())}


def state_gradient_profile(agent: PongAgent, cfg: TrainConfig, rollouts: int = 3, envs: int = 16,
                           minibatches: int = 4, rollout_len: int = 128, seed: int = 100_000,
                           clips: Sequence[float] = (), cut: Optional[str] = None,
                           progress: Callable[[int, int], None] = lambda i, n: None) -> Dict[str, Any]:
    """Profile the BPTT gradient through the carried state (module docstring) over ``rollouts`` rollouts of
    ``envs`` emulators split into ``minibatches`` (the sampling of :func:`gradient_directions`; the run's own
    ``state_grad_clip`` is left out, ``clips`` are measured instead; ``cut``: the state part detached at every
    step, in all of them, :class:`StateGradProbe`). Returns ``{"settings": ...,
    "minibatches": [{"rollout", "minibatch", "grad_norm", "state_grad_max", "env", "peak_step",
    "peak_over_median", "trace" (that env's norm per step), "clipped": {NORM: {"grad_norm", "cosine"}}}, ...]}``."""
    check_int("rollouts", rollouts, 1, MAX_SAMPLES)
    check_int("rollout_len", rollout_len, 2, 1000)
    StateGradProbe(cut=cut)  # checks the cut before any emulator starts
    batches = _minibatches(agent, cfg, rollouts, envs, minibatches, rollout_len, seed, state_grad_clip=0.0)
    clips = [float(c) for c in clips]
    for c in clips:
        StateGradClip(c)  # checks the value (> 0)
    params = [p for p in agent.parameters() if p.requires_grad]

    def grad(runner, buf, idx, carry) -> Tensor:
        agent.zero_grad(set_to_none=True)
        runner._minibatch_loss(buf, idx, normalized(buf["adv"][:, idx]), carry=carry)
        return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in params])

    out: List[Dict[str, Any]] = []
    for r, m, runner, buf, idx in batches:
        probe = StateGradProbe(cut=cut)
        g0 = grad(runner, buf, idx, probe)
        norms = probe.norms(len(idx))  # [T, B, tensors]
        per_env = norms.norm(dim=2)  # [T, B]: h and F together
        b = int(per_env.max(dim=0).values.argmax())
        peak, median = per_env[:, b].max(), per_env[:, b].median()
        rec = {"rollout": r, "minibatch": m, "grad_norm": float(g0.norm()),
               "state_grad_max": float(peak), "env": int(idx[b]), "peak_step": int(per_env[:, b].argmax()),
               "peak_over_median": float(peak / median) if median > 0 else float("inf"),
               "trace": [float(v) for v in per_env[:, b]], "clipped": {}}
        for c in clips:
            g = grad(runner, buf, idx, StateGradProbe(StateGradClip(c), cut=cut))
            rec["clipped"][f"{c:g}"] = {"grad_norm": float(g.norm()), "cosine": float(
                torch.nn.functional.cosine_similarity(g.double(), g0.double(), dim=0))}
        out.append(rec)
        progress(len(out), rollouts * minibatches)
    return {"settings": {"rollouts": rollouts, "envs": envs, "minibatches": minibatches, "rollout_len": rollout_len,
                         "seed": seed, "sticky": cfg.sticky, "clips": clips, "cut_state": cut,
                         "hebbian_grad": cfg.hebbian_grad},
            "recurrent_gain": recurrent_gain(agent), "minibatches": out}


def format_profile(result: Dict[str, Any]) -> List[str]:
    """:func:`state_gradient_profile` as text lines, one per minibatch."""
    clips = result["settings"]["clips"]
    lines = [f"state-gradient profile: {result['settings']['envs']} envs x {result['settings']['rollout_len']} steps "
             f"per rollout, {result['settings']['minibatches']} minibatches; max |dL/ds|: the largest norm of one env's "
             "gradient reaching its carried (h, F), at step 'peak'; peak/median: over that env's median in the window"]
    st = result["settings"]
    cut = st.get("cut_state")
    through = "h and F" if cut is None else (f"{' and '.join(p for p in STATE_PARTS if p != cut)} (the carried {cut} "
                                             "detached at every step)")
    lines.append(f"BPTT through: {through}; the m-STPN's Hebbian gradient: {st.get('hebbian_grad', 'full')}")
    rg = result.get("recurrent_gain")
    if rg is not None:
        lines.append(f"long-term h -> h map (gain x W_hh): largest singular value {rg['sigma_max']:.3f}, spectral radius "
                     f"{rg['spectral_radius']:.3f}")
    lines.append(f"{'rollout':>7} {'mb':>3} {'grad norm':>10} {'max |dL/ds|':>11} {'env':>4} {'peak':>5} "
                 f"{'peak/median':>11}" + "".join(f" {'clip ' + format(c, 'g') + ': norm, cos':>22}" for c in clips))
    for rec in result["minibatches"]:
        lines.append(f"{rec['rollout']:>7d} {rec['minibatch']:>3d} {rec['grad_norm']:>10.3g} "
                     f"{rec['state_grad_max']:>11.3g} {rec['env']:>4d} {rec['peak_step']:>5d} "
                     f"{rec['peak_over_median']:>11.3g}"
                     + "".join(f" {v['grad_norm']:>13.3g}, {v['cosine']:6.3f}" for v in rec["clipped"].values()))
    return lines
