"""Validation helpers shared by every configuration dataclass.

Each check raises :class:`ConfigError` with one message that names the field, the value
and the allowed range, so a bad configuration never silently clamps or propagates NaN.

May import: the standard library only (every layer uses it).
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class ConfigError(ValueError):
    """A configuration value is outside its allowed range."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_range(
    field: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    unit: str = "",
) -> float:
    """Return ``value`` if it is a finite number in the given range, else raise.

    ``lo``/``hi`` of ``None`` mean unbounded; ``*_open`` makes that end exclusive.
    """
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    allowed = f"{'(' if lo_open or lo is None else '['}{lo_s}, {hi_s}{')' if hi_open or hi is None else ']'}"
    unit_s = f" {unit}" if unit else ""
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{field} = {value!r}: must be a finite number in {allowed}{unit_s}")
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        raise ConfigError(f"{field} = {value!r}: allowed range is {allowed}{unit_s}")
    return value


def check_int(field: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` if it is an int in [lo, hi], else raise :class:`ConfigError`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{field} = {value!r}: must be an integer in [{lo}, {hi}]")
    check_range(field, value, lo, hi)
    return value


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(f"{field} = {value!r}: allowed values are {options}")
    return value


def check_order(field_lo: str, lo: float, field_hi: str, hi: float) -> None:
    """Raise :class:`ConfigError` unless ``lo < hi`` (e.g. an inverted range)."""
    if not lo < hi:
        raise ConfigError(
            f"{field_lo} = {lo!r} must be smaller than {field_hi} = {hi!r} (range is inverted)"
        )
