"""Checkpoints of the Pong agent: atomic saves, new run directories, clear load errors.

A checkpoint is a ``torch.save`` dict (loaded with ``weights_only=True``):
  format, version, arch (ArchConfig dict), device (the device's dataclass fields or None),
  device_class (the device's registered class name; older checkpoints: STODevice), model (state
  dict), and for training runs optimizer, train_config, counters, rng.
Saving goes through :mod:`stoxbar.core.fsio` (temporary file in the same directory, fsync,
``os.replace``), so a crash leaves either the old or the new file, never half of one.

A checkpoint is data (docs/reliability.md §7): loading it never imports or calls anything it
names. Before ``torch.load`` every member of the zip archive is checked against its CRC-32, so a
flipped byte is a :class:`CheckpointError` naming the file, not a silently different agent. The
device is rebuilt from the stored fields through the registry of device classes
(:func:`stoxbar.devices.presets.device_from_fields`), and a stored preset name is looked up in the
registry only (:func:`~stoxbar.devices.presets.get_registered`: ``module:factory`` is refused).
Loading checks the weights' shapes against the saved architecture (a mismatch is a CheckpointError).

May import: torch, stoxbar.core.fsio, stoxbar.core.validation, stoxbar.devices, stoxbar.pong.agent.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import torch

from stoxbar.core import fsio
from stoxbar.devices import presets
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.core.validation import ConfigError

FORMAT = "stoxbar-pong-agent"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "arch", "device", "model")
PathLike = Union[str, os.PathLike]
# The trained Pong m-STPN shipped with the package (a resumable training run directory).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "pong_mstpn" / "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (missing, corrupt, incomplete or another architecture)."""


def new_run_dir(runs_dir: PathLike = "runs", prefix: str = "train", seed: Optional[int] = None) -> Path:
    """Create and return a fresh ``runs_dir/prefix-YYYYmmdd-HHMMSS[-seedN][-k]``; never reuses one."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}" + (f"-seed{seed}" if seed is not None else "")
    for k in range(1, 10000):
        path = root / (base if k == 1 else f"{base}-{k}")
        try:
            path.mkdir()  # atomic: fails if it exists
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (:func:`stoxbar.core.fsio.atomic_write_bytes`, overwrite=True)."""
    fsio.atomic_write_bytes(path, data, overwrite=True)


def device_fields(device: Any) -> Optional[Dict[str, Any]]:
    """The STO device's dataclass fields (plain values), or None (no device / the STPN cell)."""
    if device is None:
        return None
    if not dataclasses.is_dataclass(device):
        raise CheckpointError(f"device {type(device).__name__} is not a dataclass; cannot save it")
    return {f.name: getattr(device, f.name) for f in dataclasses.fields(device)}


def save_checkpoint(path: PathLike, agent: PongAgent, **extra: Any) -> Path:
    """Save ``agent`` (+ ``extra`` entries: optimizer, train_config, counters, rng) atomically."""
    payload = {"format": FORMAT, "version": VERSION, "arch": agent.arch.to_dict(),
               "device": device_fields(agent.device_model), "model": agent.state_dict()}
    if agent.device_model is not None:
        payload["device_class"] = type(agent.device_model).__name__
    clash = set(payload) & set(extra)
    if clash:
        raise ValueError(f"extra checkpoint entries {sorted(clash)} clash with reserved keys")
    payload.update(extra)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: PathLike, expected_arch: Optional[ArchConfig] = None,
                    required: Iterable[str] = REQUIRED_KEYS) -> Dict[str, Any]:
    """Read a checkpoint dict, raising :class:`CheckpointError` with the file name on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    verify_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/truncated zip archives
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated "
                              f"({path.stat().st_size} bytes; {_load_reason(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks keys {missing} (has {sorted(ckpt)})")
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt.get('format')!r}, expected {FORMAT!r}")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {ckpt.get('version')!r}; this code reads {VERSION}")
    if not isinstance(ckpt["arch"], dict):
        raise CheckpointError(f"checkpoint {path}: arch is a {type(ckpt['arch']).__name__}, not a dict")
    if ckpt["device"] is not None and not isinstance(ckpt["device"], dict):
        raise CheckpointError(f"checkpoint {path}: device is a {type(ckpt['device']).__name__}, not a dict of fields")
    if expected_arch is not None:
        check_arch(path, ckpt["arch"], expected_arch)
    return ckpt


MAX_CHECKPOINT_BYTES = 4 * 2**30  # assumption: the paper's agent is ~6 MB; 4 GiB is far beyond any real one


def verify_archive(path: PathLike) -> None:
    """Check every member of the checkpoint's zip archive against its CRC-32 (CheckpointError naming the file).

    ``torch.load`` does not verify the CRCs, so without this a flipped byte loads as other weights.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"checkpoint {path}: {size} bytes is more than the limit of {MAX_CHECKPOINT_BYTES} bytes")
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
            if total > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"checkpoint {path}: its archive unpacks to {total} bytes, more than the "
                                      f"limit of {MAX_CHECKPOINT_BYTES} bytes")
            bad = zf.testzip()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({size} bytes; not a readable zip "
                              f"archive: {exc})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: member {bad!r} fails its CRC-32 check (the file was "
                              "changed after it was written); restore it from a copy")


def _load_reason(exc: BaseException) -> str:
    """torch's reason a load failed, in one line, without its advice to load with ``weights_only=False``."""
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "Unpickler" in text:
        return ("it holds objects other than tensors and plain values, which stoxbar refuses to unpickle: "
                "a checkpoint is data, and loading such objects could run code")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:200]}"


def stored_device(ckpt: Dict[str, Any], path: PathLike = "<checkpoint>") -> Any:
    """The device a checkpoint was trained on, rebuilt from its stored fields without importing anything.

    None for a checkpoint without one (the float STPN cell). The class is looked up by name in the
    registry of device classes (:data:`stoxbar.devices.presets.DEVICE_CLASSES`).
    """
    fields = ckpt.get("device")
    if fields is None:
        return None
    try:
        return presets.device_from_fields(ckpt.get("device_class", "STODevice"), fields, "saved device")
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}; pass device= explicitly") from None


def chip_device(agent: PongAgent, path: PathLike = "<checkpoint>") -> Any:
    """The device to put a loaded agent on when the user names none: the registered preset its
    architecture names (so a shipped checkpoint plays on today's preset), else the device stored in
    the checkpoint. Never imports: ``module:factory`` from a file is not resolved (docs/reliability.md §7)."""
    name = agent.arch.device_preset
    if name in presets.PRESETS:
        return presets.get_registered(name)
    if agent.device_model is not None:
        return agent.device_model
    try:
        return presets.get_registered(name, f"checkpoint {path}: arch.device_preset")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def check_arch(path: PathLike, saved: Dict[str, Any], expected: ArchConfig) -> None:
    """Raise :class:`CheckpointError` naming every field where the saved architecture differs."""
    want = expected.to_dict()
    diff = {k: (saved.get(k, "<missing>"), v) for k, v in want.items() if saved.get(k, "<missing>") != v}
    diff.update({k: (v, "<unknown>") for k, v in saved.items() if k not in want})
    if diff:
        text = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"checkpoint {path} was trained with another architecture ({text})")


def build_agent(ckpt: Dict[str, Any], path: PathLike = "<checkpoint>", device: Any = None) -> PongAgent:
    """A :class:`PongAgent` with the checkpoint's architecture, device and weights.

    The m-STPN is rebuilt on the STO device it was trained with (saved fields), unless
    ``device`` is given (e.g. to evaluate the trained network on another device).
    """
    try:
        arch = ArchConfig.from_dict(dict(ckpt["arch"]))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid architecture: {exc}") from exc
    if device is None:
        device = stored_device(ckpt, path)
    if device is None and arch.cell == "mstpn":  # no stored fields: the preset it names, registered only
        try:
            device = presets.get_registered(arch.device_preset, f"checkpoint {path}: arch.device_preset")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    agent = PongAgent(arch, device=device)
    model = ckpt["model"]
    if not isinstance(model, dict):
        raise CheckpointError(f"checkpoint {path}: model is a {type(model).__name__}, not a state dict")
    own = agent.state_dict()
    wrong = [f"{k}: saved {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in model.items()
             if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise CheckpointError(f"checkpoint {path}: weight shapes do not match its architecture "
                              f"({arch.arch}/{arch.cell}, hidden {arch.hidden}, bottleneck {arch.bottleneck}): "
                              + "; ".join(wrong[:4]) + (f"; and {len(wrong) - 4} more" if len(wrong) > 4 else ""))
    try:
        result = agent.load_state_dict(model, strict=False)
    except (RuntimeError, TypeError, AttributeError, ValueError) as exc:  # a value that is not a fitting tensor
        raise CheckpointError(f"checkpoint {path}: model weights cannot be loaded "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"checkpoint {path}: model weights do not match the architecture "
                              f"(missing {result.missing_keys}, unexpected {result.unexpected_keys})")
    return agent


def load_agent(path: PathLike, expected_arch: Optional[ArchConfig] = None, device: Any = None
               ) -> Tuple[PongAgent, Dict[str, Any]]:
    """Load a checkpoint file into a new agent; returns (agent in eval mode, checkpoint dict)."""
    ckpt = load_checkpoint(path, expected_arch)
    agent = build_agent(ckpt, path, device)
    agent.eval()
    return agent, ckpt


def find_checkpoint(name: str) -> Path:
    """``init_from`` as a file: the path as written, or, when that file is gone (a repository cloned elsewhere),
    the longest tail of it that names a file under this repository's root (the package directory). Read only."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    root = Path(__file__).resolve().parent.parent  # the package directory: the repository root
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for i in range(len(parts)):
        cand = root.joinpath(*parts[i:])
        if cand.is_file():
            return cand.resolve()
    raise ConfigError(f"init_from = {name!r}: no such checkpoint (nor under {root})")


def checkpoint_source(path: PathLike, ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """Which state of a checkpoint file a result came from: the file's SHA-256 and its training counters
    (``update``, ``steps``, ...; None for a checkpoint without them). A run's ``checkpoint.pt`` is replaced as
    the run trains on, so its path alone does not say which agent was played. Read after ``load_agent``: a
    file replaced in between gives a hash that does not match the counters' state (no run replaces it
    more often than once per update)."""
    counters = ckpt.get("counters")
    kept = ({k: v for k, v in counters.items() if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
            if isinstance(counters, dict) else None)
    return {"checkpoint_sha256": fsio.file_sha256(path), "checkpoint_counters": kept}
