"""Ablations of a trained Pong m-STPN: switch one part of the plasticity off and see what the score does.

Applied to the agent's cell before play (and before the chip is programmed, so the chip holds the
ablated parameters):

* ``none`` - the agent as trained;
* ``gamma0`` - Gamma = 0: no Hebbian update, no short-term pulses (F stays 0);
* ``tau_frozen_init`` - every time constant (theta) reset to its initialisation: the agent's
  architecture rebuilt from the seed of the run that trained it from scratch (``a2c.root_seed``: a fine-tune
  records it in its ``train_config`` when it starts, ``init_root_seed``; an older fine-tune's ``init_from``
  chain is followed to that run), so its reset undoes all of its training, not only the last fine-tune's; a
  checkpoint without a train_config, or a chain with a missing file or a loop, cannot be ablated this way:
  ConfigError naming the file;
* ``gamma_frozen_init`` - Gamma (the Hebbian update's per-synapse gain) reset to its
  initialisation, the same way: did training give Gamma values the agent needs, or does any draw of
  its initial distribution do as well?
* ``tau_shuffled`` - the time constants permuted across all synapses (seed ``SHUFFLE_SEED``);
* ``tau_min`` / ``tau_max`` - every time constant at the device's shortest / longest;
* ``no_h_feedback`` - the STP layer sees only the encoder: the h part of its input z is zeroed
  (the actor and critic still read h).

The float STPN (``--cell stpn``, played in float only) has a free per-synapse decay factor Lambda
in place of a device time constant: ``gamma0`` / ``gamma_frozen_init`` act on its Gamma and
``tau_frozen_init`` / ``tau_shuffled`` on its Lambda; ``tau_min`` sets Lambda = 0 (F forgets each
step: the shortest memory) and ``tau_max`` Lambda = 1 (F never decays); ``no_h_feedback`` is an
m-STPN option and is refused.
An agent without plasticity (``plastic`` false) refuses every ablation but ``no_h_feedback``, and an
agent without h feedback refuses that one: their rows would replay the intact agent.

May import: torch, stoxbar.core.validation, stoxbar.pong (a2c, agent).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import torch

from stoxbar.pong.a2c import TrainConfig, initial_cell_params, root_seed
from stoxbar.core.validation import ConfigError

ABLATIONS = ("none", "gamma0", "gamma_frozen_init", "tau_frozen_init", "tau_shuffled", "tau_min", "tau_max",
             "no_h_feedback")
SHUFFLE_SEED = 0  # fixed permutation of tau_shuffled (any seed; fixed so the ablation is reproducible)
THETA_SATURATED = 40.0  # |theta| at which sigmoid(theta) is 0 or 1 in float32: tau at its end of the range


def check_ablation(name: Any, option: str = "ablate") -> str:
    """``name`` if it is a known ablation, else ConfigError listing the allowed names."""
    if name not in ABLATIONS:
        raise ConfigError(f"{option} = {name!r}: unknown ablation; allowed: {', '.join(ABLATIONS)}")
    return name


@torch.no_grad()
def apply_ablation(agent: Any, name: str, ckpt: Optional[Dict[str, Any]] = None) -> None:
    """Ablate ``agent``'s m-STPN cell in place (module docstring); ``ckpt`` the loaded checkpoint
    (needed by ``tau_frozen_init`` and ``gamma_frozen_init`` for the training seed)."""
    check_ablation(name)
    if name == "none":
        return
    cell = agent.cell
    mstpn = hasattr(cell, "theta")
    stpn = not mstpn and hasattr(cell, "lam")  # the float STPN: a free Lambda per synapse
    if not (mstpn or stpn) or (stpn and name == "no_h_feedback"):
        raise ConfigError(f"ablate = {name!r}: needs an m-STPN agent (cell {type(cell).__name__})")
    if name != "no_h_feedback" and not getattr(getattr(agent, "arch", None), "plastic", True):
        raise ConfigError(f"ablate = {name!r}: this agent has no plasticity to ablate (arch plastic = false: Gamma "
                          "fixed at 0, so F stays 0 and the time constants act on nothing); allowed: none, "
                          "no_h_feedback")
    if stpn:
        _ablate_stpn(cell, name, ckpt)
    elif name == "gamma0":
        cell.gam.zero_()
    elif name == "gamma_frozen_init":
        cell.gam.copy_(_initial(ckpt, ("gam",), name)["gam"])
    elif name == "tau_frozen_init":
        init = _initial(ckpt, cell.decay_parameters(), name)
        for n in cell.decay_parameters():
            getattr(cell, n).copy_(init[n])
    elif name == "tau_shuffled":
        gen = torch.Generator().manual_seed(SHUFFLE_SEED)
        for theta in (getattr(cell, n) for n in cell.decay_parameters()):
            flat = theta.detach().flatten()
            theta.copy_(flat[torch.randperm(flat.numel(), generator=gen)].view_as(theta))
    elif name in ("tau_min", "tau_max"):  # every decay parameter saturated: tau (or the bias) at its end
        sat = THETA_SATURATED if name == "tau_max" else -THETA_SATURATED
        dev = cell.device  # row_col learns the bias itself: its top end is tau_max only if tau rises with V
        if cell.decay_addressing == "row_col" and float(dev.tau_s(dev.v_bias_max_v)) < float(dev.tau_s(dev.v_bias_min_v)):
            sat = -sat
        for n in cell.decay_parameters():
            getattr(cell, n).fill_(sat)
    elif name == "no_h_feedback":
        if not cell.h_feedback:
            raise ConfigError("ablate = 'no_h_feedback': this agent has no h feedback to cut (arch h_feedback = "
                              "false, e.g. an STP-only agent); its games would replay the intact agent's")
        cell.h_feedback = False


def _initial(ckpt: Optional[Dict[str, Any]], names: Any, ablation: str) -> Dict[str, Any]:
    """The cell parameters ``names`` at the agent's initialisation: its architecture rebuilt from the seed of
    the run that trained it from scratch (``root_seed``: recorded by a fine-tune, or its ``init_from`` chain
    followed to that run)."""
    if not ckpt or "train_config" not in ckpt:
        raise ConfigError(f"ablate = {ablation!r}: the checkpoint has no train_config, so the "
                          "initialisation (its seed) cannot be rebuilt")
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    try:
        seed = root_seed(ckpt["train_config"])
    except ConfigError as exc:
        raise ConfigError(f"ablate = {ablation!r}: {exc}") from None
    if seed < 0:
        raise ConfigError(f"ablate = {ablation!r}: the fine-tune that trained this agent could not trace its "
                          f"lineage when it started (init_root_seed = -1, init_from = {cfg.init_from!r})")
    return initial_cell_params(dataclasses.replace(cfg, init_from="", init_sha256="", init_root_seed=-1, seed=seed),
                               names)


def _ablate_stpn(cell: Any, name: str, ckpt: Optional[Dict[str, Any]]) -> None:
    """The ablations of the float STPN's cell (module docstring): Gamma, or its decay factor Lambda."""
    if name == "gamma0":
        cell.gam.zero_()
    elif name == "gamma_frozen_init":
        cell.gam.copy_(_initial(ckpt, ("gam",), name)["gam"])
    elif name == "tau_frozen_init":
        cell.lam.copy_(_initial(ckpt, ("lam",), name)["lam"])
    elif name == "tau_shuffled":
        flat = cell.lam.detach().flatten()
        perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
        cell.lam.copy_(flat[perm].view_as(cell.lam))
    elif name in ("tau_min", "tau_max"):
        cell.lam.fill_(1.0 if name == "tau_max" else 0.0)
