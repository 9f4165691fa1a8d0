"""The Pong task: ALE environment, the m-STPN Pong agent, A2C training, checkpoints, evaluation.

A client of ``stpn`` (the network) and of the crossbar substrate; nothing below imports it.

May import: stoxbar.pong.
"""

from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import CheckpointError, load_agent, save_checkpoint

__all__ = ["ArchConfig", "PongAgent", "load_agent", "save_checkpoint", "CheckpointError"]
