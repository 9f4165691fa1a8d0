"""Batched chips (issue 16 point 3): C chip instances in one crossbar state, G games in one vector env.
Real aihwkit tiles, real ALE Pong; small agents and a few hundred steps."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from stoxbar.crossbar import EnergyLedger
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.accounting import boundaries
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import load_checkpoint
from stoxbar.pong.chips import MAX_CHIPS, check_games_chips, play_chips
from stoxbar.pong.evaluate import build_analog_cell, play_games
from stoxbar.scripts.cli import main
from stoxbar.core.validation import ConfigError

TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


def _analog(programming: str = "open_loop", seed: int = 0):
    torch.manual_seed(seed)
    agent = PongAgent(TINY)
    with torch.no_grad():
        agent.cell.W.mul_(0.5 / float(agent.cell.W.abs().max()))  # |w| up to 0.5 of the window
    cell = build_analog_cell(agent, agent.device_model, PeripheryConfig(programming=programming))
    return agent, cell


def _chips(seed: int, chips: int = 3, per_chip: int = 2):
    agent, cell = _analog()
    cell.program_chips(chips, per_chip, torch.Generator().manual_seed(seed))
    return agent, cell


def test_chips_have_their_own_programming_draws_and_a_seed_reproduces_them():
    _, cell = _chips(seed=4)
    g = cell.chip.g_pos
    assert g.shape[0] == 6 and cell.chip.per_chip
    assert torch.equal(g[0], g[1]) and torch.equal(g[2], g[3])  # the games of one chip share its conductances
    assert not torch.equal(g[0], g[2]) and not torch.equal(g[2], g[4])  # different chips differ
    dev = cell.chip_device
    assert float(g.min()) >= dev.g_min_s * 0 and float(g.max()) <= dev.g_max_s  # in the window (pads are 0)
    _, again = _chips(seed=4)
    assert torch.equal(again.chip.g_pos, g) and torch.equal(again.chip.g_neg, cell.chip.g_neg)
    _, other = _chips(seed=5)
    assert not torch.equal(other.chip.g_pos, g)


def test_each_game_slot_reads_with_its_own_noise_and_chip(monkeypatch):
    from stoxbar.core import native

    agent, cell = _chips(seed=1)
    state = agent.initial_state(6)
    obs = torch.randint(0, 255, (1, 1, 84, 84), dtype=torch.uint8).expand(6, 1, 84, 84)
    assert torch.equal(cell.chip.chip_weights()[2], torch.tensor([0, 0, 1, 1, 2, 2]))
    forms = []
    if native.available():  # the native read takes the chip form: each chip's W once, no slot's W + F
        ext, real = native.extension(), native.extension().io_mvm_read
        monkeypatch.setattr(ext, "io_mvm_read", lambda *a: forms.append(a[-2] is not None) or real(*a))
    with torch.no_grad():
        logits, _, _ = agent(obs, state)
    assert forms == ([True] * len(forms) if native.available() else []) and (forms or not native.available())
    assert not torch.equal(logits[0], logits[1])  # same chip, same frame: own read-noise draws
    with pytest.raises(ConfigError, match="batch = 4: this state holds 6 chip slots"):
        agent.initial_state(4)


def test_finished_games_leave_the_batch_with_their_chip_slots():
    agent, cell = _chips(seed=2, chips=3, per_chip=1)
    state = agent.initial_state(3)
    g_before = cell.chip.g_pos.clone()
    state = agent.keep_slots(state, torch.tensor([True, False, True]))
    assert state[0].shape[0] == 2 and cell.chip.g_st.shape[0] == 2
    assert torch.equal(cell.chip.g_pos, g_before[[0, 2]])
    obs = torch.zeros(2, 1, 84, 84, dtype=torch.uint8)
    with torch.no_grad():
        logits, _, _ = agent(obs, state)
    assert logits.shape == (2, TINY.n_actions)
    with pytest.raises(ConfigError, match="keep_slots"):
        agent.keep_slots(state, torch.tensor([False, False]))


def test_per_chip_energy_is_the_sum_of_single_chips():
    """Bias and read energy of C chips in one batched state = the sum over C single-chip states."""
    from stoxbar.crossbar import flush_events

    def run(chips: int):
        agent, cell = _analog("write_verify")  # deterministic programming: every chip the same
        ledger = EnergyLedger()
        cell.attach(ledger, "stp")
        if chips > 1:
            cell.program_chips(chips, 1)
        state = agent.initial_state(chips)
        torch.manual_seed(3)
        obs = torch.randint(0, 255, (1, 1, 84, 84), dtype=torch.uint8).expand(chips, 1, 84, 84)
        with torch.no_grad():
            for _ in range(3):
                _, _, state = agent(obs, state)
        flush_events(agent)
        return ledger.by_component(layer="stp")

    one, three = run(1), run(3)
    assert set(one) == set(three)
    for comp in ("bias", "cell_read", "dac", "adc"):
        if comp in one:
            assert three[comp] == pytest.approx(3 * one[comp], rel=1e-5), comp
            assert three[comp] >= 0.0


def test_each_games_energy_adds_up_to_the_ledger_and_follows_its_length():
    """Games that end at different steps: each game's own energy (the segments it played, split among
    the games playing them) sums to the ledger's total at every boundary, is positive, and is longer
    for a longer game; a game cut at max_steps gets its last segment too; float play has none."""
    agent, cell = _analog()
    ledger = EnergyLedger()
    cell.attach(ledger, "stp")
    res = play_chips(agent, 3, 3, seed=0, greedy=True, max_steps=3000, periphery=PeripheryConfig(), ledger=ledger)
    assert len(set(res.steps)) > 1 and not any(res.truncated)  # games of different lengths: several segments
    totals = {k: float(b["total_j"]) for k, b in boundaries(ledger).items()}
    for k, total in totals.items():
        assert sum(g[k] for g in res.energy_per_game) == pytest.approx(total, rel=1e-12)
    system = [g["system"] for g in res.energy_per_game]
    assert min(system) > 0
    for i in range(3):  # same length: the same segments, the same energy; longer: more
        for j in range(3):
            if res.steps[i] == res.steps[j]:
                assert system[i] == system[j]
            elif res.steps[i] < res.steps[j]:
                assert system[i] < system[j]
    assert all("energy_j" in g for g in res.per_game(0))
    # a game cut short keeps its last segment: 2 games stopped together at 200 steps share it equally
    agent, cell = _analog()
    ledger = EnergyLedger()
    cell.attach(ledger, "stp")
    cut = play_chips(agent, 2, 1, seed=0, greedy=True, max_steps=200, periphery=PeripheryConfig(), ledger=ledger)
    assert cut.truncated == [True, True] and cut.energy_per_game[0] == cut.energy_per_game[1]
    assert 2 * cut.energy_per_game[0]["system"] == pytest.approx(float(boundaries(ledger)["system"]["total_j"]))
    assert play_chips(PongAgent(TINY), 2, 1, seed=0, greedy=True, max_steps=50).energy_per_game == []


def test_one_chip_batched_scores_match_the_sequential_path_in_float():
    torch.manual_seed(2)
    agent = PongAgent(TINY)
    batched = play_chips(agent, 3, 1, seed=7, greedy=True, max_steps=150)
    sequential = play_games(agent, 3, 7, True, 150)
    assert batched.scores == sequential.scores and batched.steps == sequential.steps
    assert batched.truncated == sequential.truncated and batched.chip == [0, 0, 0]


def test_play_chips_cli_reports_statistics_per_game_and_per_chip(tmp_path, capsys):
    out = tmp_path / "chips.json"
    assert main(["play", "--games", "4", "--chips", "2", "--max-steps", "30", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["chips"] == 2 and rep["games_per_chip"] == 2 and len(rep["chip_means"]) == 2
    assert set(rep["score"]) >= {"mean", "ci95", "min", "std", "per_game"}
    assert [g["chip"] for g in rep["per_game"]] == [0, 0, 1, 1]
    assert all(g["truncated"] for g in rep["per_game"]) and rep["truncated_games"] == [0, 1, 2, 3]
    assert rep["agent_steps"] == 4 * 30
    # which state of the checkpoint file was played: its bytes' SHA-256 and its training counters
    assert rep["checkpoint_sha256"] == hashlib.sha256(open(rep["checkpoint"], "rb").read()).hexdigest()
    assert rep["checkpoint_counters"] == load_checkpoint(rep["checkpoint"])["counters"]
    assert rep["checkpoint_counters"]["steps"] > 0
    e = rep["energy_per_game_j"]
    assert 0 < e["synapse_only"] <= e["array"] <= e["system"]
    assert e["array"] * 4 == pytest.approx(rep["energy"]["array"]["total_j"], rel=1e-9)
    spread = rep["energy_per_game_spread_j"]  # the games' own energies: equal here (all cut together)
    assert spread["system"]["mean"] == pytest.approx(e["system"]) and spread["system"]["std"] == pytest.approx(0, abs=1e-15)
    assert [g["energy_j"]["system"] for g in rep["per_game"]] == pytest.approx([e["system"]] * 4)
    text = capsys.readouterr().out
    assert "cut short" in text
    b1 = rep["gpu_tiers"]["measured_b1"]  # the shipped H200 measurement beside the chip (docs/paper-energy.md §2.3)
    assert b1["total_j"] == pytest.approx(120 * b1["j_per_step"]) and b1["gpu"] == "NVIDIA H200"
    assert f"{b1['total_j'] / 4 / e['system']:.4g}x the system" in text
    from stoxbar.studies.report import check_play_report

    check_play_report(rep, out)  # the report tools read it as any `stoxbar play --json` report
    # batched play uses every core by default, for torch and for the emulators; the threads change no
    # result (the same games, the same draws, the same sums)
    out2 = tmp_path / "chips-1thread.json"
    assert main(["play", "--games", "4", "--chips", "2", "--max-steps", "30", "--threads", "1", "--env-threads", "1",
                 "--json", str(out2)]) == 0
    rep2 = json.loads(out2.read_text())
    assert rep["threads"] == rep["env_threads"] == (os.cpu_count() or 1) and rep2["threads"] == rep2["env_threads"] == 1
    skip = ("command", "wall_seconds", "threads", "env_threads")
    assert {k: v for k, v in rep.items() if k not in skip} == {k: v for k, v in rep2.items() if k not in skip}


@pytest.mark.parametrize("argv, text", [
    (["--games", "5", "--chips", "2"], "--games = 5, --chips = 2: --games must be a multiple of --chips"),
    (["--games", "4", "--chips", "0"], f"--chips = 0: allowed range is [1, {MAX_CHIPS}]"),
    (["--games", "4", "--chips", str(MAX_CHIPS + 1)], f"--chips = {MAX_CHIPS + 1}: allowed range is [1, {MAX_CHIPS}]"),
    (["--chips", "1", "--sticky", "1"], "--sticky = 1.0: allowed range is [0, 1)"),
    (["--chips", "1", "--torch-device", "nowhere"], "--torch-device = 'nowhere': not a usable torch device"),
    (["--torch-device", "cuda"], "--torch-device = 'cuda': only the batched chips (--chips)"),
    (["--chips", "1", "--env-threads", "0"], "--env-threads = 0: allowed range is [1, inf)"),
    # --device names the memristive device; a torch device typed there says where the torch device goes
    (["--chips", "1", "--device", "cuda:0"], "--device = 'cuda:0': that is a torch device, not a memristive device"),
    (["--device", "pcm"], "--device = 'pcm': allowed values are a registered preset"),
])
def test_play_chips_bad_input_is_one_line(argv, text, capsys):
    assert main(["play", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stoxbar play: error:") and text in err and "\n" not in err


def test_games_per_chip():
    assert check_games_chips(100, 10) == 10 and check_games_chips(3, 1) == 3


TINY_STUDY = """
name = "tiny_chips"
seeds = [0]
[base]
checkpoint = "random"
set = {{ "agent.arch" = "bottleneck", "agent.hidden" = 8, "agent.bottleneck" = 16 }}
[[grid]]
"periphery.adc.bits" = [6, 8]
[[grid]]
"agent.backend" = ["float"]
[metrics]
games = 4
chips = {chips}
max_steps = 25
mvm_error_samples = 0
"""


def test_a_tiny_study_plays_its_games_over_chips_with_statistics(tmp_path):
    from stoxbar.studies import load_study
    from stoxbar.studies.plots import make_plots
    from stoxbar.studies.runner import run_study
    from stoxbar.studies.spec import StudyError
    from stoxbar.studies.table import read_table

    path = tmp_path / "s.toml"
    path.write_text(TINY_STUDY.format(chips=3))
    with pytest.raises(StudyError, match=r"chips = 3: allowed: 0 \(automatic\) or a divisor of games = 4"):
        load_study(str(path), str(tmp_path / "bad"))
    path.write_text(TINY_STUDY.format(chips=2))
    study = load_study(str(path), str(tmp_path / "out"))
    assert run_study(study, workers=1, progress=False)["ok"] == 3
    rows = read_table(study.output / "results.csv")
    for r in rows:
        assert r["chips"] == 2 and r["games"] == 4 and r["truncated_games"] == 4
        assert r["score_ci95_lower"] <= r["score_mean"] <= r["score_ci95_upper"] and r["score_min"] <= r["score_mean"]
        rec = json.loads((study.output / "trials" / f"{r['trial_id']}.json").read_text())  # per-game records
        assert [g["env_seed"] for g in rec["per_game"]] == [0, 1, 2, 3] and [g["chip"] for g in rec["per_game"]] == [0, 0, 1, 1]
        assert sum(g["score"] for g in rec["per_game"]) / 4 == pytest.approx(r["score_mean"])
        assert all(g["steps"] == 25 and g["truncated"] for g in rec["per_game"])
        if r["agent.backend"] == "float":  # the float agent's games: no chip, so no chip columns
            assert r["energy_array_j_per_game"] in ("", None) and r["tiles"] in ("", None) and r["agent_steps"] == 100
        else:
            assert r["energy_synapse_only_j_per_game"] <= r["energy_array_j_per_game"]
            # the 4 games were all cut at 25 steps: the same segments, so their own energies are equal
            assert r["energy_system_j_per_game_std"] == pytest.approx(0.0, abs=1e-12 * r["energy_system_j_per_game"])
    written = [p.name for p in make_plots(study, study.output)]
    assert "score_mean_vs_adc.bits.png" in written or any(n.startswith("score_mean_vs_") for n in written)


def test_chips_on_the_torch_path_match_the_native_kernels(monkeypatch):
    """The torch ops (what another torch device runs) give the native path's outputs and energy."""
    from stoxbar.core import native
    from stoxbar.crossbar import flush_events

    def run(kernels: bool):
        monkeypatch.setattr(native, "_state", {} if kernels else {"module": None, "error": "test"})
        agent, cell = _chips(seed=6, chips=2, per_chip=2)
        ledger = EnergyLedger()
        cell.attach(ledger, "stp")
        state = agent.initial_state(4)
        torch.manual_seed(9)
        obs = torch.randint(0, 255, (4, 1, 84, 84), dtype=torch.uint8)
        with torch.no_grad():
            for _ in range(3):
                logits, _, state = agent(obs, state)
        flush_events(agent)
        return logits, cell.chip.g_st.clone(), ledger.by_component(layer="stp")

    got, ref = run(False), run(True)
    assert torch.allclose(got[0], ref[0], rtol=1e-4, atol=1e-5) and torch.allclose(got[1], ref[1], atol=1e-12)
    assert got[2].keys() == ref[2].keys()
    for comp, j in ref[2].items():
        assert got[2][comp] == pytest.approx(j, rel=1e-4), comp
