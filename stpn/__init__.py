"""STPN and m-STPN cells (digital reference and analog on STO tiles), Pong agent, A2C training."""

from stoxbar.stpn.agent import ArchConfig, PongAgent
from stoxbar.stpn.cells import MSTPNCell, STPNCell, kernel_available
from stoxbar.stpn.checkpoint import CheckpointError, load_agent, save_checkpoint

__all__ = ["STPNCell", "MSTPNCell", "kernel_available", "ArchConfig", "PongAgent", "load_agent", "save_checkpoint",
           "CheckpointError"]
