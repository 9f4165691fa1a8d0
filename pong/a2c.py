"""A2C training of the Pong agent with truncated BPTT through the short-term state F (PPO: pong/ppo.py,
``algo = "ppo"``, the same loop, checkpoints and logs).

Per update (docs/stpn.md 2; ikostrikov/pytorch-a3c; docs/training-notes.md): N envs step T agent steps with
the graph kept (T = 20 = RLlib's max_seq_len, the truncation window of the STPN paper). (h, F)
are carried across updates, detached at the start of each rollout, zeroed where a game ended.
Advantages by GAE (gamma 0.99, lambda 1.0 = n-step returns as RLlib's A2C), bootstrapped with
V of the next observation (terminal: 0). Loss = policy + value_coef * mean((R - V)^2)
- entropy_coef * entropy (means over T x N; SB3's convention for the coefficients), Adam
lr 7e-4 (eps 1e-5, assumption; the m-STPN's W in device units gets a scaled lr, see
cells.py), global grad-norm clip 40 (docs/stpn.md 2), then the device constraints (W in [-1, 1]).

Outputs in the run directory: progress.csv (one row per log interval), episodes.csv (one row
per finished game), curve.png, checkpoint.pt (latest, atomic) and checkpoint-uNNNNNNN.pt
snapshots, config.json. ``train(cfg)`` / ``train_main(argv)`` (``stoxbar train``). Resume with
``--resume RUN_DIR`` (or ``RUN_DIR/checkpoint.pt``): the run continues in the same directory from
its latest checkpoint (at most one checkpoint interval is redone; the emulators restart their
games). ``--resume RUN_DIR/checkpoint-uNNNNNNN.pt`` (a snapshot) never rewinds RUN_DIR: it branches
into a NEW run directory beside it, whose config.json records the parent (run, checkpoint,
update) and whose progress.csv / episodes.csv start with the parent's rows up to the snapshot.
A run directory is locked (:class:`stoxbar.core.fsio.DirLock`) while it trains: a second training or
resume of it is refused at once, naming the holder (docs/reliability.md §3, §5). SIGINT / SIGTERM
finish the update, write the checkpoint and raise :class:`TrainingInterrupted` (``stoxbar train``
exits 130). A resume removes stray ``.tmp-*`` files (an interrupted checkpoint write) and reads
the run's CSVs and config.json as data: damage is one ConfigError naming the file. A new run
directory is created only after the arguments (the device preset included) are checked.

May import: torch, numpy, stoxbar.core.fsio, stoxbar.core.validation, stoxbar.devices, stoxbar.stpn,
stoxbar.pong.{agent,checkpoint,env,ppo,rollout}.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import dataclasses
import io
import json
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from stoxbar.core import fsio
from stoxbar.core.fsio import DirLock
from stoxbar.pong.agent import HEBBIAN_GRADS, ArchConfig, PongAgent, check_mstpn_training, device_from_preset
from stoxbar.stpn.cells import DECAY_ADDRESSINGS
from stoxbar.pong.checkpoint import (CheckpointError, PathLike, atomic_write_bytes, build_agent, find_checkpoint,
                                     load_agent, load_checkpoint, new_run_dir, save_checkpoint)
from stoxbar.pong.env import FRAMESKIP, REPEAT_ACTION_PROBABILITY, check_sticky
from stoxbar.pong.ppo import PPORunner
from stoxbar.pong.rollout import EnvRunner, detach_state, evaluate_actions, gae  # noqa: F401  (re-exported)
from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

DRIFT_PARAMS = ("theta", "theta_row", "gam", "W")  # plastic-layer parameters whose drift from initialisation is logged
CSV_FIELDS = ["update", "steps", "frames", "episodes", "mean_return_10", "loss", "policy_loss", "value_loss",
              "entropy", "grad_norm", "sparsity", "steps_per_s", "wall_s", "approx_kl", "clip_frac", "lr",
              "grad_norm_max", "grad_skips", "state_clip_frac", "kl_stop", "bias_energy_uj", "bias_penalty"] + [
                  f"{n}_{k}" for n in DRIFT_PARAMS for k in ("drift", "corr0")]


def check_grad_spike(value: float, field: str = "grad_spike") -> float:
    """The spike guard's factor (TrainConfig.grad_spike): 0 (off) or in [2, 1e6]."""
    check_range(field, value, 0.0, 1e6)
    if 0 < value < 2:
        raise ConfigError(f"{field} = {value!r}: allowed: 0 (off) or [2, 1e+06] (a factor over the median gradient "
                          "norm)")
    return value


# TrainConfig fields a resumed run takes from the command line when given there (the others stay the run's own)
RESUME_OVERRIDES = ("grad_spike", "state_grad_clip", "target_kl", "anneal_lr")


@dataclass(frozen=True)
class TrainConfig:
    """A2C hyper-parameters and bookkeeping (module docstring); steps are agent steps."""

    arch: ArchConfig = field(default_factory=ArchConfig)
    num_envs: int = 16  # docs/stpn.md 5.4
    rollout_len: int = 20  # truncated BPTT window (RLlib max_seq_len, docs/stpn.md 1.3)
    total_steps: int = 10_000_000  # agent steps (x4 frames)
    lr: float = 7e-4  # docs/stpn.md 5.4 (paper's STPN lr)
    adam_eps: float = 1e-5  # assumption (CleanRL/SB3 RL default)
    gamma: float = 0.99  # docs/stpn.md 2
    gae_lambda: float = 1.0  # RLlib A2C default (docs/stpn.md 2)
    entropy_coef: float = 0.01  # docs/stpn.md 2
    value_coef: float = 0.5  # docs/stpn.md 2
    max_grad_norm: float = 40.0  # docs/stpn.md 5.2 (pytorch-a3c) / 5.4
    seed: int = 0
    threads: int = 1  # torch threads (1 leaves the other core to others)
    env_threads: int = 1  # emulator threads
    env_groups: int = 1  # emulator groups stepped asynchronously, each group's emulation overlapping the other's forward
    group_threads: bool = False  # env_groups > 1: each group rolls out and back-propagates in its own thread
    checkpoint_every: int = 250  # updates between checkpoints
    snapshot_every: int = 10  # every k-th checkpoint is also kept as checkpoint-uNNNNNNN.pt
    log_every: int = 10  # updates between CSV rows
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0 = no limit
    runs_dir: str = "runs"
    sticky: float = REPEAT_ACTION_PROBABILITY  # training emulators' repeat-action probability (pong/env.py)
    init_from: str = ""  # checkpoint whose agent weights start this run (fine-tuning); "" = fresh initialisation
    # with init_from: the m-STPN's decay addressing to fine-tune under ("" = the checkpoint's); the start's
    # biases are fitted to it (MSTPNCell.fit_decay_to_bias)
    init_decay_addressing: str = ""
    # with init_from, written by train() at the fine-tune's start (lineage; "" / -1 = not recorded): the SHA-256 of
    # init_from's file as it was read, and the seed of the run that trained this lineage from scratch (the
    # initialisation that the ablations tau_frozen_init / gamma_frozen_init rebuild; pong/ablate.py)
    init_sha256: str = ""
    init_root_seed: int = -1
    rollback_drop: float = 0.0  # stabilised A2C (CollapseGuard): 10-game mean this far below its best -> roll back; 0 = off
    rollback_lr_factor: float = 0.5  # the learning rate is scaled by this at each rollback (assumption)
    algo: str = "a2c"  # "a2c" (this module) or "ppo" (pong/ppo.py: recurrent PPO, CleanRL's ppo_atari_lstm)
    ppo_epochs: int = 4  # PPO: passes over each rollout (CleanRL update_epochs)
    ppo_minibatches: int = 4  # PPO: minibatches of whole env sequences per pass (CleanRL num_minibatches)
    clip_coef: float = 0.1  # PPO: ratio and value clip (CleanRL clip_coef)
    # the m-STPN's theta at lr x this (docs/stpn.md §9.1: theta's scale is ~30x W's relative to its lr)
    theta_lr_scale: float = 1.0
    # skip an optimiser step whose pre-clip gradient norm exceeds this many times the median of the last 100
    # applied steps (exploding BPTT gradients through (h, F), docs/stpn.md §11.1); 0 = off (assumption: 20)
    grad_spike: float = 0.0
    # PPO: each env's gradient through the carried state (h, F) clipped to this norm at every step of the BPTT
    # (pong/agent.py StateGradClip, docs/stpn.md §11.2); 0 = off
    state_grad_clip: float = 0.0
    # PPO: stop an update at the first minibatch whose approx_kl exceeds this (SB3's target_kl, docs/stpn.md
    # §11.3); 0 = off
    target_kl: float = 0.0
    # the m-STPN's long-term h -> h map (gain x W_hh) projected to this largest singular value after every optimiser
    # step and at the start (MSTPNCell.limit_recurrent_norm, docs/stpn.md §11.4); 0 = off
    recurrent_norm_max: float = 0.0
    # the m-STPN's Hebbian update Gamma * (h z^T) in backward: "full", or "stop_activity": no gradient to its
    # activity factors h and z (Gamma's stays), cutting the loop F -> h -> F' through which BPTT explodes
    # (MSTPNCell.hebbian_activity_grad, docs/stpn.md §11.5)
    hebbian_grad: str = "full"
    # every parameter group's learning rate falls linearly from its base at step 0 to 0 at total_steps, set before
    # each update (CleanRL's anneal_lr, the default of its ppo_atari_lstm.py; set_annealed_lr)
    anneal_lr: bool = False
    # the m-STPN: the loss gains bias_energy_coef x the energy (uJ) its held decay biases draw per agent step on the
    # chip (MSTPNCell.held_bias_energy_j, the chip's own price of the bias; docs/stpn.md §12): every held bias
    # has to earn its energy; 0 = off
    bias_energy_coef: float = 0.0

    def __post_init__(self):
        if not isinstance(self.arch, ArchConfig):
            raise ConfigError(f"arch must be an ArchConfig, got {type(self.arch).__name__}")
        check_int("num_envs", self.num_envs, 1, 1024)
        check_int("rollout_len", self.rollout_len, 1, 1000)
        check_int("total_steps", self.total_steps, 1)
        check_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        check_range("adam_eps", self.adam_eps, 0.0, 1.0, lo_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("entropy_coef", self.entropy_coef, 0.0, 10.0)
        check_range("value_coef", self.value_coef, 0.0, 100.0)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, None, lo_open=True)
        check_int("seed", self.seed, 0, 2**31 - 1)
        check_int("threads", self.threads, 1, 256)
        check_int("env_threads", self.env_threads, 1, 256)
        check_int("env_groups", self.env_groups, 1, 2)
        if not isinstance(self.group_threads, bool):
            raise ConfigError(f"group_threads must be true or false, got {self.group_threads!r}")
        if self.group_threads and self.env_groups < 2:
            raise ConfigError("group_threads needs env_groups >= 2")
        if self.num_envs % self.env_groups:
            raise ConfigError(f"num_envs {self.num_envs} must be divisible by env_groups {self.env_groups}")
        check_int("checkpoint_every", self.checkpoint_every, 1)
        check_int("snapshot_every", self.snapshot_every, 1)
        check_int("log_every", self.log_every, 1)
        check_range("max_minutes", self.max_minutes, 0.0, None)
        check_sticky(self.sticky, "sticky")
        check_range("rollback_drop", self.rollback_drop, 0.0, 42.0)
        check_range("rollback_lr_factor", self.rollback_lr_factor, 0.0, 1.0, lo_open=True)
        check_choice("algo", self.algo, tuple(ALGO_DEFAULTS))
        check_int("ppo_epochs", self.ppo_epochs, 1, 100)
        check_int("ppo_minibatches", self.ppo_minibatches, 1, self.num_envs if self.algo == "ppo" else None)
        check_range("clip_coef", self.clip_coef, 0.0, 1.0, lo_open=True)
        check_range("theta_lr_scale", self.theta_lr_scale, 0.0, 1e4, lo_open=True)
        check_grad_spike(self.grad_spike)
        check_range("state_grad_clip", self.state_grad_clip, 0.0, 1e6)  # PPO only: checked by train()
        check_range("target_kl", self.target_kl, 0.0, 10.0)  # PPO only: checked by train()
        check_range("recurrent_norm_max", self.recurrent_norm_max, 0.0, 100.0)
        check_choice("hebbian_grad", self.hebbian_grad, HEBBIAN_GRADS)
        check_range("bias_energy_coef", self.bias_energy_coef, 0.0, 1e3)
        if not isinstance(self.anneal_lr, bool):
            raise ConfigError(f"anneal_lr must be true or false, got {self.anneal_lr!r}")
        if not self.init_from:  # a fine-tune's agent is checked by its runner (its arch is the checkpoint's)
            check_mstpn_training(self, self.arch)
        if self.theta_lr_scale != 1.0 and self.arch.cell != "mstpn":
            raise ConfigError(f"theta_lr_scale = {self.theta_lr_scale}: only an m-STPN has time constants (theta); "
                              f"allowed for cell {self.arch.cell!r}: 1")
        if not isinstance(self.init_from, str):
            raise ConfigError(f"init_from must be a checkpoint path (str), got {type(self.init_from).__name__}")
        if self.init_decay_addressing:
            check_choice("init_decay_addressing", self.init_decay_addressing, DECAY_ADDRESSINGS)
            if not self.init_from:
                raise ConfigError("init_decay_addressing needs init_from (a fresh run takes arch.decay_addressing)")
        check_int("init_root_seed", self.init_root_seed, -1, 2**31 - 1)
        if not isinstance(self.init_sha256, str) or (self.init_sha256 and not re.fullmatch(r"[0-9a-f]{64}",
                                                                                        self.init_sha256)):
            raise ConfigError(f"init_sha256 = {self.init_sha256!r}: a SHA-256 in 64 lower-case hex digits, or \"\"")
        if not self.init_from and (self.init_sha256 or self.init_root_seed != -1):
            raise ConfigError(f"init_sha256 / init_root_seed = {self.init_sha256!r} / {self.init_root_seed}: "
                              "the lineage of a fine-tune; allowed without init_from: \"\" / -1")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["arch"] = ArchConfig.from_dict(d["arch"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)


# the CLI's per-algorithm defaults of these TrainConfig fields: A2C's are TrainConfig's own; PPO's are
# CleanRL's ppo_atari_lstm.py settings (num_steps 128, learning_rate 2.5e-4, gae_lambda 0.95, max_grad_norm 0.5;
# docs/stpn.md §11)
ALGO_DEFAULTS = {"a2c": {k: TrainConfig.__dataclass_fields__[k].default
                         for k in ("rollout_len", "lr", "gae_lambda", "max_grad_norm")},
                 "ppo": {"rollout_len": 128, "lr": 2.5e-4, "gae_lambda": 0.95, "max_grad_norm": 0.5}}


# ------------------------------------------------------------------------------------------------
# the A2C maths (shared by the training loop and the tests)
# ------------------------------------------------------------------------------------------------


def a2c_loss(logps: Tensor, values: Tensor, entropies: Tensor, advantages: Tensor, returns: Tensor,
             value_coef: float, entropy_coef: float) -> Tuple[Tensor, Dict[str, float]]:
    """A2C loss over [T, N]: -mean(logp * A) + value_coef * mean((R - V)^2) - entropy_coef * mean(H)."""
    policy_loss = -(logps * advantages.detach()).mean()
    value_loss = (returns.detach() - values).pow(2).mean()
    entropy = entropies.mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    terms = {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def initial_cell_params(cfg: TrainConfig, names: Sequence[str] = DRIFT_PARAMS) -> Dict[str, Tensor]:
    """The plastic layer's parameters ``names`` at initialisation of a run with ``cfg`` (its seed), for drift
    logs (default: ``DRIFT_PARAMS``) and ablations.

    Rebuilt from the seed as :func:`train` builds a fresh agent (or read from ``cfg.init_from``, the
    checkpoint a fine-tuning run starts from); the global torch RNG is left as it was.
    """
    if cfg.init_from:  # a fine-tuning run starts from the checkpoint's weights
        cell = start_agent(cfg)[0].cell
        return {n: p.detach().clone() for n, p in cell.named_parameters() if n in names}
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        cell = PongAgent(cfg.arch).cell
    return {n: p.detach().clone() for n, p in cell.named_parameters() if n in names}


def root_seed(train_config: Dict[str, Any]) -> int:
    """The seed of the run that trained a checkpoint's lineage from scratch, from its ``train_config``: its own
    seed for a run from scratch; a fine-tune's recorded ``init_root_seed``; for a fine-tune that did not record
    it (stoxbar before session 31), its ``init_from`` chain followed file by file (``find_checkpoint``) to the
    run from scratch or to a recorded root. A loop, a missing or unreadable file, or one whose bytes are not those
    a fine-tune recorded (``init_sha256``): ConfigError naming it."""
    cfg, seen = TrainConfig.from_dict(train_config), []
    while cfg.init_from and cfg.init_root_seed < 0:
        path = find_checkpoint(cfg.init_from)
        if path in seen:
            raise ConfigError(f"the init_from chain loops at {path} ({' -> '.join(map(str, seen + [path]))}); "
                              "the initialisation cannot be traced")
        seen.append(path)
        if cfg.init_sha256 and fsio.file_sha256(path) != cfg.init_sha256:
            raise ConfigError(f"init_sha256 = {cfg.init_sha256!r}: the start file {path} changed since the fine-tune "
                              "started from it; the initialisation cannot be traced through it")
        try:
            cfg = TrainConfig.from_dict(load_checkpoint(path, required=("train_config",))["train_config"])
        except CheckpointError as exc:
            raise ConfigError(f"init_from chain: {exc}") from None
    return cfg.init_root_seed if cfg.init_from else cfg.seed


def start_agent(cfg: TrainConfig, device: Any = None) -> Tuple[PongAgent, Dict[str, Any]]:
    """The agent a fine-tuning run starts from: ``cfg.init_from``'s, moved to ``cfg.init_decay_addressing``
    if that is set and differs (the checkpoint's biases fitted to the scheme; every other weight kept)."""
    agent, ckpt = load_agent(cfg.init_from, device=device)
    want = cfg.init_decay_addressing
    if not want or want == agent.arch.decay_addressing:
        return agent, ckpt
    if agent.arch.cell != "mstpn":
        raise ConfigError(f"init_decay_addressing = {want!r}: checkpoint {cfg.init_from} is not an m-STPN")
    moved = PongAgent(dataclasses.replace(agent.arch, decay_addressing=want), device=agent.device_model)
    decay = {f"cell.{n}" for n in agent.cell.decay_parameters()} | {f"cell.{n}" for n in moved.cell.decay_parameters()}
    moved.load_state_dict({k: v for k, v in agent.state_dict().items() if k not in decay}, strict=False)
    moved.cell.fit_decay_to_bias(agent.cell.trained_v_bias().detach())
    moved.cell.h_feedback = agent.cell.h_feedback
    moved.eval()
    return moved, ckpt


def param_drift(agent: PongAgent, init: Dict[str, Tensor]) -> Dict[str, float]:
    """Per parameter of ``init``: ``NAME_drift`` = mean |p - p0| and ``NAME_corr0`` = correlation of p with p0."""
    out: Dict[str, float] = {}
    params = dict(agent.cell.named_parameters())
    for name, p0 in init.items():
        p = params[name].detach()
        out[f"{name}_drift"] = float((p - p0).abs().mean())
        stacked = torch.stack([p.flatten().double(), p0.flatten().double()])
        out[f"{name}_corr0"] = float(torch.corrcoef(stacked)[0, 1])
    return out


class CollapseGuard:
    """Stabilised A2C: A2C on Pong can collapse (the shipped run fell from +16 to -15 in ~20 updates,
    pong/checkpoints/pong_mstpn_a2c/README.md). At each checkpoint with a full 10-game window, the guard
    keeps a copy of the weights and optimiser state if the window's mean is the best so far; when the
    running mean falls ``drop`` points below that best, :meth:`rollback` restores the copy and scales
    every group's learning rate by ``lr_factor`` (compounding over rollbacks). Off when ``drop`` is 0.
    The copy lives in memory: a resumed run starts a new guard."""

    def __init__(self, drop: float, lr_factor: float):
        self.drop, self.lr_factor = drop, lr_factor
        self.best = -math.inf
        self._saved: Optional[Tuple[Dict[str, Any], Dict[str, Any]]] = None

    def checkpointed(self, mean_return: float, agent: PongAgent, opt: torch.optim.Optimizer) -> None:
        """Remember the weights and optimiser state if ``mean_return`` (a full window) is the best yet."""
        if self.drop > 0 and mean_return >= self.best:
            self.best = mean_return
            self._saved = (copy.deepcopy(agent.state_dict()), copy.deepcopy(opt.state_dict()))

    def collapsed(self, mean_return: float) -> bool:
        return self.drop > 0 and self._saved is not None and mean_return < self.best - self.drop

    def rollback(self, agent: PongAgent, opt: torch.optim.Optimizer) -> float:
        """Restore the best copy with its learning rates scaled by ``lr_factor``; returns the new base lr."""
        model, optim = self._saved
        for group in optim["param_groups"]:
            group["lr"] *= self.lr_factor
            if "lr_base" in group:  # an annealed schedule (set_annealed_lr) falls from the scaled base
                group["lr_base"] *= self.lr_factor
        agent.load_state_dict(model)
        opt.load_state_dict(copy.deepcopy(optim))
        return float(opt.param_groups[0]["lr"])


def set_annealed_lr(opt: torch.optim.Optimizer, frac: float) -> None:
    """Each parameter group's lr = its base lr x ``frac`` (the schedule's remaining fraction, in (0, 1]: the
    training loop passes 1 - steps / total_steps before each update). The base is the group's lr when first
    annealed, kept in the group as ``lr_base`` (so it travels with the optimiser state through checkpoints and
    resumes, and a rollback scales it)."""
    for group in opt.param_groups:
        group["lr"] = group.setdefault("lr_base", group["lr"]) * frac


def make_optimizer(agent: PongAgent, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the agent's parameter groups (per-group lr and eps, cells.py) at ``cfg.lr``, ``cfg.adam_eps``."""
    return torch.optim.Adam(agent.param_groups(cfg.lr, cfg.adam_eps, cfg.theta_lr_scale), lr=cfg.lr, eps=cfg.adam_eps)


def _legacy_param_order(agent: PongAgent) -> List[torch.nn.Parameter]:
    """Parameter order of the optimiser before theta had its own group: every parameter but the
    m-STPN's W (outside the cell first, then the cell's in named order), then W."""
    cell_ids = {id(p) for p in agent.cell.parameters()}
    rest = [p for p in agent.parameters() if id(p) not in cell_ids]
    named = list(agent.cell.named_parameters())
    return rest + [p for n, p in named if n != "W"] + [p for n, p in named if n == "W"]


def load_optimizer_state(opt: torch.optim.Optimizer, saved: Dict[str, Any], agent: PongAgent) -> None:
    """Load an optimiser state saved by this version, or by the earlier one with one group fewer
    (m-STPN without theta's own group, e.g. the shipped checkpoint): its per-parameter moments are
    mapped onto the new groups; each group's hyper-parameters are the new ones."""
    if len(saved["param_groups"]) == len(opt.param_groups):
        opt.load_state_dict(saved)
        return
    legacy = _legacy_param_order(agent)
    n_saved = sum(len(g["params"]) for g in saved["param_groups"])
    if len(saved["param_groups"]) != 2 or n_saved != len(legacy):
        raise CheckpointError(f"optimizer state has {len(saved['param_groups'])} parameter groups of {n_saved} "
                              f"parameters; expected {len(opt.param_groups)} groups (or the earlier layout of 2 "
                              f"groups of {len(legacy)} parameters)")
    new_index = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    order = [i for g in saved["param_groups"] for i in g["params"]]
    state = {new_index[id(legacy[k])]: saved["state"][i] for k, i in enumerate(order) if i in saved["state"]}
    groups, start = [], 0
    for g in opt.param_groups:
        groups.append({**{k: v for k, v in g.items() if k != "params"},
                       "params": list(range(start, start + len(g["params"])))})
        start += len(g["params"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------
# training loop
# ------------------------------------------------------------------------------------------------


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after writing its checkpoint (``run_dir``, ``signum``, ``update``)."""

    def __init__(self, run_dir: Path, signum: int, update: int):
        self.run_dir, self.signum, self.update = run_dir, signum, update
        super().__init__(f"interrupted by {signal.Signals(signum).name} at update {update}; checkpoint saved in "
                         f"{run_dir} (continue with: stoxbar train --resume {run_dir})")


class _Stop:
    """SIGTERM/SIGINT -> finish the update, checkpoint, exit."""

    def __init__(self):
        self.requested = False
        self.signum: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handler(self, signum, frame):
        if self.requested:  # second signal: give up at once
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_episodes(run_dir: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(frames, return) of every finished training game of a run (episodes.csv)."""
    path = run_dir / "episodes.csv"
    if not path.exists():
        return np.zeros(0), np.zeros(0)
    rows = fsio.read_csv(path, required=("frames", "return"), torn_tail_ok=True)
    return (np.array([fsio.csv_number(path, r, "frames", i) for i, r in enumerate(rows, 2)]),
            np.array([fsio.csv_number(path, r, "return", i) for i, r in enumerate(rows, 2)]))


def read_run_config(run_dir: Path) -> Dict[str, Any]:
    """A run's config.json, checked to hold what the curves need (ConfigError naming the file otherwise)."""
    path = Path(run_dir) / "config.json"
    cfg = fsio.read_json(path)
    arch = cfg.get("arch") if isinstance(cfg, dict) else None
    if (not isinstance(arch, dict) or not isinstance(arch.get("arch"), str) or not isinstance(arch.get("cell"), str)
            or not isinstance(cfg.get("seed"), int)):
        raise ConfigError(f"{path}: not a training run's config.json (arch.arch, arch.cell, seed); the file is damaged")
    return cfg


def _drift_log(run_dir: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(frames, theta_drift) of the rows of progress.csv that logged it (empty if none)."""
    path = run_dir / "progress.csv"
    if not path.exists():
        return np.zeros(0), np.zeros(0)
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("theta_drift")]
    return np.array([float(r["frames"]) for r in rows]), np.array([float(r["theta_drift"]) for r in rows])


def running_mean(values: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, len(values)))
    return np.convolve(values, np.ones(k) / k, mode="valid")


def figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _plot_curve(run_dir: Path) -> None:
    """curve.png: game returns vs frames (dots) and the 10-game mean, from episodes.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (run_dir / "episodes.csv").exists():
        return
    frames, ret = run_episodes(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(ret):
        ax.plot(frames, ret, ".", ms=3, alpha=0.3, label="game return")
        for k, style in ((10, "-"), (100, "-k")):
            if len(ret) >= k or k == 10:
                mean = running_mean(ret, k)
                ax.plot(frames[len(ret) - len(mean):], mean, style, lw=1 if k <= 10 else 2,
                        label=f"mean of last {min(k, len(ret))}")
    ax.set_xlabel("emulator frames")
    ax.set_ylabel("return (points)")
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(run_dir.name)
    fig.tight_layout()
    atomic_write_bytes(run_dir / "curve.png", figure_bytes(fig))


def compare_curves(run_dirs: Sequence[PathLike], out: PathLike, window: int = 100,
                   max_frames: Optional[float] = None) -> Dict[str, Dict[str, float]]:
    """Overlay the ``window``-game mean return vs frames of several runs into ``out`` (PNG, new file);
    below it, theta's drift from initialisation for runs whose progress.csv logged it.

    Returns per run: label, frames reached, games, and the mean return of its last ``window`` games
    within ``max_frames`` (so runs of different length are compared at the same budget).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: figures are never overwritten; choose a new path")
    drifts = {Path(d): _drift_log(Path(d)) for d in run_dirs}
    if any(len(v[0]) for v in drifts.values()):  # a second panel: theta's drift from initialisation
        fig, (ax, ax_d) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, height_ratios=(3, 2))
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax_d = None
    summary = {}
    for d in map(Path, run_dirs):
        cfg = read_run_config(d)
        frames, ret = run_episodes(d)
        if max_frames is not None:
            keep = frames <= max_frames
            frames, ret = frames[keep], ret[keep]
        if not len(ret):
            raise CheckpointError(f"{d}: no finished training games (episodes.csv)")
        label = f"{cfg['arch']['arch']}/{cfg['arch']['cell']} seed {cfg['seed']} ({d.name})"
        mean = running_mean(ret, window)
        ax.plot(frames[len(ret) - len(mean):], mean, lw=1.5, label=label)
        summary[str(d)] = {"label": label, "frames": float(frames[-1]), "games": int(len(ret)),
                           f"mean_return_last_{window}": float(ret[-window:].mean())}
        d_frames, d_theta = drifts[d]
        if max_frames is not None:
            d_theta, d_frames = d_theta[d_frames <= max_frames], d_frames[d_frames <= max_frames]
        if ax_d is not None and len(d_theta):
            ax_d.plot(d_frames, d_theta, lw=1.5, label=label)
            summary[str(d)]["theta_drift"] = float(d_theta[-1])
    if ax_d is not None:
        ax_d.set_ylabel("theta drift from init\n(mean |theta - theta0|)")
        ax_d.set_xlabel("emulator frames")
        ax_d.grid(alpha=0.3)
    ax.set_xlabel("emulator frames")
    ax.set_ylabel(f"mean return of the last {window} games")
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    atomic_write_bytes(out, figure_bytes(fig))
    return summary


def _truncate_csv(path: Path, column: str, limit: float, dest: Optional[Path] = None) -> None:
    """Keep the rows with ``column`` <= ``limit`` (after a resume later updates are redone), in
    place or (``dest``) into a new file."""
    if not path.exists():
        return
    head, body = fsio.read_csv_header(path, required=(column,), torn_tail_ok=True)
    keep = [r for i, r in enumerate(body, 2) if fsio.csv_number(path, dict(zip(head, r)), column, i) <= limit]
    buf = io.StringIO()
    csv.writer(buf).writerows([head] + keep)
    atomic_write_bytes(dest or path, buf.getvalue().encode())


def _append_csv(path: Path, fields: List[str], row: Dict[str, Any]) -> None:
    """Append ``row``; a file written with other columns (an earlier version's run) is first rewritten
    with ``fields`` (its rows keep their values; new columns are empty)."""
    new = not path.exists()
    if not new:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            head, old_rows = reader.fieldnames or [], list(reader)
        if head != list(fields):
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(old_rows)
            atomic_write_bytes(path, buf.getvalue().encode())
    with fsio.open_append(path, "training log") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)
        fh.flush()


class A2CRunner(EnvRunner):
    """The environments, the carried (h, F) and one A2C update (rollout with graph + step).

    With ``cfg.env_groups`` 2 the environments are two vector envs of num_envs/2 games, stepped
    asynchronously (ale-py's send/recv): each group's forward pass runs while the other group's
    emulators play, so the emulator thread and the torch thread work at once. The update is the
    same A2C update over all games (group 0's games first in the batch)."""

    def _act(self, g: int, state, params, sparsity: List[float], generator: Optional[torch.Generator] = None):
        """Group ``g``'s forward step: sample its actions and send them to its emulators (they play while
        the caller goes on); returns (value, new state, log-prob of the actions, entropy) and appends the
        cell's pulse sparsity to ``sparsity``."""
        logits, value, state = self.agent(self.obs[g], state, params)
        logp_all = torch.log_softmax(logits, -1)
        with torch.no_grad():
            action = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)
        sp = getattr(self.agent.cell, "last_sparsity", None)
        if sp is not None:
            sparsity.append(sp)
        self.envs[g].send(action.numpy())
        return (value, state, logp_all.gather(1, action.unsqueeze(1)).squeeze(1),
                -(logp_all.exp() * logp_all).sum(-1))

    def update(self) -> Tuple[Dict[str, float], List[Tuple[int, float, int]]]:
        """Roll out T steps in N envs, then one optimiser step. Returns (loss terms, finished
        games as (step of the rollout 1..T, return, length))."""
        if self.cfg.group_threads:
            return self._update_threaded()
        agent, cfg = self.agent, self.cfg
        G, T = cfg.env_groups, cfg.rollout_len
        n = cfg.num_envs // G
        states = [tuple(s[g * n:(g + 1) * n] for s in detach_state(self.state)) for g in range(G)]
        params = agent.step_params()
        logps, values, ents, rewards, dones = ([[None] * G for _ in range(T)] for _ in range(5))
        sparsity, finished = [], []
        for t in range(T):
            for g in range(G):
                if t > 0:  # group g's emulators played step t-1 while the other group computed
                    states[g] = self._finish_step(g, t - 1, states[g], rewards, dones, finished)
                values[t][g], states[g], logps[t][g], ents[t][g] = self._act(g, states[g], params, sparsity)
        for g in range(G):
            states[g] = self._finish_step(g, T - 1, states[g], rewards, dones, finished)
        with torch.no_grad():
            last_value = torch.cat([agent(self.obs[g], states[g], params)[1] for g in range(G)])
        self.state = tuple(torch.cat(parts) for parts in zip(*states))
        cat = lambda rows: torch.stack([torch.cat(r) for r in rows])  # noqa: E731  [T][G] -> [T, N]
        values_t = cat(values)
        adv, ret = gae(cat(rewards), values_t, cat(dones), last_value, cfg.gamma, cfg.gae_lambda)
        loss, terms = a2c_loss(cat(logps), values_t, cat(ents), adv, ret, cfg.value_coef, cfg.entropy_coef)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        terms["sparsity"] = float(np.mean(sparsity)) if sparsity else float("nan")
        return self._step(terms), finished

    def _group_update(self, g: int, state, seed: int):
        """Thread of group ``g`` (group_threads): its rollout, its share of the loss, its backward pass.
        Actions are sampled from the group's own generator (seeded from the global one), so a run
        is reproducible whatever the threads' interleaving; the gradients accumulate into .grad."""
        agent, cfg, G, T = self.agent, self.cfg, self.cfg.env_groups, self.cfg.rollout_len
        gen = torch.Generator().manual_seed(seed)
        params = agent.step_params()  # each thread's own graph (no graph shared by two backward passes)
        logps, values, ents, rewards, dones = ([[None] for _ in range(T)] for _ in range(5))
        finished, sparsity = [], []
        for t in range(T):
            values[t][0], state, logps[t][0], ents[t][0] = self._act(g, state, params, sparsity, gen)
            state = self._finish_step(g, t, state, rewards, dones, finished, slot=0)
        with torch.no_grad():
            last_value = agent(self.obs[g], state, params)[1]
        cat = lambda rows: torch.stack([r[0] for r in rows])  # noqa: E731
        values_t = cat(values)
        adv, ret = gae(cat(rewards), values_t, cat(dones), last_value, cfg.gamma, cfg.gae_lambda)
        loss, terms = a2c_loss(cat(logps), values_t, cat(ents), adv, ret, cfg.value_coef, cfg.entropy_coef)
        (loss / G).backward()  # equal groups: the mean over all games is the mean of the groups' means
        terms["sparsity"] = float(np.mean(sparsity)) if sparsity else float("nan")
        return terms, finished, state

    def _update_threaded(self) -> Tuple[Dict[str, float], List[Tuple[int, float, int]]]:
        G, n = self.cfg.env_groups, self.cfg.num_envs // self.cfg.env_groups
        pool = self._threads(G, "a2c-group")
        seeds = torch.randint(0, 2**62, (G,)).tolist()
        states = [tuple(s[g * n:(g + 1) * n] for s in detach_state(self.state)) for g in range(G)]
        self.opt.zero_grad(set_to_none=True)
        futures = [pool.submit(self._group_update, g, states[g], seeds[g]) for g in range(G)]
        results = [f.result() for f in futures]
        self.state = tuple(torch.cat(parts) for parts in zip(*(r[2] for r in results)))
        terms = {k: float(np.mean([r[0][k] for r in results])) for k in results[0][0]}
        finished = sorted(f for r in results for f in r[1])
        return self._step(terms), finished


def runner_for(cfg: TrainConfig) -> type:
    """The runner class of ``cfg.algo``: :class:`A2CRunner` or :class:`~stoxbar.pong.ppo.PPORunner`."""
    return PPORunner if cfg.algo == "ppo" else A2CRunner


def train(cfg: TrainConfig, resume: Optional[str] = None, echo=print, resume_overrides: Sequence[str] = ()) -> Path:
    """Train (or resume training of) the Pong agent; returns the run directory.

    ``resume``: a run directory (or its checkpoint file) to continue; its saved config is used
    except ``total_steps``, ``threads``, ``env_threads``, ``env_groups`` and ``max_minutes`` taken from ``cfg``,
    and the fields named in ``resume_overrides`` (of RESUME_OVERRIDES: what the user gave on the command line).
    ``echo`` receives the progress lines (also appended to RUN_DIR/train.log).
    """
    counters = {"update": 0, "steps": 0, "episodes": 0, "checkpoints": 0, "rollbacks": 0}
    recent: deque = deque(maxlen=10)
    ckpt = None
    parent: Optional[Dict[str, Any]] = None
    command = list(sys.argv)
    if resume is not None:
        rpath = Path(resume)
        if rpath.is_dir():
            ckpt_path = rpath / "checkpoint.pt"
        elif rpath.is_file():
            ckpt_path = rpath
        else:
            raise ConfigError(f"--resume {resume}: no such run directory or checkpoint file")
        ckpt = load_checkpoint(ckpt_path, required=("format", "version", "arch", "device", "model", "optimizer",
                                                    "train_config", "counters", "rng"))
        try:
            saved = TrainConfig.from_dict(ckpt["train_config"])
        except (ConfigError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {ckpt_path}: invalid train_config ({type(exc).__name__}: {exc})") from None
        unknown = set(resume_overrides) - set(RESUME_OVERRIDES)
        if unknown:
            raise ConfigError(f"resume_overrides = {sorted(unknown)}: allowed: {list(RESUME_OVERRIDES)}")
        cfg = dataclasses.replace(saved, total_steps=cfg.total_steps, threads=cfg.threads,
                                  env_threads=cfg.env_threads, env_groups=cfg.env_groups,
                                  group_threads=cfg.group_threads, max_minutes=cfg.max_minutes,
                                  **{k: getattr(cfg, k) for k in resume_overrides})
        _check_ppo_options(cfg)  # with the run's own algo
        saved_counters = ckpt["counters"]
        if (not isinstance(saved_counters, dict) or set(saved_counters) - set(counters)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in saved_counters.values())):
            raise CheckpointError(f"checkpoint {ckpt_path}: counters = {saved_counters!r}: expected "
                                  f"{sorted(counters)} as integers >= 0")
        counters.update(saved_counters)
        returns = ckpt.get("recent_returns", [])
        if not isinstance(returns, list) or not all(isinstance(v, (int, float)) for v in returns):
            raise CheckpointError(f"checkpoint {ckpt_path}: recent_returns is not a list of numbers")
        recent.extend(returns)
        norms = ckpt.get("grad_norms", [])  # the spike guard's window (absent before it existed)
        if not isinstance(norms, list) or not all(isinstance(v, (int, float)) and np.isfinite(v) and v >= 0
                                                  for v in norms):
            raise CheckpointError(f"checkpoint {ckpt_path}: grad_norms is not a list of finite numbers >= 0")
        if ckpt_path.name == "checkpoint.pt":  # the run's latest state: continue in place
            run_dir = ckpt_path.parent
            lock = DirLock(run_dir, "training run", command).acquire()
            try:
                fsio.clean_temp(run_dir)  # e.g. .tmp-checkpoint.pt.* of a checkpoint write cut short
                _truncate_csv(run_dir / "progress.csv", "update", counters["update"])
                _truncate_csv(run_dir / "episodes.csv", "steps", counters["steps"])
            except BaseException:
                lock.release()
                raise
        else:  # a snapshot: branch into a new run, the parent stays as it is
            src = ckpt_path.parent
            run_dir = new_run_dir(src.parent, "train", cfg.seed)
            lock = DirLock(run_dir, "training run", command).acquire()
            parent = {"run": str(src.resolve()), "checkpoint": str(ckpt_path.resolve()),
                      "update": counters["update"], "steps": counters["steps"]}
            _truncate_csv(src / "progress.csv", "update", counters["update"], run_dir / "progress.csv")
            _truncate_csv(src / "episodes.csv", "steps", counters["steps"], run_dir / "episodes.csv")
    else:
        # check what can be checked before a run directory exists (a refused preset leaves nothing behind)
        _check_ppo_options(cfg)
        if cfg.init_from:  # fine-tuning: the checkpoint's architecture and device, checked before any run dir
            start, start_ckpt = start_agent(cfg)
            cfg = dataclasses.replace(cfg, arch=start.arch, init_from=str(Path(cfg.init_from).resolve()),
                                      init_sha256=fsio.file_sha256(cfg.init_from),
                                      init_root_seed=_traced_root_seed(start_ckpt, echo))
            check_mstpn_training(cfg, cfg.arch)  # the checkpoint's arch
            device = start.device_model
        else:
            device = device_from_preset(cfg.arch.device_preset) if cfg.arch.cell == "mstpn" else None
        run_dir = new_run_dir(cfg.runs_dir, "train", cfg.seed)
        lock = DirLock(run_dir, "training run", command).acquire()
    fresh = ckpt is None or parent is not None
    try:
        return _train_in(run_dir, cfg, ckpt, ckpt_path if ckpt is not None else None, counters, recent, parent, echo,
                         device if ckpt is None else None)
    except BaseException:
        if fresh and _only_lock(run_dir):  # failed before writing anything: no empty run directory stays
            lock.release()
            (run_dir / fsio.LOCK_NAME).unlink(missing_ok=True)
            run_dir.rmdir()
        raise
    finally:
        lock.release()


def _traced_root_seed(ckpt: Dict[str, Any], echo) -> int:
    """``root_seed`` of the checkpoint a fine-tune starts from, or -1 (said through ``echo``) where its lineage
    cannot be traced: the fine-tune trains all the same, only its frozen-init ablations are refused."""
    try:
        return root_seed(ckpt["train_config"]) if isinstance(ckpt.get("train_config"), dict) else -1
    except ConfigError as exc:
        echo(f"lineage not traced (init_root_seed = -1; the frozen-init ablations will refuse this agent): {exc}")
        return -1


def _check_ppo_options(cfg: TrainConfig) -> None:
    for name in ("state_grad_clip", "target_kl"):
        if getattr(cfg, name) and cfg.algo != "ppo":
            raise ConfigError(f"{name} = {getattr(cfg, name)!r}: a PPO option; allowed for algo {cfg.algo!r}: 0")


def _only_lock(run_dir: Path) -> bool:
    return run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {fsio.LOCK_NAME}


def _train_in(run_dir: Path, cfg: TrainConfig, ckpt: Optional[Dict[str, Any]], ckpt_path: Optional[Path],
              counters: Dict[str, int], recent: deque, parent: Optional[Dict[str, Any]], echo,
              device: Any = None) -> Path:
    """The training loop of :func:`train` in its (locked) run directory."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if ckpt is None and cfg.init_from:
        agent = start_agent(cfg, device=device)[0]
    elif ckpt is None:
        agent = PongAgent(cfg.arch, device=device)
    else:
        agent = build_agent(ckpt, ckpt_path)
        torch.set_rng_state(ckpt["rng"]["torch"])
    agent.train()
    opt = make_optimizer(agent, cfg)
    if ckpt is not None:
        load_optimizer_state(opt, ckpt["optimizer"], agent)
    config = cfg.to_dict()
    if parent is None and (run_dir / "config.json").exists():  # a resumed branch keeps its parent
        saved = fsio.read_json(run_dir / "config.json")
        parent = saved.get("parent") if isinstance(saved, dict) else None
    if parent is not None:
        config["parent"] = parent
    atomic_write_bytes(run_dir / "config.json", json.dumps(config, indent=2).encode())

    def log(msg: str) -> None:
        """Print through ``echo`` and keep a copy in the run directory."""
        echo(msg)
        with fsio.open_append(run_dir / "train.log", "training log") as fh:
            fh.write(msg + "\n")

    def checkpoint() -> None:
        counters["checkpoints"] += 1
        extra = dict(optimizer=opt.state_dict(), train_config=cfg.to_dict(), counters=dict(counters),
                     recent_returns=list(recent), rng={"torch": torch.get_rng_state()},
                     grad_norms=list(runner.spikes.norms))
        save_checkpoint(run_dir / "checkpoint.pt", agent, **extra)
        if counters["checkpoints"] % cfg.snapshot_every == 0:
            save_checkpoint(run_dir / f"checkpoint-u{counters['update']:07d}.pt", agent, **extra)
        if len(recent) == recent.maxlen:
            guard.checkpointed(float(np.mean(recent)), agent, opt)
        try:  # a plotting problem must never stop training
            _plot_curve(run_dir)
        except Exception as exc:  # noqa: BLE001
            log(f"warning: curve.png not written ({type(exc).__name__}: {exc})")

    guard = CollapseGuard(cfg.rollback_drop, cfg.rollback_lr_factor)
    init = initial_cell_params(cfg) if cfg.arch.cell == "mstpn" else {}
    runner = runner_for(cfg)(agent, opt, cfg, env_seed=cfg.seed * 100_003 + counters["update"])
    if ckpt is not None:
        runner.spikes.norms.extend(ckpt.get("grad_norms", []))  # checked by train()
    N = cfg.num_envs
    t_start = time.time()
    t_log, steps_log = time.time(), counters["steps"]
    acc: Dict[str, float] = {}
    n_acc = 0
    log(f"run dir: {run_dir}")
    if parent is not None and counters["update"] == parent["update"]:
        log(f"branched from {parent['checkpoint']} (update {parent['update']}); the parent run is left as it was")
    log(f"arch {cfg.arch.arch}/{cfg.arch.cell}: {cfg.arch.n_synapses} plastic synapses, "
        f"{sum(p.numel() for p in agent.parameters())} parameters; fused kernel "
        f"{'on' if _kernel_on() else 'off'}")
    try:
        with _Stop() as stop:
            while counters["steps"] < cfg.total_steps and not stop.requested:
                steps0 = counters["steps"]
                if cfg.anneal_lr:
                    set_annealed_lr(opt, 1.0 - steps0 / cfg.total_steps)
                terms, finished = runner.update()
                counters["update"] += 1
                counters["steps"] += N * cfg.rollout_len
                for t, ret_, length in finished:
                    counters["episodes"] += 1
                    recent.append(ret_)
                    _append_csv(run_dir / "episodes.csv", ["episode", "steps", "frames", "return", "length"],
                                {"episode": counters["episodes"], "steps": steps0 + t * N,
                                 "frames": (steps0 + t * N) * FRAMESKIP, "return": ret_, "length": length})
                for k, v in terms.items():
                    acc[k] = acc.get(k, 0.0) + v
                n_acc += 1
                if counters["update"] % cfg.log_every == 0:
                    now = time.time()
                    sps = (counters["steps"] - steps_log) / max(now - t_log, 1e-9)
                    row: Dict[str, Any] = {k: f"{v / n_acc:.6g}" for k, v in acc.items()}
                    row.update(update=counters["update"], steps=counters["steps"],
                               frames=counters["steps"] * FRAMESKIP, episodes=counters["episodes"],
                               mean_return_10=f"{np.mean(recent):.3f}" if recent else "nan",
                               steps_per_s=f"{sps:.1f}", wall_s=f"{now - t_start:.1f}",
                               lr=f"{opt.param_groups[0]['lr']:.4g}")
                    row.update({k: f"{v:.6g}" for k, v in param_drift(agent, init).items()})
                    if hasattr(agent.cell, "held_bias_energy_j"):  # the m-STPN's held bias per step, now
                        with torch.no_grad():
                            row["bias_energy_uj"] = f"{float(agent.cell.held_bias_energy_j()) * 1e6:.6g}"
                    row.update({k: f"{v:.6g}" for k, v in runner.spikes.stats().items()})
                    _append_csv(run_dir / "progress.csv", CSV_FIELDS, row)
                    log(f"upd {counters['update']:6d} steps {counters['steps']:9d} eps {counters['episodes']:5d} "
                        f"ret10 {row['mean_return_10']:>7s} loss {row['loss']} vloss {row['value_loss']} "
                        f"ent {row['entropy']} theta drift {row.get('theta_drift', 'n/a')} {sps:.0f} steps/s"
                        + (f"; {row['grad_skips']} optimiser steps skipped as gradient spikes (max norm "
                           f"{row['grad_norm_max']})" if float(row["grad_skips"]) else "")
                        + (f"; state gradients clipped: {row['state_clip_frac']}" if "state_clip_frac" in row else "")
                        + (f"; updates stopped by target_kl: {row['kl_stop']}" if "kl_stop" in row else ""))
                    acc, n_acc, t_log, steps_log = {}, 0, now, counters["steps"]
                    if len(recent) == recent.maxlen and guard.collapsed(float(np.mean(recent))):
                        lr = guard.rollback(agent, opt)
                        counters["rollbacks"] += 1
                        log(f"rollback {counters['rollbacks']}: 10-game mean {np.mean(recent):.2f} fell more than "
                            f"{cfg.rollback_drop:g} below its best {guard.best:.2f}; restored the best checkpoint's "
                            f"weights, lr now {lr:.3g}")
                        recent.clear()  # those games were the collapsed policy's
                if counters["update"] % cfg.checkpoint_every == 0:
                    checkpoint()
                if cfg.max_minutes and (time.time() - t_start) > 60 * cfg.max_minutes:
                    log(f"max_minutes {cfg.max_minutes} reached")
                    break
            if counters["update"] % cfg.checkpoint_every != 0 or stop.requested:
                checkpoint()
            signum = stop.signum
    finally:
        runner.close()
    log(f"stopped at update {counters['update']}, {counters['steps']} steps; checkpoint {run_dir / 'checkpoint.pt'}")
    if signum is not None:
        raise TrainingInterrupted(run_dir, signum, counters["update"])
    return run_dir


def measure_throughput(arch: ArchConfig, updates: int = 10, warmup: int = 2, num_envs: int = 16,
                       rollout_len: int = 20, threads: int = 1, env_threads: int = 1, seed: int = 0,
                       env_groups: int = 1, group_threads: bool = False, **more: Any) -> Dict[str, float]:
    """Agent steps per second of the real training loop (env + forward + BPTT + Adam); ``more``: other
    TrainConfig fields (e.g. ``algo="ppo"``, ``ppo_epochs``).

    Sets torch's thread count to ``threads`` (not restored). Returns steps_per_s, ms_per_update.
    """
    check_int("updates", updates, 1)
    check_int("warmup", warmup, 0)
    cfg = TrainConfig(arch=arch, num_envs=num_envs, rollout_len=rollout_len, threads=threads,
                      env_threads=env_threads, seed=seed, env_groups=env_groups, group_threads=group_threads, **more)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    agent = PongAgent(arch)
    runner = runner_for(cfg)(agent, make_optimizer(agent, cfg), cfg, seed)
    try:
        for _ in range(warmup):
            runner.update()
        t0 = time.perf_counter()
        for _ in range(updates):
            runner.update()
        dt = time.perf_counter() - t0
    finally:
        runner.close()
    return {"steps_per_s": updates * num_envs * rollout_len / dt, "ms_per_update": 1e3 * dt / updates}


def _kernel_on() -> bool:
    from stoxbar.stpn.cells import kernel_available

    return kernel_available()


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


def build_parser(parser_class: type = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``stoxbar train`` parser; every option has help text (``stoxbar train -h`` shows the defaults)."""
    d, a = TrainConfig(), ArchConfig()
    kw = {} if parser_class is not argparse.ArgumentParser else {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}
    p = parser_class(prog="stoxbar train", description="A2C or PPO training of the Pong (m-)STPN agent.", **kw)
    p.add_argument("--arch", default=a.arch, choices=["paper", "bottleneck"],
                   help="network: the paper's, or the CPU-friendly bottleneck variant")
    p.add_argument("--cell", default=a.cell, choices=["stpn", "mstpn"],
                   help="plastic cell: the float STPN or the device-constrained m-STPN")
    p.add_argument("--hidden", type=int, default=a.hidden, help="cell units")
    p.add_argument("--bottleneck", type=int, default=a.bottleneck, help="width of the bottleneck layer (arch bottleneck)")
    p.add_argument("--no-h-feedback", action="store_true",
                   help="m-STPN variant: STP-only (the plastic layer sees only the encoder; its synapses are the memory)")
    p.add_argument("--no-plasticity", action="store_true",
                   help="m-STPN variant: plain recurrent baseline (Gamma fixed at 0)")
    p.add_argument("--decay-addressing", default=None, choices=list(DECAY_ADDRESSINGS),
                   help="m-STPN: what the decay biases may depend on, one of the crossbar's bias schemes "
                        "(per_cell: one tau per synapse; row_col: V_ij = a_i - b_j; per_row; per_column; global). "
                        "With --init-from: fine-tune under this scheme, the checkpoint's biases fitted to it "
                        "(default: the checkpoint's; a fresh run: per_cell)")
    p.add_argument("--device-preset", default=a.device_preset,
                   help="device preset of the m-STPN: a registered name, or module:factory (imports that module: "
                        "it runs code, docs/reliability.md §7)")
    p.add_argument("--envs", type=int, default=d.num_envs, help="parallel Pong emulators")
    p.add_argument("--algo", default=d.algo, choices=list(ALGO_DEFAULTS),
                   help="a2c, or ppo (recurrent PPO, pong/ppo.py); the defaults of --rollout, --lr, --gae-lambda "
                        "and --grad-clip follow it (A2C: " + ", ".join(f"{k} {v}" for k, v in ALGO_DEFAULTS["a2c"].items())
                        + "; PPO, CleanRL's: " + ", ".join(f"{k} {v}" for k, v in ALGO_DEFAULTS["ppo"].items()) + ")")
    p.add_argument("--ppo-epochs", type=int, default=d.ppo_epochs, help="PPO: passes over each rollout")
    p.add_argument("--ppo-minibatches", type=int, default=d.ppo_minibatches,
                   help="PPO: minibatches (of whole env sequences) per pass")
    p.add_argument("--clip-coef", type=float, default=d.clip_coef, help="PPO: ratio and value clip")
    p.add_argument("--rollout", type=int, default=None, help="TBPTT window (agent steps; default by --algo)")
    p.add_argument("--steps", type=int, default=d.total_steps, help="total agent steps (1 step = 4 frames)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default by --algo)")
    p.add_argument("--gamma", type=float, default=d.gamma, help="discount factor")
    p.add_argument("--gae-lambda", type=float, default=None, help="GAE lambda (1: n-step returns; default by --algo)")
    p.add_argument("--theta-lr-scale", type=float, default=d.theta_lr_scale,
                   help="the m-STPN's time constants (theta) at lr x this (docs/stpn.md §9.1)")
    p.add_argument("--entropy-coef", type=float, default=d.entropy_coef, help="entropy bonus coefficient")
    p.add_argument("--value-coef", type=float, default=d.value_coef, help="value loss coefficient")
    p.add_argument("--grad-clip", type=float, default=None, help="global gradient-norm clip (default by --algo)")
    p.add_argument("--grad-spike", type=float, default=None, metavar="FACTOR",
                   help="skip an optimiser step whose pre-clip gradient norm exceeds FACTOR x the median of the last "
                        "100 applied steps: exploding BPTT gradients through (h, F) (docs/stpn.md §11.1; e.g. 20; "
                        "0: off, the default; with --resume it replaces the run's own setting)")
    p.add_argument("--state-grad-clip", type=float, default=None, metavar="NORM",
                   help="PPO: clip each env's gradient through the carried state (h, F) to NORM at every BPTT step "
                        "(docs/stpn.md §11.2; e.g. 0.5; 0: off, the default; with --resume it replaces the run's own "
                        "setting)")
    p.add_argument("--target-kl", type=float, default=None, metavar="KL",
                   help="PPO: stop an update at the first minibatch whose approx_kl exceeds KL, before its step "
                        "(Stable-Baselines3's target_kl; docs/stpn.md §11.3; e.g. 0.02; 0: off, the default; with "
                        "--resume it replaces the run's own setting)")
    p.add_argument("--recurrent-norm-max", type=float, default=d.recurrent_norm_max, metavar="S",
                   help="m-STPN: project the long-term h -> h map (gain x W_hh) to a largest singular value <= S after "
                        "every optimiser step and at the start (docs/stpn.md §11.4; 1: contractive; 0: off, the default)")
    p.add_argument("--hebbian-grad", default=d.hebbian_grad, choices=HEBBIAN_GRADS,
                   help="m-STPN: the gradient of the Hebbian update Gamma (h z^T) in backward: full, or stop_activity "
                        "(none to h and z, Gamma's kept: cuts the loop F -> h -> F' through which the BPTT gradient "
                        "explodes; docs/stpn.md §11.5)")
    p.add_argument("--bias-energy-coef", type=float, default=d.bias_energy_coef, metavar="C",
                   help="m-STPN: add C x the energy (uJ) its held decay biases draw per agent step on the chip to the "
                        "loss (docs/stpn.md §12; 0: off, the default)")
    p.add_argument("--anneal-lr", action="store_true", default=None,
                   help="the learning rate falls linearly to 0 at --steps (CleanRL's anneal_lr; every parameter "
                        "group from its own base; given on --resume, the run's lr there is the base)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (torch and emulators)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    p.add_argument("--env-threads", type=int, default=d.env_threads, help="emulator threads")
    p.add_argument("--env-groups", type=int, default=d.env_groups, choices=[1, 2],
                   help="emulator groups stepped asynchronously (2: one group plays while the other's forward "
                        "pass runs)")
    p.add_argument("--group-threads", action="store_true",
                   help="with --env-groups 2: each group rolls out and back-propagates in its own thread (one "
                        "intra-op thread each): the fastest setting on 2 cores for a run alone on the machine; "
                        "beside another training process its OpenMP threads spin on the shared cores, ~1.5x slower "
                        "than one thread (BENCHMARKS.md)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="updates between checkpoints")
    p.add_argument("--snapshot-every", type=int, default=d.snapshot_every,
                   help="every k-th checkpoint is also kept as checkpoint-uNNNNNNN.pt")
    p.add_argument("--log-every", type=int, default=d.log_every, help="updates between progress.csv rows")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes, help="stop (with a checkpoint) after this "
                                                                               "wall time; 0 = no limit")
    p.add_argument("--runs-dir", default=d.runs_dir, help="directory of the new run directories")
    p.add_argument("--sticky", type=float, default=d.sticky,
                   help="training emulators' sticky-action (repeat) probability in [0, 1); evaluation uses 0.25")
    p.add_argument("--rollback-drop", type=float, default=d.rollback_drop, metavar="POINTS",
                   help="stabilised A2C: when the 10-game mean falls this many points below its best at a "
                        "checkpoint, restore that checkpoint's weights and scale the lr by --rollback-lr-factor (0: off)")
    p.add_argument("--rollback-lr-factor", type=float, default=d.rollback_lr_factor,
                   help="learning-rate factor applied at each rollback, in (0, 1]")
    p.add_argument("--init-from", default=d.init_from, metavar="CHECKPOINT",
                   help="fine-tune: start a new run from this checkpoint's weights, architecture and device "
                        "(fresh optimiser; --arch/--cell/--hidden/--device-preset are then ignored)")
    p.add_argument("--benchmark", type=int, default=0, metavar="UPDATES",
                   help="only measure agent steps/s of the training loop over UPDATES updates, then exit (0: train)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR from its checkpoint.pt (its saved hyper-parameters are kept; "
                        "--steps/--threads/--env-threads/--max-minutes and a given --grad-spike/--state-grad-clip/"
                        "--target-kl apply); a snapshot "
                        "RUN_DIR/checkpoint-uNNNNNNN.pt branches into a new run directory instead (default: a new run)")
    return p


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``stoxbar train [options]`` entry point; returns a process exit code (2: a user error, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return run_train(args)
    except TrainingInterrupted as exc:
        print(f"stoxbar train: {exc}", file=sys.stderr)
        return 130
    except (ConfigError, CheckpointError, OSError) as exc:
        print(f"stoxbar train: error: {exc}", file=sys.stderr)
        return 2


def run_train(args: argparse.Namespace) -> int:
    """Run parsed ``stoxbar train`` arguments; user errors are raised (ConfigError, CheckpointError, OSError)."""
    arch = ArchConfig(arch=args.arch, cell=args.cell, hidden=args.hidden, bottleneck=args.bottleneck,
                      device_preset=args.device_preset, h_feedback=not args.no_h_feedback,
                      plastic=not args.no_plasticity,
                      decay_addressing=(args.decay_addressing if args.decay_addressing and not args.init_from
                                        else "per_cell"))
    algo = ALGO_DEFAULTS[args.algo]
    pick = lambda given, key: algo[key] if given is None else given  # noqa: E731
    cfg = TrainConfig(arch=arch, num_envs=args.envs, rollout_len=pick(args.rollout, "rollout_len"),
                      total_steps=args.steps, lr=pick(args.lr, "lr"), gamma=args.gamma,
                      gae_lambda=pick(args.gae_lambda, "gae_lambda"),
                      entropy_coef=args.entropy_coef, value_coef=args.value_coef,
                      max_grad_norm=pick(args.grad_clip, "max_grad_norm"), seed=args.seed, threads=args.threads,
                      algo=args.algo, ppo_epochs=args.ppo_epochs, ppo_minibatches=args.ppo_minibatches,
                      clip_coef=args.clip_coef, theta_lr_scale=args.theta_lr_scale,
                      env_threads=args.env_threads, env_groups=args.env_groups, group_threads=args.group_threads,
                      checkpoint_every=args.checkpoint_every,
                      snapshot_every=args.snapshot_every, log_every=args.log_every,
                      max_minutes=args.max_minutes, runs_dir=args.runs_dir, sticky=args.sticky,
                      init_from=args.init_from or "", rollback_drop=args.rollback_drop,
                      init_decay_addressing=(args.decay_addressing or "") if args.init_from else "",
                      rollback_lr_factor=args.rollback_lr_factor,
                      grad_spike=0.0 if args.grad_spike is None else args.grad_spike,
                      state_grad_clip=0.0 if args.state_grad_clip is None else args.state_grad_clip,
                      target_kl=0.0 if args.target_kl is None else args.target_kl,
                      recurrent_norm_max=args.recurrent_norm_max, hebbian_grad=args.hebbian_grad,
                      anneal_lr=bool(args.anneal_lr), bias_energy_coef=args.bias_energy_coef)
    if args.benchmark:
        r = measure_throughput(arch, updates=args.benchmark, num_envs=cfg.num_envs, rollout_len=cfg.rollout_len,
                               threads=cfg.threads, env_threads=cfg.env_threads, seed=cfg.seed,
                               env_groups=cfg.env_groups, group_threads=cfg.group_threads, algo=cfg.algo,
                               ppo_epochs=cfg.ppo_epochs, ppo_minibatches=cfg.ppo_minibatches)
        print(f"{arch.arch}/{arch.cell} ({cfg.algo}): {r['steps_per_s']:.0f} agent steps/s "
              f"({r['ms_per_update']:.1f} ms per update of {cfg.num_envs}x{cfg.rollout_len} steps, "
              f"{cfg.threads} torch thread(s), {cfg.env_threads} emulator thread(s), "
              f"{cfg.env_groups} emulator group(s){', one thread each' if cfg.group_threads else ''})")
        return 0
    train(cfg, resume=args.resume, echo=lambda s: print(s, flush=True),
          resume_overrides=tuple(k for k in RESUME_OVERRIDES if getattr(args, k) is not None))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
