"""Issue 20: property-based damage of every file reader (hypothesis).

Each reader gets a real file written by stoxbar itself, damaged at the byte level (bit flips,
truncation, inserted, deleted or overwritten bytes, one to three times), and must either load it
or raise the project's own error (``ConfigError`` / ``CheckpointError``), never another exception:
checkpoints (and, through them, the stored device fields), study TOML, trial records and the
study's own files, the results table, play reports and a training run's CSVs and config.json. A
second checkpoint property keeps the archive valid and damages its content instead (hostile values
in arch, device and weights), so the checks behind the CRC are exercised too.

Kept fast for CI: small files, modest ``max_examples``, no deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import CheckpointError, load_agent, save_checkpoint
from stoxbar.core.validation import ConfigError

OURS = (ConfigError, CheckpointError)
TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=4, bottleneck=8)
# STOXBAR_FUZZ_EXAMPLES raises the count for a longer local hunt; CI runs the derandomized default
EXAMPLES = int(os.environ.get("STOXBAR_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize="STOXBAR_FUZZ_EXAMPLES" not in os.environ)


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` with one to three byte-level damages."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        n = len(out)
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        if n == 0:
            kind = "insert"
        pos = draw(st.integers(0, max(n - 1, 0)))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[pos:pos + draw(st.integers(1, 16))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[pos:pos + len(chunk)] = chunk
    return bytes(out)


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="stoxbar-fuzz-"))


# -- the files, written by stoxbar itself ------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One of each file kind, made by the real writers (a tiny study run, a tiny training run)."""
    from stoxbar.pong.a2c import TrainConfig, train
    from stoxbar.studies import load_study
    from stoxbar.studies.runner import run_study

    root = tmp_path_factory.mktemp("fuzz")
    ckpt = save_checkpoint(root / "ck.pt", PongAgent(TINY))
    study_file = root / "s.toml"
    study_file.write_text(textwrap.dedent("""
        name = "fuzz"
        description = "fuzz base"
        seeds = [0, 1]
        [base]
        checkpoint = "random"
        set = { "periphery.adc.share" = 8 }
        [[grid]]
        "periphery.tile_rows" = [256, 512]
        [metrics]
        games = 0
        mvm_error_samples = 0
        [plots]
        metrics = ["area_m2"]
        """))
    study = load_study(str(study_file), str(root / "study"))
    run_study(study, progress=False)
    run = train(TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=20, checkpoint_every=2, log_every=1,
                            runs_dir=str(root / "runs"), seed=1), echo=lambda s: None)
    if not (run / "episodes.csv").exists():  # no game ends in 20 steps: rows through the real writer
        from stoxbar.pong.a2c import _append_csv

        for i in range(1, 4):
            _append_csv(run / "episodes.csv", ["episode", "steps", "frames", "return", "length"],
                        {"episode": i, "steps": 5 * i, "frames": 20 * i, "return": -21.0 + i, "length": 800 + i})
    play = {"games": 2, "mode": "analog", "checkpoint": "c.pt", "device_preset": "sto_2024", "synapses": 10,
            "agent_steps": 8, "steps_per_game": [4, 4], "max_steps": 4, "truncated_games": [0, 1],
            "simulated_seconds": 0.5, "wall_seconds": 1.0, "score": {"per_game": [-1.0, 0.0], "mean": -0.5},
            "energy": {"synapse_only": {"total_j": 1e-10}, "array": {"total_j": 1e-9},
                       "system": {"total_j": 2e-9, "by_component": {"adc": 1.5e-9, "dac": 5e-10}},
                       "gpu_baseline": {"total_j": 1e-6, "assumptions": {"gpu": "A100"}}},
            "gpu_tiers": {"roofline": {"total_j": 1e-6}, "latency": {"total_j": 1e-4}}}
    (root / "play.json").write_text(json.dumps(play, indent=2))
    return {"checkpoint": ckpt, "study_file": study_file, "study": study.output, "run": run,
            "play": root / "play.json"}


# -- checkpoints (and the device fields stored in them) -----------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_bytes(files, data):
    original = files["checkpoint"].read_bytes()
    bad = data.draw(damaged(original))
    d = _scratch()
    try:
        (d / "ck.pt").write_bytes(bad)
        try:
            agent, _ = load_agent(d / "ck.pt")
        except OURS:
            return
        # it loaded: then it is the same agent (damage that changed nothing that matters)
        ref, _ = load_agent(files["checkpoint"])
        assert all(torch.equal(a, b) for a, b in zip(agent.state_dict().values(), ref.state_dict().values()))
    finally:
        shutil.rmtree(d)


JUNK = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                    | st.text(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                              max_size=3),
                    max_leaves=6)


@FUZZ
@given(where=st.sampled_from(["arch", "device", "device_class", "model", "format", "top"]),
       key=st.text(max_size=12), value=JUNK, data=st.data())
def test_fuzz_checkpoint_content(files, where, key, value, data):
    ckpt = torch.load(files["checkpoint"], weights_only=True)
    if where in ("arch", "device", "model"):
        keys = sorted(ckpt[where])
        name = data.draw(st.sampled_from(keys + [key])) if keys else key
        if data.draw(st.booleans()) and name in ckpt[where]:
            del ckpt[where][name]
        else:
            ckpt[where][name] = value if where != "model" or data.draw(st.booleans()) else torch.zeros(3, 2)
    elif where == "top":
        ckpt[key] = value
    else:
        ckpt[where] = value
    d = _scratch()
    try:
        torch.save(ckpt, d / "ck.pt")
        try:
            load_agent(d / "ck.pt")
        except OURS:
            pass
    finally:
        shutil.rmtree(d)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["g_min_s", "g_max_s", "tau_min_s", "tau_max_s", "st_pulse_levels",
                                               "name", "notes", "read_noise_std", "v_bias_max_v", "lt_dg_s", "bogus"]),
                              JUNK, max_size=4),
       cls=st.sampled_from(["STODevice", "MemristiveDevice", "os:system", ""]))
def test_fuzz_stored_device_fields(fields, cls):
    from dataclasses import asdict

    from stoxbar.devices import presets

    base = {k: v for k, v in asdict(presets.sto_2024()).items()}
    try:
        dev = presets.device_from_fields(cls, {**base, **fields})
    except ConfigError:
        return
    assert type(dev).__name__ == cls


# -- study files ---------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_study_toml(files, data):
    from stoxbar.studies import load_study

    bad = data.draw(damaged(files["study_file"].read_bytes()))
    d = _scratch()
    try:
        (d / "s.toml").write_bytes(bad)
        try:
            load_study(str(d / "s.toml"), str(d / "out"), import_task=False)
        except OURS:
            pass
    finally:
        shutil.rmtree(d)


@FUZZ
@given(name=st.sampled_from(["record", "study.json", "invocations.jsonl", "results.csv"]), data=st.data())
def test_fuzz_study_directory_files(files, name, data):
    """Trial records, study.json, invocations.jsonl, results.csv: report, resume checks and the table reader."""
    from stoxbar.studies.report import study_page, study_status
    from stoxbar.studies.records import load_records, read_study_meta, scan_records
    from stoxbar.studies.table import read_table

    d = _scratch() / "study"
    try:
        shutil.copytree(files["study"], d, ignore=shutil.ignore_patterns("plots", "*.parquet", ".stoxbar.lock"))
        target = sorted((d / "trials").glob("*.json"))[0] if name == "record" else d / name
        original = target.read_bytes()
        target.write_bytes(data.draw(damaged(original)))
        records, bad = scan_records(d)  # never raises for damage
        if name == "record":
            assert len(records) + len(bad) == 4
            for path in bad:
                with pytest.raises(ConfigError, match=path.name):
                    load_records(d)
        for reader in (lambda: read_study_meta(d), lambda: study_status(d), lambda: study_page(d),
                       lambda: read_table(d / "results.csv")):
            try:
                reader()
            except OURS:
                pass
    finally:
        shutil.rmtree(d.parent)


# -- play reports -------------------------------------------------------------------------------------
@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize="STOXBAR_FUZZ_EXAMPLES" not in os.environ)
@given(data=st.data())
def test_fuzz_play_report(files, data):
    from stoxbar.studies.report import play_page

    d = _scratch()
    try:
        (d / "p.json").write_bytes(data.draw(damaged(files["play"].read_bytes())))
        try:
            assert "<html>" in play_page(d / "p.json")
        except OURS:
            pass
    finally:
        shutil.rmtree(d)


# -- a training run's files -------------------------------------------------------------------------
@FUZZ
@given(name=st.sampled_from(["progress.csv", "episodes.csv", "config.json"]), data=st.data())
def test_fuzz_training_run_files(files, name, data):
    from stoxbar.pong.a2c import run_episodes, _truncate_csv, read_run_config

    d = _scratch() / "run"
    try:
        shutil.copytree(files["run"], d, ignore=shutil.ignore_patterns("*.pt", "*.png", ".stoxbar.lock"))
        (d / name).write_bytes(data.draw(damaged((d / name).read_bytes())))
        readers = {"progress.csv": lambda: _truncate_csv(d / "progress.csv", "update", 1),
                   "episodes.csv": lambda: (run_episodes(d), _truncate_csv(d / "episodes.csv", "steps", 10)),
                   "config.json": lambda: read_run_config(d)}
        try:
            readers[name]()
        except OURS:
            pass
    finally:
        shutil.rmtree(d.parent)
