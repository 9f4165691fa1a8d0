"""``stoxbar compare A.json B.json``: two ``stoxbar play --json`` reports compared game by game.

Two runs of ``stoxbar play`` that played the same game seeds (game ``i`` has env seed ``seed + i``;
e.g. two agents, an agent and its ablation, the chip and float) pair up by env seed: the paired
score difference A - B has a narrower interval than the difference of the two unpaired means
(the games' shared difficulty cancels). Refused, naming the field: a file that is not a play
report, reports without per-game records, reports played under different protocols (sticky-action
probability, ``--max-steps``, greedy or sampled actions: their games are not the same games), or
reports that share no env seed. The energy per game at each boundary both reports hold is compared
over the paired games (each game's own energy, ``per_game[].energy_j``).

May import: stoxbar.core.{fsio,validation}, stoxbar.pong.scores, stoxbar.studies.report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from stoxbar.core.fsio import read_json
from stoxbar.core.validation import ConfigError
from stoxbar.pong.scores import paired_summary, score_summary
from stoxbar.studies.report import check_play_report

PROTOCOL = ("sticky", "max_steps", "greedy")  # what makes two reports' game i the same game


def _games(rep: Dict[str, Any], path: Path) -> Dict[int, Dict[str, Any]]:
    games = rep.get("per_game")
    if not isinstance(games, list) or not games or not all(
            isinstance(g, dict) and isinstance(g.get("env_seed"), int) and isinstance(g.get("score"), (int, float))
            for g in games):
        raise ConfigError(f"report {path}: per_game must list each game's env_seed and score (a report of an older "
                          "stoxbar play has none: play it again)")
    return {g["env_seed"]: g for g in games}


def compare_play_reports(path_a: str, path_b: str) -> Dict[str, Any]:
    """The paired comparison of play reports A and B (module docstring): ``pairs``, ``env_seeds``, the
    shared ``protocol``, ``a`` / ``b`` (file, checkpoint, mode, ablation, :func:`score_summary` of the
    paired games), ``difference`` (:func:`paired_summary` of A - B) and ``energy_per_game_j`` (per
    boundary both hold: mean J per paired game of A and of B, and A / B, None when B's is 0)."""
    reps, games = [], []
    for p in (Path(path_a), Path(path_b)):
        rep = read_json(p)
        check_play_report(rep, p)
        reps.append(rep)
        games.append(_games(rep, p))
    a, b = reps
    for key in PROTOCOL:
        if a.get(key) != b.get(key):
            raise ConfigError(f"reports {path_a} and {path_b}: {key} = {a.get(key)!r} vs {b.get(key)!r}; a paired "
                              f"comparison needs the same protocol ({', '.join(PROTOCOL)})")
    seeds = sorted(set(games[0]) & set(games[1]))
    if not seeds:
        raise ConfigError(f"reports {path_a} and {path_b} share no game: env seeds {min(games[0])}-{max(games[0])} vs "
                          f"{min(games[1])}-{max(games[1])}; play both with the same --seed")
    sa: List[float] = [float(games[0][s]["score"]) for s in seeds]
    sb: List[float] = [float(games[1][s]["score"]) for s in seeds]
    energy = {}
    for bnd in ("synapse_only", "array", "system"):
        ea = [games[0][s].get("energy_j", {}).get(bnd) for s in seeds]
        eb = [games[1][s].get("energy_j", {}).get(bnd) for s in seeds]
        if all(isinstance(v, (int, float)) for v in ea + eb):
            ma, mb = sum(ea) / len(ea), sum(eb) / len(eb)
            energy[bnd] = {"a": ma, "b": mb, "a_over_b": ma / mb if mb > 0 else None}

    def side(rep: Dict[str, Any], path: str, scores: List[float]) -> Dict[str, Any]:
        st = score_summary(scores)
        del st["per_game"]
        return {"file": str(path), "checkpoint": rep["checkpoint"], "mode": rep["mode"],
                "ablate": rep.get("ablate", "none"), "score": st}

    return {"pairs": len(seeds), "env_seeds": seeds, "protocol": {k: a.get(k) for k in PROTOCOL},
            "a": side(a, path_a, sa), "b": side(b, path_b, sb), "difference": paired_summary(sa, sb),
            "energy_per_game_j": energy}
