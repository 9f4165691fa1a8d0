"""Study plots and tables with statistics (issue 16 item 6): equal metrics across seeds, grids that share an
axis, a named y axis, summary.csv with mean, std, 95 % CI and min."""

from __future__ import annotations

import csv
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from stoxbar.studies import load_study  # noqa: E402
from stoxbar.studies.plots import metric_figure, point_means, point_stats  # noqa: E402
from stoxbar.studies.runner import run_study  # noqa: E402


def _rows(xs, ys, param="periphery.adc.bits", metric="score_mean"):
    return [{"status": "ok", param: x, metric: y} for x, y in zip(xs, ys)]


def test_a_metric_equal_across_seeds_plots_without_negative_error_bars():
    # (0.1 + 0.1 + 0.1) / 3 = 0.10000000000000002 > max: the old min..max bars were negative
    rows = _rows([4, 4, 4, 6, 6, 6], [0.1] * 3 + [0.7] * 3)
    mean, lo, hi = point_means(rows, ["periphery.adc.bits"], "score_mean")[(4,)]
    assert lo <= mean <= hi
    fig = metric_figure(plt, rows, "periphery.adc.bits", None, "score_mean", "t")
    assert fig is not None
    assert "score_mean" in fig.axes[0].get_ylabel()  # the y axis names the metric's column
    plt.close(fig)


def test_point_stats_mean_std_ci_min():
    rows = _rows([4] * 4 + [6], [10.0, 12.0, 14.0, 16.0, 3.0])
    st = point_stats(rows, ["periphery.adc.bits"], "score_mean")
    s4 = st[(4,)]
    assert s4["n"] == 4 and s4["mean"] == 13.0 and s4["min"] == 10.0
    assert s4["std"] == pytest.approx(2.5819889, rel=1e-6)
    half = 3.182446305 * 2.5819889 / 2.0  # t(0.975, 3) s / sqrt(n)
    assert s4["ci95_lower"] == pytest.approx(13.0 - half, rel=1e-6) and s4["ci95_upper"] == pytest.approx(13.0 + half)
    assert st[(6,)]["std"] == 0.0 and st[(6,)]["ci95_lower"] == st[(6,)]["ci95_upper"] == 3.0


STUDY = """
name = "two_grids"
seeds = [0, 1]
[base]
checkpoint = "random"
[[grid]]
"periphery.tile_rows" = [256]
"periphery.tile_cols" = [64, 128]
[[grid]]
"periphery.tile_rows" = [512]
"periphery.tile_cols" = [64, 128]
[metrics]
games = 0
mvm_error_samples = 0
[plots]
metrics = ["area_m2", "tiles"]
"""


def test_grids_sharing_an_axis_keep_their_own_plots_and_the_summary_table(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(STUDY))
    study = load_study(str(path), str(tmp_path / "out"))
    assert run_study(study, workers=2, progress=False)["ok"] == 8
    plots = sorted(p.name for p in (study.output / "plots").glob("*.png"))
    assert plots == [f"{m}_vs_periphery.tile_cols_grid{g}.png" for m in ("area_m2", "tiles") for g in (1, 2)]
    with open(study.output / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert {"metric", "n", "mean", "std", "ci95_lower", "ci95_upper", "min"} <= set(summary[0])
    tiles = [r for r in summary if r["metric"] == "tiles"]
    assert len(tiles) == 4 and all(r["n"] == "2" and float(r["std"]) == 0.0 for r in tiles)


def test_error_bars_are_the_95_ci_over_seeds_or_the_trials_own_games():
    from stoxbar.studies.plots import point_ci

    rows = _rows([4, 4, 4], [1.0, 2.0, 3.0])  # three seeds: Student t interval over them
    lo, hi = point_ci(rows, ["periphery.adc.bits"], "score_mean")[(4,)]
    assert lo == pytest.approx(2.0 - 4.302653 / 3 ** 0.5, rel=1e-5) and hi == pytest.approx(4.0 - lo, rel=1e-9)
    one = [{"status": "ok", "periphery.adc.bits": 6, "score_mean": 3.0, "score_ci95_lower": 1.5,
            "score_ci95_upper": 4.0}]  # one seed: the trial's bootstrap interval over its games
    assert point_ci(one, ["periphery.adc.bits"], "score_mean") == {(6,): (1.5, 4.0)}
    fig = metric_figure(plt, rows + one, "periphery.adc.bits", None, "score_mean", "t")
    assert "95 % CI" in fig.axes[0].get_title()
    plt.close(fig)
