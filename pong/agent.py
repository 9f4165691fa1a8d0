"""The Pong agent: conv encoder -> STPN / m-STPN cell -> actor and critic heads.

arch "paper" (docs/paper.md 2, docs/stpn.md 2): 84x84x1 -> Conv(1->16, 8x8/4) ReLU -> Conv(16->32, 4x4/2)
ReLU -> 2592 -> cell(64) over 2592 + 64 = 2656 presynaptic inputs (169,984 synapses) ->
actor Linear(64, 6), critic Linear(64, 1).
arch "bottleneck" (CPU-friendly variant, docs/stpn.md 5.3-5.4; not the paper's network): the same
convs -> Linear(2592, 256) ReLU -> cell(64) over 256 + 64 = 320 presynaptic inputs.

Initialisation (assumption, the common Atari A2C/PPO choice, e.g. CleanRL): orthogonal conv and
bottleneck weights with gain sqrt(2), actor gain 0.01, critic gain 1, zero biases; the cell keeps
its own init (cells.py).

May import: torch, stoxbar.core.validation, stoxbar.devices, stoxbar.stpn, stoxbar.pong.env.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from stoxbar.stpn.cells import DECAY_ADDRESSINGS, MSTPNCell, STPNCell, State
from stoxbar.pong.env import N_ACTIONS, OBS_SHAPE, STEP_PERIOD_S, check_obs
from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

CONV_FEATURES = 32 * 9 * 9  # 2592 = output of the two convs on 84x84


class _ClipStateGrad(torch.autograd.Function):
    """Identity forward; backward scales each sample's gradient (row of dim 0) to a norm of at most ``clip.norm``
    and counts the rows it scaled in ``clip``."""

    @staticmethod
    def forward(ctx, x: Tensor, clip: "StateGradClip") -> Tensor:  # noqa: D102
        ctx.clip = clip
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        clip = ctx.clip
        norm = g.reshape(g.shape[0], -1).norm(dim=1)
        over = norm > clip.norm
        clip.clipped += int(over.sum())
        clip.total += norm.numel()
        scale = torch.where(over, clip.norm / norm.clamp_min(1e-30), torch.ones_like(norm))
        return g * scale.reshape((-1,) + (1,) * (g.dim() - 1)), None


class StateGradClip:
    """Clips the gradient each sample's carried state tensor (h, F) passes back to the step before to ``norm``
    (the forward is unchanged): bounds the growth of the BPTT gradient through an unstable stretch of the
    recurrence (docs/stpn.md §11.2). ``clipped`` / ``total``: the (sample, step, tensor) gradients it scaled,
    of those it saw, since it was made."""

    def __init__(self, norm: float):
        check_range("state_grad_clip", norm, 0.0, None, lo_open=True)
        self.norm = float(norm)
        self.clipped = self.total = 0

    def __call__(self, state: State) -> State:
        return tuple(_ClipStateGrad.apply(s, self) if s.requires_grad else s for s in state)


HEBBIAN_GRADS = ("full", "stop_activity")  # TrainConfig.hebbian_grad (MSTPNCell.hebbian_activity_grad)


def check_mstpn_training(cfg: Any, arch: "ArchConfig") -> None:
    """The m-STPN's training settings of ``cfg`` (a TrainConfig) against the agent's ``arch``: a bound on the
    h -> h map (``recurrent_norm_max``, MSTPNCell.limit_recurrent_norm) needs an m-STPN with its h feedback; a
    stopped Hebbian activity gradient (``hebbian_grad``, MSTPNCell.hebbian_activity_grad) an m-STPN; a price on
    the held decay bias (``bias_energy_coef``, MSTPNCell.held_bias_energy_j) a plastic m-STPN."""
    if cfg.recurrent_norm_max and (arch.cell != "mstpn" or not arch.h_feedback):
        raise ConfigError(f"recurrent_norm_max = {cfg.recurrent_norm_max!r}: bounds the m-STPN's h -> h map; allowed "
                          f"for cell {arch.cell!r} (h_feedback {arch.h_feedback}): 0")
    if cfg.hebbian_grad != "full" and arch.cell != "mstpn":  # its value is TrainConfig's own check
        raise ConfigError(f"hebbian_grad = {cfg.hebbian_grad!r}: a setting of the m-STPN's Hebbian update; allowed "
                          f"for cell {arch.cell!r}: 'full'")
    if cfg.bias_energy_coef and (arch.cell != "mstpn" or not arch.plastic):
        raise ConfigError(f"bias_energy_coef = {cfg.bias_energy_coef!r}: prices the m-STPN's held decay biases; "
                          f"allowed for cell {arch.cell!r} (plastic {arch.plastic}): 0")


@dataclass(frozen=True)
class ArchConfig:
    """Network architecture (saved in checkpoints; a checkpoint loads only into the same one).

    arch: "paper" | "bottleneck"; cell: "stpn" (original) | "mstpn" (device-constrained);
    hidden: cell units; bottleneck: width of the FC layer of arch "bottleneck" (ignored by
    "paper"); device_preset: STO device preset of the m-STPN (devices.presets); dt_s: agent
    step period (s), the decay interval of the m-STPN. The m-STPN variants of the training
    comparison (docs/stpn.md §9): h_feedback False = STP-only (the plastic layer sees only the
    encoder, so the synapses' short-term state is the only memory); plastic False = a plain
    recurrent baseline (Gamma fixed at 0: F stays 0, the time constants have nothing to act on).
    decay_addressing: what the m-STPN's decay biases may depend on, one of the crossbar's bias
    schemes (crossbar/bias.py): "per_cell" (one tau per synapse), "row_col" (V_ij = a_i - b_j),
    "per_row", "per_column", "global" (docs/stpn.md §10); the network learns only biases the
    scheme can hold.
    """

    arch: str = "paper"
    cell: str = "mstpn"
    hidden: int = 64  # docs/paper.md 2: 64 units
    bottleneck: int = 256  # docs/stpn.md 5.4 suggestion
    n_actions: int = N_ACTIONS
    device_preset: str = "sto_2024"
    dt_s: float = STEP_PERIOD_S
    h_feedback: bool = True
    plastic: bool = True
    decay_addressing: str = "per_cell"

    def __post_init__(self):
        check_choice("arch", self.arch, ("paper", "bottleneck"))
        check_choice("cell", self.cell, ("stpn", "mstpn"))
        check_int("hidden", self.hidden, 1, 1024)
        check_int("bottleneck", self.bottleneck, 1, 8192)
        check_int("n_actions", self.n_actions, 2, 18)
        if not isinstance(self.device_preset, str) or not self.device_preset:
            raise ConfigError(f"device_preset = {self.device_preset!r}: must be a preset name")
        check_range("dt_s", self.dt_s, 0.0, 10.0, lo_open=True, unit="s")
        check_choice("decay_addressing", self.decay_addressing, DECAY_ADDRESSINGS)
        if self.decay_addressing != "per_cell" and self.cell != "mstpn":
            raise ConfigError(f"decay_addressing = {self.decay_addressing!r}: only the m-STPN cell has decay biases "
                              f"(cell = {self.cell!r})")
        for name in ("h_feedback", "plastic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} = {getattr(self, name)!r}: must be true or false")
            if not getattr(self, name) and self.cell != "mstpn":
                raise ConfigError(f"{name} = False: only the m-STPN cell has this variant (cell = {self.cell!r})")

    @property
    def n_in(self) -> int:
        """External inputs of the cell (2592 for "paper", ``bottleneck`` otherwise)."""
        return CONV_FEATURES if self.arch == "paper" else self.bottleneck

    @property
    def n_synapses(self) -> int:
        """Synapses of the plastic layer, hidden x (n_in + hidden)."""
        return self.hidden * (self.n_in + self.hidden)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ArchConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"unknown ArchConfig fields {sorted(unknown)}; known: {sorted(fields)}")
        return cls(**d)


def device_from_preset(name: str):
    """The STO device of a named preset (stoxbar.devices.presets)."""
    from stoxbar.devices import presets

    return presets.get_preset(name)


def _ortho(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def build_encoder(arch: ArchConfig) -> nn.Sequential:
    """The encoder of ``arch`` (module docstring): frames [B, 1, 84, 84] -> the cell's input [B, n_in]."""
    layers = [_ortho(nn.Conv2d(1, 16, 8, 4), math.sqrt(2)), nn.ReLU(),
              _ortho(nn.Conv2d(16, 32, 4, 2), math.sqrt(2)), nn.ReLU(), nn.Flatten()]
    if arch.arch == "bottleneck":
        layers += [_ortho(nn.Linear(CONV_FEATURES, arch.bottleneck), math.sqrt(2)), nn.ReLU()]
    return nn.Sequential(*layers)


class PongAgent(nn.Module):
    """Actor-critic Pong agent (module docstring). ``device`` overrides ``arch.device_preset``."""

    def __init__(self, arch: ArchConfig, device: Any = None):
        super().__init__()
        if not isinstance(arch, ArchConfig):
            raise ConfigError(f"arch must be an ArchConfig, got {type(arch).__name__}")
        self.arch = arch
        self.encoder = build_encoder(arch)
        if arch.cell == "stpn":
            self.device_model = None
            self.cell: nn.Module = STPNCell(arch.n_in, arch.hidden)
        else:
            self.device_model = device if device is not None else device_from_preset(arch.device_preset)
            self.cell = MSTPNCell(arch.n_in, arch.hidden, self.device_model, arch.dt_s,
                                  decay_addressing=arch.decay_addressing)
            self.cell.h_feedback = arch.h_feedback
            if not arch.plastic:  # Gamma fixed at 0, never trained
                with torch.no_grad():
                    self.cell.gam.zero_()
                self.cell.gam.requires_grad_(False)
        self.actor = _ortho(nn.Linear(arch.hidden, arch.n_actions), 0.01)
        self.critic = _ortho(nn.Linear(arch.hidden, 1), 1.0)

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> State:
        """Zero (h, F) for ``batch`` environments."""
        return self.cell.initial_state(batch)

    def reset_state(self, state: State, done: Any) -> State:
        """Zero (h, F) of the environments whose game ended (``done`` [B] bool)."""
        return self.cell.reset_state(state, torch.as_tensor(np.asarray(done), dtype=torch.bool, device=state[0].device))

    def keep_slots(self, state: State, keep: Tensor) -> State:
        """The state of the environments where ``keep [B]`` (bool) is true, the others dropped from the
        batch (the analog cell drops their chip slots too)."""
        keep = keep.to(device=state[0].device, dtype=torch.bool)
        own = getattr(self.cell, "keep_slots", None)
        return own(state, keep) if own is not None else tuple(t[keep] for t in state)

    def step_params(self):
        """Per-rollout precomputation of the cell's (Lambda, Gamma); pass to ``forward``."""
        return self.cell.step_params()

    def param_groups(self, lr: float, eps: Optional[float] = None, decay_lr_scale: float = 1.0) -> list:
        """Optimiser parameter groups at base ``lr`` and Adam ``eps`` (the m-STPN's W gets a scaled lr,
        its theta a smaller eps and ``decay_lr_scale`` x lr, cells.py); the first group holds every
        parameter outside the cell."""
        cell_groups = self.cell.param_groups(lr, eps, decay_lr_scale)
        cell_ids = {id(p) for p in self.cell.parameters()}
        rest = [p for p in self.parameters() if id(p) not in cell_ids]
        cell_groups[0]["params"] = rest + list(cell_groups[0]["params"])
        return cell_groups

    def apply_constraints(self) -> None:
        """Project parameters onto what the hardware allows (call after each optimiser step)."""
        self.cell.apply_constraints()

    # -- forward ---------------------------------------------------------------------------------
    @staticmethod
    def obs_to_tensor(obs: Any) -> Tensor:
        """uint8 frames [B, 1, 84, 84] (or [B, 84, 84]) -> float in [0, 1]."""
        if isinstance(obs, Tensor):
            if obs.dim() == 3:
                obs = obs.unsqueeze(1)
            if obs.dim() != 4 or tuple(obs.shape[1:]) != OBS_SHAPE:
                raise ConfigError(f"observation tensor has shape {tuple(obs.shape)}; expected [B, 1, 84, 84]")
            t = obs
        else:
            t = torch.from_numpy(np.ascontiguousarray(check_obs(obs)))
        return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()

    def encode(self, obs: Any) -> Tensor:
        """Frames -> the cell's external input x [B, n_in]."""
        return self.encoder(self.obs_to_tensor(obs))

    def forward(self, obs: Any, state: State, params=None) -> Tuple[Tensor, Tensor, State]:
        """One agent step: returns (action logits [B, A], value [B], new state)."""
        h, state = self.cell(self.encode(obs), state, params)
        return self.actor(h), self.critic(h).squeeze(-1), state

    def unroll(self, obs: Tensor, state: State, dones: Tensor, params=None,
               state_grad_clip: Optional[Callable[[State], State]] = None) -> Tuple[Tensor, Tensor, State]:
        """Replay a stored sequence: frames ``obs`` [T, B, 1, 84, 84], ``dones`` [T, B] (the game
        ended after step t: that environment's state is zeroed after it). The same numbers as T calls
        of :meth:`forward`, but the encoder and the heads, which carry no state, run once over all
        T x B frames; only the cell steps. ``state_grad_clip``: applied to the state each step carries
        to the next (a :class:`StateGradClip`, or a probe such as gradients.StateGradProbe). Returns
        (logits [T, B, A], values [T, B], final state)."""
        if obs.dim() != 5:
            raise ConfigError(f"observation sequence has shape {tuple(obs.shape)}; expected [T, B, 1, 84, 84]")
        T, B = obs.shape[:2]
        x = self.encode(obs.reshape((T * B,) + tuple(obs.shape[2:]))).reshape(T, B, -1)
        params = self.step_params() if params is None else params
        hs = []
        for t, xt in enumerate(x.unbind(0)):  # one backward for all steps (x[t] would add T zero-padded grads)
            h, state = self.cell(xt, state, params)
            hs.append(h)
            state = self.reset_state(state, dones[t])
            if state_grad_clip is not None:
                state = state_grad_clip(state)
        h = torch.stack(hs)
        return self.actor(h), self.critic(h).squeeze(-1), state

    @torch.no_grad()
    def act(self, obs: Any, state: State, greedy: bool = True, generator: Optional[torch.Generator] = None
            ) -> Tuple[np.ndarray, State]:
        """Choose actions (argmax if ``greedy`` else sampled); returns (actions [B] int64, state)."""
        logits, _, state = self(obs, state)
        if greedy:
            a = logits.argmax(-1)
        else:
            a = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        return a.cpu().numpy(), state
