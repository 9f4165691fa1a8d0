"""Saving and loading the STO state of tiles and tile arrays: one path for both.

aihwkit saves a simulator tile's extra state through its ``dump_extra``/``load_extra`` hooks and a
module's through torch's ``get_extra_state``/``set_extra_state``; both ends call
:func:`extra_state` / :func:`load_extra_state` here, so a tile and an array save the same
record: the short-term state ``g_st`` and the bias-hold flag (the long-term conductances and
biases are buffers of :class:`~stoxbar.crossbar.state.CrossbarState`, saved by torch).

A checkpoint's configuration must be an STO configuration (:func:`require_sto_config`, a duck
check of the fields STO tiles need, so nothing below ``crossbar/config.py`` imports it); a
checkpoint made for another device or periphery gets a state rebuilt for it
(:func:`state_for_device`).

May import: torch, stoxbar.core.validation, stoxbar.crossbar.state.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from stoxbar.crossbar.state import CrossbarState
from stoxbar.core.validation import ConfigError

STO_CONFIG_FIELDS = ("device", "periphery", "retention", "update_mode")
"""What makes an RPU config an STO configuration (``STORPUConfig`` has them, aihwkit's configs do not)."""


def is_sto_config(rpu_config: Any) -> bool:
    """True if ``rpu_config`` carries the STO fields (:data:`STO_CONFIG_FIELDS`)."""
    return all(hasattr(rpu_config, name) for name in STO_CONFIG_FIELDS)


def require_sto_config(rpu_config: Any) -> None:
    """Raise ConfigError unless ``rpu_config`` is an STO configuration (checkpoint loading)."""
    if not is_sto_config(rpu_config):
        raise ConfigError(f"rpu_config = {type(rpu_config).__name__}: an STO tile loads only STORPUConfig "
                          "checkpoints (stock aihwkit and STO tiles do not exchange analog states)")


def extra_state(st: CrossbarState) -> Dict[str, Any]:
    """What torch does not save of ``st``: the short-term state and the bias-hold flag (copies)."""
    out = {"g_st": None if st.g_st is None else st.g_st.detach().clone(), "hold_bias": st.hold_bias}
    if st.g_modes is not None:  # a device with several decay modes: F's part in each
        out["g_modes"] = st.g_modes.detach().clone()
    for name in ("tau_factor", "st_d2d"):  # each device's own law spreads (drawn once per array)
        if getattr(st, name) is not None:
            out[name] = getattr(st, name).detach().clone()
    return out


def load_extra_state(st: CrossbarState, extra: Optional[Dict[str, Any]]) -> None:
    """Restore what :func:`extra_state` saved (None or a non-dict, from older checkpoints: nothing)."""
    if isinstance(extra, dict):
        for name in ("tau_factor", "st_d2d"):
            f = extra.get(name)
            if f is not None and torch.is_tensor(f) and f.shape[-3:] == st.v_bias.shape:
                setattr(st, name, f.to(st.v_bias))
        st.load_short_term(extra.get("g_st"), bool(extra.get("hold_bias", st.hold_bias)), extra.get("g_modes"))


def state_for_device(old: CrossbarState, device: Any) -> CrossbarState:
    """A state of ``old``'s layout for ``device``, holding ``old``'s conductances, biases and hold flag."""
    new = CrossbarState(old.in_sizes, old.out_size, device, dtype=old.g_pos.dtype, out_sizes=old.out_sizes)
    new = new.to(old.g_pos.device)
    for name in ("g_pos", "g_neg", "v_bias"):
        getattr(new, name).copy_(getattr(old, name))
    new.draw_law_spreads(None)  # the new device's own spreads (a checkpoint's saved ones replace them on load)
    new.hold_bias = old.hold_bias
    new.invalidate()
    return new
