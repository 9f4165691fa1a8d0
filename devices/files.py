"""Device files: a device as a TOML file of data (``stoxbar fit`` writes one; ``--device FILE.toml`` reads one).

A device file names a *registered* device class and gives its dataclass fields; nothing in it is
ever imported or run (docs/reliability.md §7). Schema (docs/device-physics.md §11)::

    format = "stoxbar-device/1"
    class = "STODevice"          # a registered device class (presets.DEVICE_CLASSES)
    based_on = "sto_2024"        # optional: a registered preset that fills the fields not given
    [fields]                     # the class's fields in SI units (tau_min_s = 0.05, ...)
    name = "my_device"
    [sources]                    # optional: field -> where its value comes from (kept as the device's notes)
    tau_min_s = "fit of decay_*.csv, 5 traces"
    [fit]                        # optional: free provenance (numbers and strings), kept, not used

Unknown keys are refused, naming the key and the allowed ones; every value is checked by the
device class itself, so an out-of-range value is refused naming the field, value and range.

May import: stoxbar.core, stoxbar.devices.base.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from stoxbar.core.fsio import atomic_write_text
from stoxbar.core.validation import ConfigError
from stoxbar.devices.base import MemristiveDevice

__all__ = ["FORMAT", "read_device_file", "as_tuple", "write_device_file", "device_file_text", "is_device_file"]

FORMAT = "stoxbar-device/1"
MAX_DEVICE_FILE_BYTES = 1 << 20
_TOP_KEYS = ("format", "class", "based_on", "fields", "sources", "fit")


def is_device_file(spec: Any) -> bool:
    """True if ``spec`` (a --preset/--device value) names a device file (``*.toml``)."""
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(".toml")


def read_device_file(path: Union[str, Path]) -> Tuple[str, Optional[str], Dict[str, Any], Dict[str, str]]:
    """(class name, based_on, fields, sources) of a device file, its structure checked; a :class:`ConfigError`
    names the file and what does not fit. :func:`stoxbar.devices.presets.resolve_device` builds the device
    (the registered class checks every value)."""
    p = Path(path)
    where = f"device file {p}"
    if not p.is_file():
        raise ConfigError(f"{where}: not found (a device file is a path to a .toml file)")
    if p.stat().st_size > MAX_DEVICE_FILE_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_DEVICE_FILE_BYTES} bytes; allowed: a small TOML file")
    try:
        doc = tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed keys are {list(_TOP_KEYS)}")
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{where}: format = {doc.get('format')!r}; allowed: {FORMAT!r}")
    for table in ("fields", "sources", "fit"):
        if not isinstance(doc.get(table, {}), dict):
            raise ConfigError(f"{where}: {table} must be a table ([{table}])")
    based_on = doc.get("based_on")
    if based_on is not None and (not isinstance(based_on, str) or is_device_file(based_on) or ":" in based_on):
        raise ConfigError(f"{where}: based_on = {based_on!r}; allowed: a registered preset name")
    fields = {k: as_tuple(v) for k, v in doc.get("fields", {}).items()}
    if "notes" in fields:
        raise ConfigError(f"{where}: [fields] notes: give sources in the [sources] table")
    sources = doc.get("sources", {})
    bad = sorted(k for k, v in sources.items() if not isinstance(v, str))
    if bad:
        raise ConfigError(f"{where}: [sources] key(s) {bad}: each must be a string (where the value comes from)")
    return doc.get("class"), based_on, fields, dict(sources)


def as_tuple(v: Any) -> Any:
    return tuple(as_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v


def _toml_value(v: Any, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"{key} = {v!r}: a device file holds finite numbers only")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x, key) for x in v) + "]"
    raise ConfigError(f"{key} = {v!r}: a device file holds numbers, strings, booleans and arrays of them")


def _table(name: str, items: Mapping[str, Any]) -> str:
    return f"\n[{name}]\n" + "".join(f"{k} = {_toml_value(v, f'{name}.{k}')}\n" for k, v in items.items())


def device_file_text(device: MemristiveDevice, fit: Optional[Mapping[str, Any]] = None,
                     comment: str = "") -> str:
    """The TOML text of ``device`` (all its fields; sources from its notes and field metadata)."""
    if not isinstance(device, MemristiveDevice) or not dataclasses.is_dataclass(device):
        raise ConfigError(f"device = {device!r}: must be a MemristiveDevice dataclass")
    names = [f.name for f in dataclasses.fields(device) if f.init and f.name != "notes"]
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    text = head + f'format = "{FORMAT}"\nclass = "{type(device).__name__}"\n'
    text += _table("fields", {k: getattr(device, k) for k in names})
    src = {k: device.source(k) for k in names if device.source(k)}
    if src:
        text += _table("sources", src)
    if fit:
        text += _table("fit", dict(fit))
    return text


def write_device_file(device: MemristiveDevice, path: Union[str, Path], fit: Optional[Mapping[str, Any]] = None,
                      comment: str = "") -> Path:
    """Write ``device`` as a device file atomically (never over an existing file); checks it reads back equal."""
    text = device_file_text(device, fit, comment)
    parsed = tomllib.loads(text)["fields"]
    if any(as_tuple(parsed[k]) != v for k, v in device.as_dict().items() if k != "notes"):
        raise ConfigError(f"device file {path}: does not read back as the device written (a value TOML cannot hold)")
    return atomic_write_text(path, text)
