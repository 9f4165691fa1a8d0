"""Evaluation that tells agents apart (issue 16 items 2 and 4): sticky actions, per-game records, score
statistics, ablations of the plasticity, and their command-line errors. Real ALE Pong, real chip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stoxbar.pong.ablate import ABLATIONS, apply_ablation, check_ablation
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.env import EVAL_STICKY, make_pong_env
from stoxbar.pong.scores import score_summary
from stoxbar.scripts.cli import main
from stoxbar.core.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)


def _frames(sticky: float, actions: np.ndarray) -> np.ndarray:
    env = make_pong_env(1, seed=11, sticky=sticky)
    try:
        obs = [env.reset()]
        for a in actions:
            obs.append(env.step(np.array([a]))[0])
    finally:
        env.close()
    return np.concatenate(obs)


def test_sticky_actions_change_the_game_and_are_reproducible():
    actions = np.random.default_rng(0).integers(0, 6, 150)
    plain, sticky, again = _frames(0.0, actions), _frames(EVAL_STICKY, actions), _frames(EVAL_STICKY, actions)
    assert np.array_equal(sticky, again)  # seeded: the same repeats
    assert not np.array_equal(plain, sticky)  # the repeats moved the paddle differently
    with pytest.raises(ConfigError, match=r"sticky = 1.0.*\[0, 1\)"):
        make_pong_env(1, sticky=1.0)


def test_score_summary_bootstrap_ci():
    s = score_summary([18, 19, 20, 1, 18, 19, 20, 18, 19, 21])
    assert s["mean"] == 17.3 and s["min"] == 1.0 and s["n"] == 10
    lo, hi = s["ci95"]["lower"], s["ci95"]["upper"]
    assert 12.0 < lo < 17.3 < hi <= 20.0  # the single bad game widens the interval downwards
    assert score_summary([18, 18])["ci95"] == {"lower": 18.0, "upper": 18.0}
    assert score_summary([5])["std"] == 0.0
    assert score_summary([1, 2, 3]) == score_summary([1, 2, 3])  # fixed bootstrap seed


def test_ablations_change_what_they_name():
    torch.manual_seed(0)
    agent = PongAgent(TINY)
    cell = agent.cell
    ckpt = {"train_config": {"arch": TINY.to_dict(), "seed": 0}}
    theta0, gam0 = cell.theta.detach().clone(), cell.gam.detach().clone()
    with torch.no_grad():
        cell.theta.add_(0.3)  # "trained"
    trained = cell.theta.detach().clone()
    apply_ablation(agent, "tau_frozen_init", ckpt)
    torch.manual_seed(0)
    assert torch.equal(cell.theta, PongAgent(TINY).cell.theta)  # the seed's initialisation
    assert torch.equal(cell.theta, theta0)
    with torch.no_grad():
        cell.theta.copy_(trained)
    apply_ablation(agent, "tau_shuffled")
    assert not torch.equal(cell.theta, trained)
    assert torch.equal(cell.theta.flatten().sort().values, trained.flatten().sort().values)
    apply_ablation(agent, "tau_min")
    assert torch.allclose(cell.tau_s(), torch.full_like(cell.theta, cell.tau_min_s), rtol=1e-5)
    apply_ablation(agent, "tau_max")
    assert torch.allclose(cell.tau_s(), torch.full_like(cell.theta, cell.tau_max_s), rtol=1e-5)
    cell.v_bias()  # the extremes are biases the device can hold
    with torch.no_grad():
        cell.gam.mul_(3.0)  # "trained"
    apply_ablation(agent, "gamma_frozen_init", ckpt)
    assert torch.equal(cell.gam, gam0) and torch.equal(cell.theta, torch.full_like(cell.theta, 40.0))  # only Gamma
    apply_ablation(agent, "gamma0")
    assert float(cell.gam.detach().abs().max()) == 0.0 and float(gam0.abs().max()) > 0
    x, state = torch.randn(2, 16), cell.initial_state(2)
    _, (h, F) = cell(x, (torch.randn(2, 8), state[1]))
    assert float(F.detach().abs().max()) == 0.0  # no pulses
    apply_ablation(agent, "no_h_feedback")
    zh = cell.presynaptic(x, torch.ones(2, 8))
    assert float(zh[:, 16:].abs().max()) == 0.0 and float(zh[:, :16].abs().max()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no_h_feedback': this agent has no h feedback to cut"):
        apply_ablation(agent, "no_h_feedback")  # nothing left to cut: not a silent replay of the intact agent
    # the float STPN: Gamma and its free decay factor Lambda (no device time constant)
    stpn_arch = dataclasses.replace(TINY, cell="stpn")
    torch.manual_seed(3)
    stpn = PongAgent(stpn_arch)
    lam0, sgam0 = stpn.cell.lam.detach().clone(), stpn.cell.gam.detach().clone()
    with torch.no_grad():
        stpn.cell.lam.mul_(0.5)  # "trained"
        stpn.cell.gam.mul_(2.0)
    trained = stpn.cell.lam.detach().clone()
    apply_ablation(stpn, "tau_shuffled")
    assert torch.equal(stpn.cell.lam.flatten().sort().values, trained.flatten().sort().values)
    assert not torch.equal(stpn.cell.lam, trained)
    apply_ablation(stpn, "tau_frozen_init", {"train_config": {"arch": stpn_arch.to_dict(), "seed": 3}})
    assert torch.equal(stpn.cell.lam, lam0)  # the seed's initialisation
    apply_ablation(stpn, "gamma_frozen_init", {"train_config": {"arch": stpn_arch.to_dict(), "seed": 3}})
    assert torch.equal(stpn.cell.gam, sgam0) and torch.equal(stpn.cell.lam, lam0)
    apply_ablation(stpn, "tau_min")
    assert float(stpn.cell.lam.detach().abs().max()) == 0.0
    apply_ablation(stpn, "tau_max")
    assert bool((stpn.cell.lam == 1.0).all())
    apply_ablation(stpn, "gamma0")
    assert float(stpn.cell.gam.detach().abs().max()) == 0.0
    with pytest.raises(ConfigError, match="'no_h_feedback': needs an m-STPN agent"):
        apply_ablation(stpn, "no_h_feedback")
    recurrent = PongAgent(dataclasses.replace(TINY, plastic=False))  # Gamma fixed at 0: nothing plastic to ablate
    for name in ("gamma0", "tau_shuffled", "tau_min"):
        with pytest.raises(ConfigError, match=f"'{name}': this agent has no plasticity to ablate.*allowed: none, "
                                              "no_h_feedback"):
            apply_ablation(recurrent, name)
    apply_ablation(recurrent, "no_h_feedback")
    assert recurrent.cell.h_feedback is False
    for name in ("tau_frozen_init", "gamma_frozen_init"):
        with pytest.raises(ConfigError, match=f"{name}.*train_config"):
            apply_ablation(agent, name, {})
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(ABLATIONS)):
        check_ablation("gamma_0")


def test_frozen_init_follows_the_fine_tune_chain_to_the_run_from_scratch(tmp_path):
    """A fine-tuned agent's "initialisation" is that of the run that trained it from scratch (its seed), not the
    checkpoint the last fine-tune started from; a chain with a loop or a missing file is a one-line error."""
    from stoxbar.pong.a2c import TrainConfig
    from stoxbar.pong.checkpoint import find_checkpoint
    from stoxbar.pong.checkpoint import save_checkpoint

    def stage(name, seed, init_from, shift):
        torch.manual_seed(seed)
        agent = PongAgent(TINY)
        with torch.no_grad():
            agent.cell.theta.add_(shift)  # "trained": each stage's theta differs from every seed's draw
            agent.cell.gam.mul_(1.0 + shift)
        cfg = dataclasses.asdict(TrainConfig(arch=TINY, seed=seed, init_from=init_from))
        cfg["arch"] = TINY.to_dict()
        return save_checkpoint(tmp_path / name, agent, train_config=cfg), agent

    root, _ = stage("root.pt", 5, "", 0.1)
    mid, _ = stage("mid.pt", 6, str(root), 0.2)
    top, agent = stage("top.pt", 7, str(mid), 0.3)
    torch.manual_seed(5)
    fresh = PongAgent(TINY).cell  # the root run's seed: the chain's initialisation
    ckpt = torch.load(top, weights_only=True)
    rng = torch.get_rng_state()
    apply_ablation(agent, "tau_frozen_init", ckpt)
    assert torch.equal(agent.cell.theta, fresh.theta)
    apply_ablation(agent, "gamma_frozen_init", ckpt)
    assert torch.equal(agent.cell.gam, fresh.gam)
    assert torch.equal(torch.get_rng_state(), rng)  # the chip's draws after it are those of any other ablation
    selfref, _ = stage("self.pt", 8, str(tmp_path / "self.pt"), 0.1)  # a file naming itself (a run copied over
    with pytest.raises(ConfigError, match=r"tau_frozen_init.*init_from chain loops at .*self.pt"):  # its start)
        apply_ablation(agent, "tau_frozen_init", torch.load(selfref, weights_only=True))
    gone = dict(ckpt, train_config=dict(ckpt["train_config"], init_from=str(tmp_path / "nowhere.pt")))
    with pytest.raises(ConfigError, match=r"init_from = .*nowhere.pt.*no such checkpoint"):
        apply_ablation(agent, "gamma_frozen_init", gone)
    # a fine-tune that recorded its lineage (init_root_seed) needs no chain: its start may be gone
    recorded = dict(gone, train_config=dict(gone["train_config"], init_root_seed=5))
    with torch.no_grad():
        agent.cell.theta.add_(1.0)
    apply_ablation(agent, "tau_frozen_init", recorded)
    assert torch.equal(agent.cell.theta, fresh.theta)
    unknown = dict(gone, train_config=dict(gone["train_config"], init_root_seed=-1, init_from=str(top),
                                           init_sha256="0" * 64))
    with pytest.raises(ConfigError, match="init_sha256 = '0+': the start file .*top.pt changed"):
        apply_ablation(agent, "tau_frozen_init", unknown)
    # a path written on another machine: its tail under this repository
    moved = "/elsewhere/checkout/pong/checkpoints/pong_mstpn_a2c/checkpoint.pt"
    assert find_checkpoint(moved) == (ROOT / "pong/checkpoints/pong_mstpn_a2c/checkpoint.pt").resolve()


def test_play_reports_per_game_records_and_statistics(tmp_path, capsys):
    out = tmp_path / "play.json"
    assert main(["play", "--games", "2", "--max-steps", "40", "--ablate", "no_h_feedback", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["sticky"] == 0.25 and rep["ablate"] == "no_h_feedback"
    assert len(rep["checkpoint_sha256"]) == 64 and rep["checkpoint_counters"]["update"] > 0  # the state played
    assert set(rep["score"]) >= {"mean", "ci95", "min", "per_game", "std"}
    assert set(rep["score"]["ci95"]) == {"lower", "upper"}
    games = rep["per_game"]
    assert [g["steps"] for g in games] == [40, 40] and all(g["truncated"] for g in games)
    for g in games:
        assert set(g["energy_j"]) == {"synapse_only", "array", "system"}
    total = sum(g["energy_j"]["array"] for g in games)
    assert total == pytest.approx(rep["energy"]["array"]["total_j"], rel=1e-9)
    sp = rep["energy_per_game_spread_j"]["array"]  # the spread of the games' own energies, as the batched path
    assert sp["mean"] == pytest.approx(total / 2) and sp["min"] <= sp["mean"] <= sp["max"] and sp["std"] >= 0
    assert sp["min"] == pytest.approx(min(g["energy_j"]["array"] for g in games))
    # the digital-accelerator baseline beside the GPU tiers (issue 18.1): 80 steps of its per-step cost
    d = rep["gpu_tiers"]["digital"]
    assert d["total_j"] == pytest.approx(80 * d["j_per_step"], rel=1e-12) and d["mac_bits"] == 8
    text = capsys.readouterr().out
    assert "95 % CI" in text and "vs digital" in text and "digital accelerator" in text
    assert "array         per game: std" in text


@pytest.mark.parametrize("argv, text", [
    (["--sticky", "1"], "--sticky = 1.0: allowed range is [0, 1)"),
    (["--sticky", "-0.5"], "--sticky = -0.5: allowed range is [0, 1)"),
    (["--ablate", "gamma"], "--ablate = 'gamma': unknown ablation; allowed: none, gamma0,"),
])
def test_play_bad_sticky_or_ablation_is_one_line(argv, text, capsys):
    assert main(["play", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stoxbar play: error:") and text in err and "\n" not in err


def test_study_ablation_path_and_sticky_are_validated(tmp_path):
    from stoxbar.studies import load_study
    from stoxbar.studies.spec import StudyError

    study = load_study("plasticity_ablation")
    assert study.metrics.sticky == 0.25
    assert sorted(p["agent.ablate"] for _, p in study.points) == sorted(ABLATIONS * 2)
    assert [p.get("agent.backend", "chip") for _, p in study.points] == ["chip"] * 8 + ["float"] * 8
    body = ('name = "a"\nseeds = [0]\n[base]\ncheckpoint = "shipped"\n[[grid]]\n"agent.ablate" = [{v}]\n'
            '[metrics]\ngames = 1\nmvm_error_samples = 0\nsticky = {s}\n')
    path = tmp_path / "a.toml"
    path.write_text(body.format(v='"gamma"', s=0.25))
    with pytest.raises(StudyError, match="agent.ablate = 'gamma': unknown ablation; allowed: none, gamma0"):
        load_study(str(path))
    path.write_text(body.format(v='"gamma0"', s=1.0))
    with pytest.raises(StudyError, match=r"sticky = 1.0: allowed range is \[0, 1\)"):
        load_study(str(path))
    path.write_text(body.format(v='"gamma0"', s=0.25).replace('[metrics]', '"agent.backend" = ["analog"]\n[metrics]'))
    with pytest.raises(StudyError, match="agent.backend = 'analog': unknown backend; allowed: chip, float"):
        load_study(str(path))


def test_compare_pairs_two_play_reports_game_by_game(tmp_path, capsys):
    """``stoxbar compare A.json B.json``: the intact agent against its gamma0 ablation on the same game seeds, the
    paired difference checked against the reports' own per-game scores; reports of another protocol, a missing
    file and an existing --json are one line each."""
    a, b, c = (str(tmp_path / f"{n}.json") for n in "abc")
    for path, extra in ((a, []), (b, ["--ablate", "gamma0"]), (c, ["--sticky", "0"])):
        assert main(["play", "--games", "3", "--max-steps", "150", "--json", path, *extra]) == 0
    capsys.readouterr()
    out = str(tmp_path / "cmp.json")
    assert main(["compare", a, b, "--json", out]) == 0
    text = capsys.readouterr().out
    rep = json.loads(open(out).read())
    ga, gb = ({g["env_seed"]: g for g in json.loads(open(p).read())["per_game"]} for p in (a, b))
    diffs = [ga[s]["score"] - gb[s]["score"] for s in (0, 1, 2)]
    assert rep["pairs"] == 3 and rep["env_seeds"] == [0, 1, 2] and rep["protocol"]["sticky"] == 0.25
    assert rep["difference"]["mean"] == pytest.approx(sum(diffs) / 3) and rep["b"]["ablate"] == "gamma0"
    assert rep["difference"]["better"] + rep["difference"]["worse"] + rep["difference"]["equal"] == 3
    sys_a = sum(ga[s]["energy_j"]["system"] for s in (0, 1, 2)) / 3
    assert rep["energy_per_game_j"]["system"]["a"] == pytest.approx(sys_a, rel=1e-12)
    assert "A - B, paired over 3 games (env seeds 0-2" in text and "energy per game, system" in text
    # golden: the committed interim ablation of the PPO comparison's STP-only agent (its NOTES.md: paired loss
    # 4.60 [2.55, 6.60] over 20 games, 15 better, 3 worse, 2 equal)
    from stoxbar.studies.compare import compare_play_reports

    interim = ROOT / "studies" / "results" / "comparison_ppo_interim"
    g = compare_play_reports(str(interim / "stp_only_seed0.json"), str(interim / "stp_only_seed0_gamma0.json"))
    d = g["difference"]
    assert (g["pairs"], d["better"], d["worse"], d["equal"]) == (20, 15, 3, 2)
    assert (d["mean"], d["ci95"]["lower"], d["ci95"]["upper"]) == pytest.approx((4.60, 2.55, 6.60), abs=1e-9)
    for argv, msg in ([a, c], "sticky = 0.25 vs 0.0; a paired comparison needs the same protocol"), \
                     ([a, str(tmp_path / "none.json")], "none.json"), ([a, b, "--json", out], "--json"):
        assert main(["compare", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("stoxbar compare: error:") and msg in err and "\n" not in err
