"""Studies: parsing and validation, local and Ray runs, resume, failure isolation, table, plots, report."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import textwrap
from pathlib import Path

import pytest

from stoxbar.crossbar.costs import area
from stoxbar.peripherals import PeripheryConfig
from stoxbar.studies import StudyError, load_study
from stoxbar.studies.plots import pareto_front
from stoxbar.core.validation import ConfigError
from stoxbar.studies.report import write_report
from stoxbar.studies.records import load_records
from stoxbar.studies.runner import run_study
from stoxbar.studies.spec import build_point, point_id, resolve_study_path
from stoxbar.studies.table import ID_COLUMNS, read_table
from stoxbar.pong.agent import ArchConfig

# static metrics only (no game, no MVM): a trial is one worker process and a few ms of work
STATIC = """
name = "static"
seeds = [0, 1]
[base]
checkpoint = "random"
set = {{ "periphery.adc.share" = 4 }}
[[grid]]
"periphery.tile_rows" = [256, 512]
{extra}
[metrics]
games = 0
mvm_error_samples = 0
"""


def write_study(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def static_study(tmp_path: Path, extra: str = "", out: str = "out"):
    path = write_study(tmp_path, STATIC.format(extra=extra))
    return load_study(str(path), str(tmp_path / out))


# -- parsing and validation --------------------------------------------------------------------
@pytest.mark.parametrize("body, match", [
    ('[[grid]]\n"periphery.adc.bitz" = [4]', r"periphery.adc.bitz.*unknown parameter 'bitz'"),
    ('[[grid]]\n"chip.adc.bits" = [4]', r"'chip.adc.bits'.*must start with"),
    ('[[grid]]\n"periphery.adc.bits" = [4.5]', r"periphery.adc.bits = 4.5: expected a int"),
    ('[[grid]]\n"periphery.adc.bits" = [1, 8]', r"point \{'periphery.adc.bits': 1\}.*adc.bits = 1.*\[2, 16\]"),
    ('[[grid]]\n"device.read_noise_std" = ["high"]', r"read_noise_std = 'high': expected a float"),
    ('[[grid]]\n"periphery.adc" = [4]', r"'adc' is a block"),
    ('[[grid]]\n"periphery.adc.bits" = []', r"must be a non-empty list"),
    ('[[grid]]', r"empty grid"),
    ('seeds = [0]', r"no points"),
    ('[[grid]]\n"periphery.adc.share" = [3]', r"adc.share = 3: must divide"),
    ('[[grid]]\n"agent.hidden" = [8]', r"agent.\* parameters need checkpoint = 'random'"),
    ('[[grid]]\n"periphery.adc.bits" = [4]\n[metrics]\ngamez = 1', r"\[metrics\]: unknown key"),
    ('[[grid]]\n"periphery.adc.bits" = [4]\n[random]\nn = 2\n"device.tau_max_s" = { normal = [1, 2] }',
     r"must be one of"),
])
def test_bad_study_files_are_rejected_naming_the_entry(tmp_path, body, match):
    path = write_study(tmp_path, 'name = "bad"\n' + body + "\n")
    with pytest.raises(StudyError, match=match):
        load_study(str(path))


def test_study_parses_grid_random_and_base(tmp_path):
    path = write_study(tmp_path, """
        name = "mix"
        seeds = [3, 4]
        [base]
        checkpoint = "random"
        set = { "device.read_noise_std" = 0.02 }
        [[grid]]
        "periphery.adc.bits" = [4, 6]
        "periphery.dac.bits" = [4, 8]
        [[grid]]
        "periphery.adc.bits" = [4]
        "periphery.dac.bits" = [4]
        [random]
        n = 5
        seed = 7
        "device.tau_max_s" = { loguniform = [1.0, 100.0] }
        "periphery.adc.bits" = { choice = [5, 7] }
        "agent.hidden" = { randint = [8, 16] }
        """)
    study = load_study(str(path))
    assert study.varied == ("periphery.adc.bits", "periphery.dac.bits", "device.tau_max_s", "agent.hidden")
    trials = study.trials()
    assert len(trials) == (4 + 5) * 2  # the second grid's point duplicates the first grid's: runs once
    rand = [p for g, p in study.points if g == "random"]
    assert all(1.0 <= p["device.tau_max_s"] <= 100.0 and p["periphery.adc.bits"] in (5, 7)
               and 8 <= p["agent.hidden"] <= 16 for p in rand)
    assert rand == [p for g, p in load_study(str(path)).points if g == "random"]  # reproducible draws
    assert trials[0].trial_id == f"{point_id(trials[0].params)}-s3"
    cfg = build_point(ArchConfig(), "sto_2024", study.base, rand[0])
    assert cfg.device.read_noise_std == 0.02 and cfg.arch.hidden == rand[0]["agent.hidden"]
    assert cfg.periphery.adc.bits == rand[0]["periphery.adc.bits"] and isinstance(cfg.periphery, PeripheryConfig)


def test_builtin_studies_validate():
    names = sorted(p.stem for p in resolve_study_path("scaling").parent.glob("*.toml"))
    assert names == ["array_architecture", "bias_addressing", "converter_resolution", "decay_law", "device_nonidealities",
                     "peripheral_overhead", "plasticity_ablation", "scaling"]
    for name in names:
        assert load_study(name).trials()
    with pytest.raises(StudyError, match="built-in"):
        resolve_study_path("no_such_study")
    # the training comparison's ablation studies, one per kind of agent, on their committed seed-0 checkpoints
    comparison = Path(__file__).resolve().parents[1] / "training" / "comparison_ppo"
    kinds = {"stp_only": (14, "chip"), "stpn": (7, "float"), "recurrent": (4, "chip")}
    for agent, (trials, first_backend) in kinds.items():
        study = load_study(str(comparison / f"ablation_{agent}.toml"))
        assert len(study.trials()) == trials and study.paired == (("agent.ablate", "none"),)
        assert f"/{agent}/seed0/" in study.checkpoint and study.points[0][1].get("agent.backend", "chip") == first_backend
    # the supplementary studies of session 16: each names an existing checkpoint and pairs against its reference
    for path, trials, ref in ((comparison / "ablation_gamma_init.toml", 4, ("agent.ablate", "none")),
                              (comparison / "bias_addressing_stp_only.toml", 5, ("periphery.bias_addressing", "per_cell")),
                              (comparison.parent / "theta_lr" / "ablation.toml", 5, ("agent.ablate", "none")),
                              (comparison.parent / "theta_lr" / "ablation_chip.toml", 2, ("agent.ablate", "none"))):
        study = load_study(str(path))
        assert len(study.trials()) == trials and study.paired == (ref,) and Path(study.checkpoint).is_file()


def test_sweep_command_dry_run_lists_points(tmp_path, capsys):
    from stoxbar.scripts.cli import main

    path = write_study(tmp_path, STATIC.format(extra=""))
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "2 points x 2 seeds = 4 trials" in text and "'periphery.tile_rows': 512" in text
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_pareto_front():
    pts = [(1.0, 1.0), (2.0, 3.0), (1.5, 0.5), (3.0, 3.0), (0.5, -1.0), (4.0, 5.0)]
    assert pareto_front(pts) == [4, 0, 1, 5]


# -- running: local pool, table, resume, failures --------------------------------------------------
def test_local_run_table_resume_and_report(tmp_path):
    study = static_study(tmp_path)
    counts = run_study(study, workers=2, progress=False)
    assert counts == {"trials": 4, "skipped": 0, "ok": 4, "failed": 0}
    out = study.output
    rows = read_table(out / "results.csv")
    with open(out / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:len(ID_COLUMNS)] == list(ID_COLUMNS) and header[len(ID_COLUMNS)] == "periphery.tile_rows"
    assert len(rows) == 4 and {(r["periphery.tile_rows"], r["seed"]) for r in rows} == {
        (256, 0), (256, 1), (512, 0), (512, 1)}
    for r in rows:  # the metrics are the configuration's own numbers
        p = build_point(ArchConfig(), "sto_2024", study.base, {"periphery.tile_rows": r["periphery.tile_rows"]}).periphery
        tiles = math.ceil(2656 / p.tile_rows) * math.ceil(64 / p.tile_cols)
        assert r["status"] == "ok" and r["tiles"] == tiles
        assert math.isclose(r["area_m2"], area(tiles, p)["total"], rel_tol=1e-9)
    units = {row["column"]: row["unit"] for row in csv.DictReader(open(out / "columns.csv"))}
    assert units["area_m2"] == "m^2" and units["mvm_latency_s"] == "s" and units["periphery.tile_rows"] == "1"
    # resume: nothing is recomputed; a lost record is the only one that runs again
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.json")}
    assert run_study(study, workers=2, progress=False) == {"trials": 4, "skipped": 4, "ok": 0, "failed": 0}
    lost = sorted(stamps)[0]
    os.unlink(out / "trials" / lost)
    assert run_study(study, workers=1, progress=False) == {"trials": 4, "skipped": 3, "ok": 1, "failed": 0}
    assert {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.json") if p.name != lost} == {
        k: v for k, v in stamps.items() if k != lost}
    assert len((out / "invocations.jsonl").read_text().splitlines()) == 3  # before the metrics checks below
    # a study saved before a Metrics field existed resumes (it ran at that field's default) ...
    meta = json.loads((out / "study.json").read_text())
    del meta["identity"]["metrics"]["wires"]
    (out / "study.json").write_text(json.dumps(meta))
    assert run_study(study, workers=1, progress=False)["skipped"] == 4
    # ... one that ran at another value does not
    games, meta["identity"]["metrics"]["games"] = meta["identity"]["metrics"]["games"], 7
    (out / "study.json").write_text(json.dumps(meta))
    with pytest.raises(StudyError, match=r"holds another study \(differs in \['metrics'\]\)"):
        run_study(study, progress=False)
    meta["identity"]["metrics"]["games"] = games
    (out / "study.json").write_text(json.dumps(meta))
    # another study cannot resume into this directory
    other = dataclasses.replace(study, base={"periphery.adc.share": 8})
    with pytest.raises(StudyError, match="holds another study"):
        run_study(other, progress=False)
    # the report: tables, the study file, the commands; never overwritten
    page = write_report(str(out))
    text = page.read_text()
    assert "periphery.tile_rows" in text and "[[grid]]" in text and "Versions" in text
    assert write_report(str(out)).name == "report-2.html"
    with pytest.raises(FileExistsError):
        write_report(str(out), str(page))


def test_failed_trial_is_recorded_and_retried_alone(tmp_path):
    study = static_study(tmp_path)
    # a point that passes no validation stands for a trial that fails at run time
    broken = dataclasses.replace(study, points=study.points + (("grid1", {"periphery.adc.bits": 1}),))
    counts = run_study(broken, workers=2, progress=False)
    assert counts == {"trials": 6, "skipped": 0, "ok": 4, "failed": 2}
    rows = read_table(study.output / "results.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all("adc.bits = 1" in r["error"] for r in failed)
    assert run_study(broken, workers=2, progress=False) == {"trials": 6, "skipped": 4, "ok": 0, "failed": 2}
    assert len(list((study.output / "trials" / "failed").glob("*.json"))) == 2  # first attempts kept


def test_timeout_fails_the_trial_not_the_study(tmp_path):
    study = static_study(tmp_path)
    counts = run_study(study, workers=2, timeout_s=0.05, progress=False)
    assert counts["failed"] == 4
    recs = load_records(study.output)
    assert all("exceeded 0.05 s" in r["error"] for r in recs.values())
    with pytest.raises(StudyError, match="timeout"):
        run_study(study, timeout_s=-1, progress=False)


def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    local = static_study(tmp_path, out="local")
    run_study(local, workers=2, progress=False)
    study = static_study(tmp_path, out="ray")
    counts = run_study(study, workers=2, ray_address="local", progress=False)
    assert counts == {"trials": 4, "skipped": 0, "ok": 4, "failed": 0}
    recs = load_records(study.output)
    assert all(r["pid"] != os.getpid() for r in recs.values())
    strip = ("trial_wall_s",)
    for a, b in zip(read_table(local.output / "results.csv"), read_table(study.output / "results.csv")):
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    line = json.loads((study.output / "invocations.jsonl").read_text().splitlines()[-1])
    assert line["backend"] == "ray:local"


def test_wire_metrics_solve_the_points_tiles_and_leave_the_games_chip_alone():
    """``[metrics] wires = true``: the wires of a taller tile drop the held bias more (full solve), and the
    agent keeps its own cell (the games build their chip from the point's periphery, ideal wires here)."""
    from stoxbar.devices import presets
    import torch

    from stoxbar.pong.agent import ArchConfig as Arch, PongAgent
    from stoxbar.studies.metrics import wire_metrics
    from stoxbar.studies.spec import PointConfig
    from stoxbar.peripherals import PeripheryConfig

    torch.manual_seed(0)
    arch = Arch(hidden=16)
    agent = PongAgent(arch)
    cell = agent.cell
    out = {}
    for rows in (128, 512):
        cfg = PointConfig(device=presets.get_preset("sto_2024"), periphery=PeripheryConfig(tile_rows=rows), arch=arch)
        out[rows] = wire_metrics(agent, cfg)
        assert agent.cell is cell
    assert set(out[128]) == {"ir_drop_rel_error", "bias_wire_drop_max_v", "bias_wire_drop_rms_v", "bias_tau_rel_error_max"}
    assert 0 < out[128]["ir_drop_rel_error"] < out[512]["ir_drop_rel_error"] < 0.05
    assert 0 < out[128]["bias_wire_drop_max_v"] < out[512]["bias_wire_drop_max_v"]
    assert 0 < out[128]["bias_tau_rel_error_max"] < out[512]["bias_tau_rel_error_max"]


def test_markdown_pools_a_points_games_over_its_seeds(tmp_path):
    """``stoxbar report --markdown`` of a study with several seeds: after the per-trial table, one row per point
    with all its games (every seed's), their mean, and the paired difference to the reference point over the same
    (seed, game) pairs, checked against the trial records' own per-game scores."""
    body = """
    name = "pooled"
    seeds = [0, 1]
    [base]
    checkpoint = "random"
    set = { "agent.hidden" = 8 }
    [[grid]]
    "agent.ablate" = ["none", "gamma0"]
    "agent.backend" = ["float"]
    [metrics]
    games = 2
    chips = 2
    max_steps = 200
    mvm_error_samples = 0
    [paired]
    reference = { "agent.ablate" = "none" }
    """
    study = load_study(str(write_study(tmp_path, body)), str(tmp_path / "out"))
    assert run_study(study, workers=2, progress=False)["ok"] == 4
    games = {}
    for r in load_records(study.output).values():
        for g in r["per_game"]:
            games.setdefault(r["params"]["agent.ablate"], {})[(r["seed"], g["env_seed"])] = g["score"]
    assert all(len(v) == 4 for v in games.values())
    text = write_report(str(study.output), markdown=True).read_text()
    head, pooled = text.split("Pooled over the seeds")
    assert len([ln for ln in head.splitlines() if ln.startswith("| none") or ln.startswith("| gamma0")]) == 4
    rows = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in pooled.splitlines() if ln.startswith("| ") and
            not ln.startswith("| agent.ablate")}
    assert set(rows) == {"none", "gamma0"}
    for name, cells in rows.items():
        assert cells[2:4] == ["2", "4"]  # seeds, games
        assert cells[4] == f"{sum(games[name].values()) / 4:+.2f}"
    diffs = [games["gamma0"][k] - games["none"][k] for k in sorted(games["none"])]
    assert rows["gamma0"][8].startswith(f"{sum(diffs) / 4:+.2f} [") and rows["none"][8] == ""
    assert rows["gamma0"][9] == f"{sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)} / {sum(d == 0 for d in diffs)}"


PAIRED_STUDY = """
    name = "{name}"
    seeds = [0]
    [base]
    checkpoint = "random"
    set = {{{{ "agent.hidden" = 8 }}}}
    {grid}
    [metrics]
    games = 4
    chips = 2
    max_steps = 200
    mvm_error_samples = 0
    [paired]
    reference = {ref}
    """  # a random agent's study of 4 short float games per point, paired (NAME, GRID, REF filled in)


def test_paired_reference_in_another_grid_group_is_the_one_point_with_the_reference_values(tmp_path):
    """Grid groups that vary different parameters (here the second group also sets ``agent.hidden``): a trial
    whose own reference point is not in the study pairs with the study's one point holding the reference
    values; with two such points there is no reference to pick, and no row."""
    from stoxbar.pong.scores import paired_summary

    body = PAIRED_STUDY.format(name="paired_groups", ref='{{ "agent.ablate" = "none" }}', grid="""
    [[grid]]
    "agent.ablate" = ["none"]
    "agent.backend" = ["float"]
    [[grid]]
    "agent.ablate" = ["gamma0"]
    "agent.backend" = ["float"]
    "agent.hidden" = [8]
    {more}""")
    study = load_study(str(write_study(tmp_path, body.format(more=""))), str(tmp_path / "out"))
    assert run_study(study, workers=1, progress=False)["ok"] == 2
    recs = {r["params"]["agent.ablate"]: r for r in load_records(study.output).values()}
    games = {k: {g["env_seed"]: g["score"] for g in r["per_game"]} for k, r in recs.items()}
    with open(study.output / "paired.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    st = paired_summary([games["gamma0"][s] for s in range(4)], [games["none"][s] for s in range(4)])
    assert row["agent.ablate"] == "gamma0" and row["reference_point_id"] == recs["none"]["point_id"]
    assert float(row["diff_mean"]) == pytest.approx(st["mean"]) and int(row["pairs"]) == 4
    # a third group with a second point at the reference value: ambiguous, so gamma0 has no row
    more = '[[grid]]\n    "agent.ablate" = ["none"]\n    "agent.backend" = ["float"]\n    "agent.hidden" = [4]'
    two = load_study(str(write_study(tmp_path, body.format(more=more), "two.toml")), str(tmp_path / "out2"))
    from stoxbar.studies.paired import paired_rows

    assert [r["agent.ablate"] for r in paired_rows(two, study.output)] == []


def test_paired_comparison_pairs_each_point_with_its_reference_game_by_game(tmp_path):
    """``[paired]``: each trial against the trial of the same seed with the reference value, its games paired by
    env seed (paired.csv, checked here against the records' own per-game scores), shown in the report; a
    reference that is not varied, or that no point has, is named when the file is loaded."""
    from stoxbar.pong.scores import paired_summary

    body = PAIRED_STUDY.format(name="paired", ref="{ref}", grid="""
    [[grid]]
    "agent.ablate" = ["none", "gamma0", "tau_min"]
    "agent.backend" = ["float"]""")
    study = load_study(str(write_study(tmp_path, body.format(ref='{ "agent.ablate" = "none" }'))), str(tmp_path / "out"))
    assert study.paired == (("agent.ablate", "none"),)
    assert run_study(study, workers=2, progress=False)["ok"] == 3
    records = {r["params"]["agent.ablate"]: r for r in load_records(study.output).values()}
    per_game = {k: {g["env_seed"]: g["score"] for g in r["per_game"]} for k, r in records.items()}
    assert sorted(per_game["none"]) == [0, 1, 2, 3] and any(per_game["none"].values())  # points were lost
    with open(study.output / "paired.csv", newline="") as fh:
        rows = {r["agent.ablate"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"gamma0", "tau_min"}  # the reference point has no row of its own
    for name, row in rows.items():
        mine, ref = per_game[name], per_game["none"]
        diffs = [mine[s] - ref[s] for s in range(4)]
        assert row["reference_point_id"] == records["none"]["point_id"] and int(row["pairs"]) == 4
        assert float(row["diff_mean"]) == pytest.approx(sum(diffs) / 4)
        assert (int(row["better"]), int(row["worse"]), int(row["equal"])) == (
            sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), sum(d == 0 for d in diffs))
        assert float(row["diff_ci95_lower"]) <= float(row["diff_mean"]) <= float(row["diff_ci95_upper"])
    assert "Paired against the reference point" in write_report(str(study.output)).read_text()
    # the markdown table: one row per point in the study file's order, the score's numbers and the paired diff
    md = write_report(str(study.output), markdown=True)
    assert md.name == "report.md" and write_report(str(study.output), markdown=True).name == "report-2.md"
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| agent.ablate | agent.backend | games | mean | 95 % CI | std | min | paired diff")
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| none", "| gamma0", "| tau_min"]
    for ln in lines[2:]:
        name, m = ln.split(" | ")[0][2:], records[ln.split(" | ")[0][2:]]["metrics"]
        cells = ln.split(" | ")
        assert cells[2:7] == ["4", f"{m['score_mean']:+.2f}", f"[{m['score_ci95_lower']:+.2f}, "
                              f"{m['score_ci95_upper']:+.2f}]", f"{m['score_std']:.2f}", f"{m['score_min']:.4g}"]
        assert cells[7] == ("" if name == "none" else f"{float(rows[name]['diff_mean']):+.2f} "
                            f"[{float(rows[name]['diff_ci95_lower']):+.2f}, {float(rows[name]['diff_ci95_upper']):+.2f}]")
    with pytest.raises(ConfigError, match="--markdown: expected a study directory"):
        write_report(str(next((study.output / "trials").glob("*.json"))), markdown=True)
    # the training comparison's report carries a run's ablation study (ROOT/ablation/AGENT/seedS) as one row
    import shutil

    from stoxbar.pong.comparison import ABLATION_COLUMNS, ComparisonConfig, ablation_lines

    cfg = ComparisonConfig(agents=("stp_only",), seeds=(0,))
    assert ablation_lines(tmp_path / "cmp", cfg) == []
    shutil.copytree(study.output, tmp_path / "cmp" / "ablation" / "stp_only" / "seed0")
    lines = ablation_lines(tmp_path / "cmp", cfg)
    none = records["none"]["metrics"]
    assert lines[-1].startswith(f"| stp_only | 0 | an earlier checkpoint | float | {none['score_mean']:+.2f} [{none['score_ci95_lower']:+.2f}, ")
    cells = lines[-1].split(" | ")  # a random agent: no checkpoint file to read its frames from
    assert cells[5] == f"{float(rows['gamma0']['diff_mean']):+.2f} [{float(rows['gamma0']['diff_ci95_lower']):+.2f}, " \
        f"{float(rows['gamma0']['diff_ci95_upper']):+.2f}]" and cells[6] == "-"  # gamma0 played, gamma_frozen_init not
    # a later study of the same checkpoint in seed0+NAME adds its ablations; one of another checkpoint is ignored
    for name, sha in (("seed0+more", None), ("seed0+other", "0" * 64)):
        extra = shutil.copytree(study.output, tmp_path / "cmp" / "ablation" / "stp_only" / name)
        text = (extra / "paired.csv").read_text()
        (extra / "paired.csv").write_text(text.replace("gamma0", "gamma_frozen_init").replace(
            "tau_min", "gamma_frozen_init" if sha else "tau_min"))
        if sha:
            meta = json.loads((extra / "study.json").read_text())
            meta["identity"]["checkpoint_sha256"] = sha
            (extra / "study.json").write_text(json.dumps(meta))
    merged = ablation_lines(tmp_path / "cmp", cfg)[-1].split(" | ")
    assert merged[5] == cells[5] and merged[6] == cells[5]  # gamma_frozen_init from seed0+more (there: gamma0's games)
    assert merged[9] == cells[9] != "-"  # tau_min, in both studies: the first one's row
    # across seeds: one seed gives no such table; a second seed's study (here gamma0's differences shifted
    # by -100, its CI clear below 0) gives the mean of the two seeds and counts the seeds it hurt
    assert not any(ln.startswith("Across seeds") for ln in ablation_lines(tmp_path / "cmp", cfg))
    seed1 = shutil.copytree(study.output, tmp_path / "cmp" / "ablation" / "stp_only" / "seed1")
    with open(seed1 / "paired.csv", newline="") as fh:
        prow = list(csv.DictReader(fh))
    for r in prow:
        if r["agent.ablate"] == "gamma0":
            for k in ("diff_mean", "diff_ci95_lower", "diff_ci95_upper"):
                r[k] = str(float(r[k]) - 100.0)
    with open(seed1 / "paired.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(prow[0]))
        w.writeheader()
        w.writerows(prow)
    two = ablation_lines(tmp_path / "cmp", ComparisonConfig(agents=("stp_only",), seeds=(0, 1)))
    assert two[-1].startswith(f"| stp_only | float | 0, 1 | {none['score_mean']:+.2f} ({none['score_mean']:+.2f}, "
                              f"{none['score_mean']:+.2f}) | ")
    g0, tm = float(rows["gamma0"]["diff_mean"]), rows["tau_min"]
    clear = int(float(tm["diff_ci95_upper"]) < 0), int(float(tm["diff_ci95_lower"]) > 0)
    across = two[-1].split(" | ")
    assert across[4] == f"{g0 - 50.0:+.2f} ({1 + (float(rows['gamma0']['diff_ci95_upper']) < 0)} worse, " \
        f"{int(float(rows['gamma0']['diff_ci95_lower']) > 0)} better of 2)"
    g = rows["gamma0"]  # gamma_frozen_init: seed 0's from seed0+more (gamma0's games), in no study of seed 1
    assert across[5] == f"{g0:+.2f} ({int(float(g['diff_ci95_upper']) < 0)} worse, " \
        f"{int(float(g['diff_ci95_lower']) > 0)} better of 1)"
    assert across[4 + ABLATION_COLUMNS.index("tau_min")].startswith(
        f"{float(tm['diff_mean']):+.2f} ({2 * clear[0]} worse, {2 * clear[1]} better of 2)")
    shutil.rmtree(seed1)
    # chip - float: the intact agent on the chip against the same agent in float, game by game (this study
    # played float only: "-"; a chip record of the intact agent beside it, one game a point better, pairs up)
    from stoxbar.pong.comparison import _chip_cost

    d0 = tmp_path / "cmp" / "ablation" / "stp_only" / "seed0"
    assert cells[-1] == "- |" and _chip_cost([d0]) == "-"
    chip = json.loads((d0 / "trials" / f"{records['none']['trial_id']}.json").read_text())
    chip["params"].pop("agent.backend")
    chip["per_game"] = [{**g, "score": g["score"] + (g["env_seed"] == 2)} for g in chip["per_game"]]
    (d0 / "trials" / "pchip-s0.json").write_text(json.dumps(chip))
    st = paired_summary([per_game["none"][s] + (s == 2) for s in range(4)], [per_game["none"][s] for s in range(4)])
    assert st["mean"] == 0.25 and _chip_cost([d0]) == (
        f"+0.25 [{st['ci95']['lower']:+.2f}, {st['ci95']['upper']:+.2f}] (1 / 0 / 3)")
    chip["per_game"][0] = {"score": 1.0}  # a damaged record: one line naming it
    (d0 / "trials" / "pchip-s0.json").write_text(json.dumps(chip))
    with pytest.raises(ConfigError, match=r"pchip-s0.json: per_game is not a list of games.*KeyError"):
        _chip_cost([d0])
    # the paired interval of identical games is a point; of shifted games, the shift
    assert paired_summary([1, -2, 3], [1, -2, 3])["ci95"] == {"lower": 0.0, "upper": 0.0}
    st = paired_summary([2, -1, 4, 0], [1, -2, 3, -1])
    assert (st["mean"], st["ci95"]["lower"], st["ci95"]["upper"], st["better"]) == (1.0, 1.0, 1.0, 4)
    with pytest.raises(ValueError, match="equally long"):
        paired_summary([1, 2], [1])
    for ref, match in [('{ "agent.backend" = "chip" }', r"agent.backend = 'chip': no point has this value; allowed: 'float'"),
                       ('{ "device.tau_max_s" = 1.0 }', r"'device.tau_max_s' is not a varied parameter; allowed: agent.ablate"),
                       ('"none"', r"\[paired\] reference = 'none': give a table")]:
        with pytest.raises(StudyError, match=match):
            load_study(str(write_study(tmp_path, body.format(ref=ref), "bad.toml")))
    with pytest.raises(StudyError, match=r"\[paired\]: paired comparisons pair the Pong games.*games = 0"):
        load_study(str(write_study(tmp_path, body.format(ref='{ "agent.ablate" = "none" }').replace(
            "games = 4", "games = 0"), "bad.toml")))


def test_sweep_checkpoint_option_plays_another_agent(tmp_path, monkeypatch, capsys):
    """``stoxbar sweep STUDY --checkpoint PATH``: a built-in study on another agent (path relative to the working
    directory, its sha256 in the study's identity); a missing file is one line naming the option."""
    import shutil

    from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT
    from stoxbar.scripts.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copy(SHIPPED_CHECKPOINT, tmp_path / "mine.pt")
    shipped = load_study("plasticity_ablation")
    mine = load_study("plasticity_ablation", checkpoint="mine.pt")
    assert mine.checkpoint == str(tmp_path / "mine.pt") and mine.checkpoint_sha256 == shipped.checkpoint_sha256
    assert mine.points == shipped.points and load_study("plasticity_ablation", checkpoint="random").checkpoint == "random"
    assert main(["sweep", "plasticity_ablation", "--checkpoint", "nope.pt", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--checkpoint = 'nope.pt': file" in err and "not found" in err and "\n" not in err


def test_float_stpn_agent_is_ablated_in_float_and_refused_on_the_chip(tmp_path):
    """A float STPN checkpoint (the comparison's agent c): its ablation study runs with agent.backend = float
    (played, paired with the intact agent and tabulated); on the chip it is refused when the file is loaded,
    naming the backend to use."""
    import torch

    from stoxbar.pong.agent import PongAgent
    from stoxbar.pong.checkpoint import save_checkpoint

    arch = ArchConfig(arch="bottleneck", cell="stpn", hidden=8, bottleneck=16)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "stpn.pt", PongAgent(arch), train_config={"arch": arch.to_dict(), "seed": 0})
    body = """
    name = "stpn_ablation"
    seeds = [0]
    [base]
    checkpoint = "stpn.pt"
    [[grid]]
    "agent.ablate" = ["none", "gamma0", "tau_frozen_init", "tau_max"]
    "agent.backend" = [{backend}]
    [metrics]
    games = 2
    chips = 2
    max_steps = 60
    mvm_error_samples = 0
    [paired]
    reference = {{ "agent.ablate" = "none" }}
    """
    with pytest.raises(StudyError, match=r"cell = 'stpn'; only an m-STPN maps onto the STO chip.*agent.backend = 'float'"):
        load_study(str(write_study(tmp_path, body.format(backend='"chip"'))))
    study = load_study(str(write_study(tmp_path, body.format(backend='"float"'))), str(tmp_path / "out"))
    assert run_study(study, workers=2, progress=False)["ok"] == 4
    with open(study.output / "paired.csv", newline="") as fh:
        rows = {r["agent.ablate"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"gamma0", "tau_frozen_init", "tau_max"} and all(int(r["pairs"]) == 2 for r in rows.values())
    # an untrained agent's Lambda is its initialisation: that ablation replays the intact games exactly
    assert rows["tau_frozen_init"]["diff_mean"] == "0.0" and rows["tau_frozen_init"]["equal"] == "2"
