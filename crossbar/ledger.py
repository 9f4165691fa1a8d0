"""Energy ledger: counts, joules and seconds keyed by (layer, tile, component, event).

Every simulated event on a crossbar (a DAC conversion, a cell read, an ADC conversion, a
short-term pulse, a second of decay bias, a digital op) adds one entry here, so the total is by
construction the sum of its parts. Entries are plain Python floats.

A ledger is plain data: reading it never changes it, and it knows nothing of tiles. Tiles
attached to a ledger accumulate their events and book them, costed by the one cost model, when
their owner flushes them at a step or game boundary (:mod:`stoxbar.crossbar.recorder`: flush,
then read).

Views: :meth:`totals` groups by any subset of the key fields; :meth:`snapshot` / :meth:`since`
give per-MVM, per-step or per-game deltas; :meth:`to_json` writes atomically.

May import: stoxbar.core.validation, stoxbar.core.fsio (nothing of the crossbar: a ledger never calls into a tile).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Mapping, Tuple

from stoxbar.core.validation import ConfigError

KEY_FIELDS = ("layer", "tile", "component", "event")
Key = Tuple[str, str, str, str]


@dataclass
class Entry:
    """Accumulated cost of one (layer, tile, component, event) key."""

    count: float = 0.0
    energy_j: float = 0.0
    time_s: float = 0.0

    @property
    def latency_s(self) -> float:
        """Busy time (s) of this key: the same number as ``time_s``."""
        return self.time_s


class EnergyLedger:
    """Accumulates event counts (dimensionless), energy (J) and busy time (s) per key."""

    def __init__(self) -> None:
        self._store: Dict[Key, Entry] = defaultdict(Entry)

    # -- recording ---------------------------------------------------------------------
    def add(
        self,
        layer: str,
        tile: str,
        component: str,
        event: str,
        count: float,
        energy_j: float,
        time_s: float = 0.0,
    ) -> None:
        """Record ``count`` events costing ``energy_j`` joules and ``time_s`` seconds in total.

        The one booking entry. Raises ``ConfigError`` for negative or non-finite values: the
        ledger never holds a negative or NaN energy.
        """
        for name, value in (("count", count), ("energy_j", energy_j), ("time_s", time_s)):
            if not (value >= 0.0 and math.isfinite(value)):
                raise ConfigError(
                    f"ledger entry {(layer, tile, component, event)}: {name} = {value!r} must be "
                    "finite and >= 0"
                )
        entry = self._store[(layer, tile, component, event)]
        entry.count += count
        entry.energy_j += energy_j
        entry.time_s += time_s

    def merge(self, other: "EnergyLedger", prefix: str = "") -> None:
        """Add every entry of ``other`` into this ledger (layer names optionally prefixed)."""
        for (layer, tile, comp, event), e in other.items():
            mine = self._store[(prefix + layer, tile, comp, event)]
            mine.count += e.count
            mine.energy_j += e.energy_j
            mine.time_s += e.time_s

    def reset(self) -> None:
        """Forget all entries."""
        self._store.clear()

    # -- reading -------------------------------------------------------------------------
    def items(self) -> Iterator[Tuple[Key, Entry]]:
        """Iterate over (key, entry) pairs."""
        return iter(list(self._store.items()))

    def __len__(self) -> int:
        return len(self._store)

    @property
    def total_j(self) -> float:
        """Total energy in joules."""
        return math.fsum(e.energy_j for e in self._store.values())

    def totals(self, by: Iterable[str] = ("component",), **where: str) -> Dict[Tuple[str, ...], Entry]:
        """Sum entries grouped by the given key fields, optionally filtered (``layer="stp"``)."""
        by = tuple(by)
        for name in (*by, *where):
            if name not in KEY_FIELDS:
                raise ConfigError(f"ledger field {name!r}: allowed fields are {KEY_FIELDS}")
        idx = [KEY_FIELDS.index(name) for name in by]
        out: Dict[Tuple[str, ...], Entry] = defaultdict(Entry)
        for key, e in self._store.items():
            if any(key[KEY_FIELDS.index(f)] != v for f, v in where.items()):
                continue
            group = out[tuple(key[i] for i in idx)]
            group.count += e.count
            group.energy_j += e.energy_j
            group.time_s += e.time_s
        return dict(out)

    def latency_s(self, **where: str) -> float:
        """Time (s) of the filtered entries with the tiles of a layer running in parallel.

        Per (layer, event): the largest busy time of its tiles; summed over layers and events
        (they run in sequence). E.g. ``latency_s(layer="stp", event="mvm")`` is the read latency
        of that layer over everything booked.
        """
        best: Dict[Tuple[str, str], float] = {}
        for (layer, event, _tile), e in self.totals(("layer", "event", "tile"), **where).items():
            best[(layer, event)] = max(best.get((layer, event), 0.0), e.time_s)
        return math.fsum(best.values())

    def by_component(self, **where: str) -> Dict[str, float]:
        """Energy (J) per component name, optionally filtered by layer/tile/event."""
        return {k[0]: e.energy_j for k, e in sorted(self.totals(("component",), **where).items())}

    def snapshot(self) -> "EnergyLedger":
        """Return an independent copy (use with :meth:`since` for per-step / per-game views)."""
        copy = EnergyLedger()
        copy.merge(self)
        return copy

    def since(self, earlier: "EnergyLedger") -> "EnergyLedger":
        """Entries accumulated after ``earlier`` (a snapshot of this ledger)."""
        diff = EnergyLedger()
        for key, e in self._store.items():
            old = earlier._store.get(key, Entry())
            d = Entry(e.count - old.count, e.energy_j - old.energy_j, e.time_s - old.time_s)
            if d.count or d.energy_j or d.time_s:
                diff._store[key] = Entry(max(d.count, 0.0), max(d.energy_j, 0.0), max(d.time_s, 0.0))
        return diff

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready view: total, per component and every entry."""
        return {
            "total_j": self.total_j,
            "by_component_j": self.by_component(),
            "entries": [
                dict(zip(KEY_FIELDS, key), count=e.count, energy_j=e.energy_j, time_s=e.time_s)
                for key, e in sorted(self._store.items())
            ],
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` atomically (temp file + rename); refuses to overwrite."""
        write_json_atomic(path, self.to_dict())


def write_json_atomic(path: str | os.PathLike, data: Mapping[str, object], overwrite: bool = False) -> None:
    """Write ``data`` as JSON atomically (:func:`stoxbar.core.fsio.atomic_write_json`); never half-written.

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False, so an earlier
    result is never silently replaced.
    """
    from stoxbar.core.fsio import atomic_write_json

    atomic_write_json(path, data, overwrite=overwrite)
