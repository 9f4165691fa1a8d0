"""Statistics of game scores: mean, standard deviation, bootstrap 95 % confidence interval, minimum.

Used by ``stoxbar play`` and the studies' Pong metrics so both report the same numbers. The
interval is scipy's bootstrap (BCa is unstable on the few distinct values of Pong scores, so the
percentile method), 10,000 resamples with a fixed seed: the same games give the same interval.
A single game, or games that all scored the same, give a zero-width interval.

May import: numpy, scipy.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000  # assumption: enough for a stable 2.5/97.5 % percentile at n >= 10 games
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


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
