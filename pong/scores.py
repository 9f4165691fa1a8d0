"""Statistics of game scores: mean, standard deviation, bootstrap 95 % confidence interval, minimum;
and the paired difference of two agents (or configurations) that played the same game seeds.

Used by ``stoxbar play`` and the studies' Pong metrics so both report the same numbers. The
interval is scipy's bootstrap (BCa is unstable on the few distinct values of Pong scores, so the
percentile method), 10,000 resamples with a fixed seed: the same games give the same interval.
A single game, or games that all scored the same, give a zero-width interval.

May import: numpy, scipy.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000  # assumption: enough for a stable 2.5/97.5 % percentile at n >= 10 games
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def scores_by_seed(per_game: Sequence[Dict[str, Any]]) -> Dict[int, float]:
    """env seed -> score of a trial record's ``per_game`` games (each with ``env_seed`` and ``score``), the key
    on which two sets of games played on the same seeds pair up (:func:`paired_summary`)."""
    return {int(g["env_seed"]): float(g["score"]) for g in per_game}


def score_summary(scores: Sequence[float]) -> Dict[str, object]:
    """``mean``, ``std`` (sample, ddof 1; 0 for one game), ``ci95`` {lower, upper} (bootstrap of the mean),
    ``min``, ``max``, ``n`` and ``per_game`` of ``scores`` (at least one)."""
    from scipy.stats import bootstrap

    x = np.asarray(list(scores), dtype=np.float64)
    if x.size == 0:
        raise ValueError("score_summary needs at least one score")
    mean = float(x.mean())
    if x.size == 1 or bool(np.all(x == x[0])):
        lower = upper = mean
    else:
        res = bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                        method="percentile", random_state=np.random.default_rng(BOOTSTRAP_SEED))
        lower, upper = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"mean": mean, "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "ci95": {"lower": lower, "upper": upper}, "min": float(x.min()), "max": float(x.max()),
            "n": int(x.size), "per_game": [float(v) for v in x]}


def paired_summary(scores: Sequence[float], reference: Sequence[float]) -> Dict[str, object]:
    """The paired difference ``scores - reference`` of two sets of games played game by game on the same
    seeds (same length, same order): :func:`score_summary` of the differences (its ``mean``, ``std``,
    ``ci95``, ``min``, ``max``, ``n``) plus ``better`` / ``worse`` / ``equal``, the games in which
    ``scores`` beat, lost to or tied with ``reference``. Pairing removes the spread the game seeds
    share, so its interval is narrower than the difference of two unpaired means' intervals."""
    a = np.asarray(list(scores), dtype=np.float64)
    b = np.asarray(list(reference), dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_summary needs two equally long, non-empty score lists (got {a.size} and {b.size})")
    d = a - b
    out = score_summary(d)
    del out["per_game"]
    out.update(better=int((d > 0).sum()), worse=int((d < 0).sum()), equal=int((d == 0).sum()))
    return out


def format_interval(mean: float, lower: float, upper: float) -> str:
    """A mean and its 95 % CI as the reports' table cells write them: ``+1.23 [-0.45, +2.91]``."""
    return f"{float(mean):+.2f} [{float(lower):+.2f}, {float(upper):+.2f}]"
