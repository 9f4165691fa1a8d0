"""Atari Pong for the agent: ale-py's C++ vector env (gymnasium API), single 84x84 grey frame.

Choices (docs/stpn.md 2 and 5; docs/training-notes.md):
* ``ale_py.vector_env.AtariVectorEnv`` (needs opencv-python-headless), 84x84 greyscale,
  frameskip 4 with max-pooling of the last two frames, **no frame stack** (stack_num = 1, as the
  STPN paper: motion must be carried by the recurrent state), noop_max 30 and fire reset (the
  envpool/DeepMind defaults; they vary the starts), reward clipping (Pong rewards are +-1 anyway).
* Sticky actions (``repeat_action_probability``: each emulator frame repeats the previous action
  with this probability instead of the chosen one): **training** uses 0
  (``REPEAT_ACTION_PROBABILITY``; the STPN paper's ``PongNoFrameskip-v4`` has none; noop starts
  give the variety); **evaluation** (``stoxbar play``, studies) uses 0.25 by default
  (``EVAL_STICKY``, the protocol of Machado et al. 2018 and ALE v5's default, docs/stpn.md §8),
  because without them a greedy agent from ~5 start states plays ~5 distinct games. The period
  of one agent step is frameskip/60 s (``STEP_PERIOD_S``), the dt of the m-STPN decay.
* Autoreset "SameStep": when an episode ends the returned observation is already the first one
  of the next episode, so the agent resets its (h, F) for that env before the next step.
Observations stay uint8 [N, 1, 84, 84]; the agent converts to float in [0, 1].

May import: gymnasium, ale_py, numpy, stoxbar.core.validation.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from stoxbar.core.validation import ConfigError, check_int, check_range

FRAMESKIP = 4  # emulator frames per agent step (ALE/Pong-v5 and AtariVectorEnv default)
FRAME_RATE_HZ = 60.0  # Atari 2600 NTSC frame rate
STEP_PERIOD_S = FRAMESKIP / FRAME_RATE_HZ  # one agent step = 4 frames = 66.7 ms
OBS_SHAPE = (1, 84, 84)  # channels, height, width
N_ACTIONS = 6  # Pong minimal action set
REPEAT_ACTION_PROBABILITY = 0.0  # training: no sticky actions, as PongNoFrameskip-v4 (docs/stpn.md 2)
EVAL_STICKY = 0.25  # evaluation: sticky actions, Machado et al. 2018 / ALE v5 default (docs/stpn.md §8)


def check_sticky(p: float, name: str = "sticky") -> float:
    """A repeat-action probability in [0, 1), else ConfigError naming ``name``."""
    return check_range(name, p, 0.0, 1.0, hi_open=True)


def check_obs(obs: Any, num_envs: Optional[int] = None) -> np.ndarray:
    """Return ``obs`` as an array [N, 1, 84, 84] (also accepts [N, 84, 84]); raise a clear error."""
    arr = np.asarray(obs)
    if arr.ndim == 3 and arr.shape[1:] == OBS_SHAPE[1:]:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1:] != OBS_SHAPE:
        raise ConfigError(f"Pong observation has shape {tuple(arr.shape)}; expected [N, 1, 84, 84] "
                          "(84x84 greyscale, one frame, no stack)")
    if num_envs is not None and arr.shape[0] != num_envs:
        raise ConfigError(f"Pong observation batch {arr.shape[0]} != num_envs {num_envs}")
    return arr


class PongVecEnv:
    """N Pong games stepped together; uint8 observations [N, 1, 84, 84], checked every step."""

    def __init__(self, num_envs: int, seed: int = 0, num_threads: int = 1,
                 sticky: float = REPEAT_ACTION_PROBABILITY):
        check_int("num_envs", num_envs, 1, 1024)
        self.sticky = check_sticky(sticky)
        check_int("seed", seed, 0)
        check_int("num_threads", num_threads, 1, 64)
        try:
            import gymnasium as gym
            import ale_py
            from ale_py.vector_env import AtariVectorEnv
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise ImportError("Pong needs gymnasium, ale-py and opencv-python-headless "
                              "(pip install gymnasium ale-py opencv-python-headless)") from exc
        gym.register_envs(ale_py)
        self.num_envs, self.seed = num_envs, seed
        self._env = AtariVectorEnv(
            game="pong", num_envs=num_envs, num_threads=num_threads, img_height=OBS_SHAPE[1],
            img_width=OBS_SHAPE[2], grayscale=True, stack_num=1, frameskip=FRAMESKIP, maxpool=True,
            noop_max=30, repeat_action_probability=self.sticky, full_action_space=False,
            episodic_life=False, reward_clipping=True, use_fire_reset=True, autoreset_mode="SameStep")
        self.n_actions = int(self._env.single_action_space.n)
        if self.n_actions != N_ACTIONS:
            self.close()
            raise ConfigError(f"Pong action space has {self.n_actions} actions; expected {N_ACTIONS}")
        self._seeded = False

    @property
    def action_names(self) -> list:
        """The names of the agent's actions, in action-index order (ALE's minimal set for Pong:
        NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE)."""
        return [a.name for a in self._env.ale.get_action_set()]

    def reset(self) -> np.ndarray:
        """Start all games (seeded by ``seed`` the first time); returns obs [N, 1, 84, 84] uint8."""
        obs, _ = self._env.reset(seed=None if self._seeded else self.seed)
        self._seeded = True
        return check_obs(obs, self.num_envs)

    def step(self, actions: np.ndarray):
        """Act; returns (obs, reward float32 [N], done bool [N], info). Finished games restart
        at once: ``obs`` of a done env is the first frame of its next game."""
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start the step with ``actions`` [N] and return at once: the emulator threads play it while
        the caller computes; ``recv`` waits for it (ale-py's asynchronous interface)."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ConfigError(f"actions shape {actions.shape}; expected ({self.num_envs},)")
        self._env.send(actions.astype(np.int64, copy=False))

    def recv(self):
        """Wait for the step started by ``send``; returns what ``step`` returns."""
        obs, reward, term, trunc, info = self._env.recv()
        return (check_obs(obs, self.num_envs), np.asarray(reward, dtype=np.float32),
                np.logical_or(term, trunc), info)

    def close(self) -> None:
        """Release the emulators."""
        self._env.close()


def make_pong_env(num_envs: int, seed: int = 0, num_threads: int = 1,
                  sticky: float = REPEAT_ACTION_PROBABILITY) -> PongVecEnv:
    """Vectorised Pong (module docstring); ``num_threads`` emulator threads (1 leaves a core free);
    ``sticky`` the repeat-action probability (training default 0; evaluation passes EVAL_STICKY)."""
    return PongVecEnv(num_envs, seed, num_threads, sticky)
