"""The volatile Ti/TiOx/TaOy/Pt device (zhong_2021): its laws, and a clear answer where the m-STPN cannot use it."""

from __future__ import annotations

import math

import pytest
import torch

from stoxbar.core.validation import ConfigError
from stoxbar.devices import get_preset
from stoxbar.devices.tiox import ZHONG_TAU_S


def test_single_exponential_decay_with_the_papers_time_constant_at_every_bias():
    d = get_preset("zhong_2021")
    assert ZHONG_TAU_S == 400e-6  # Zhong et al. 2021, Fig. 1f
    v = torch.tensor([0.0, 0.05, 0.1], dtype=torch.float64)
    assert d.tau_s(v).tolist() == [ZHONG_TAU_S] * 3
    # exponential: decay over dt1 + dt2 equals decay over dt1 then dt2; 1/e after one tau
    assert d.decay_factor(400e-6, 0.0) == pytest.approx(math.exp(-1.0), rel=1e-12)
    assert d.decay_factor(3e-4, 0.05) == pytest.approx(d.decay_factor(1e-4, 0.05) * d.decay_factor(2e-4, 0.05), rel=1e-12)
    # bias energy integral: tau (1 - exp(-dt/tau)) -> tau for dt >> tau
    assert d.decay_integral_s(1.0, 0.0) == pytest.approx(ZHONG_TAU_S, rel=1e-9)
    with pytest.raises(ConfigError, match="v_bias = 0.2"):
        d.tau_s(0.2)


def test_the_write_pulse_energy_and_step_are_pinned():
    d = get_preset("zhong_2021")
    (e,), (dg,) = d.short_term_levels()
    assert e == pytest.approx(3.0 ** 2 * 2e-6 * 1e-3, rel=1e-12)  # golden: 18 nJ for the 3.0 V, 1 ms write pulse
    assert dg == pytest.approx(2e-6, rel=1e-12)
    assert d.read_power_w(5e-6, d.v_read_v) == pytest.approx(1.9 ** 2 * 5e-6, rel=1e-12)


def test_a_learned_decay_other_than_its_own_is_refused_naming_why():
    d = get_preset("zhong_2021")
    assert float(d.v_bias_for_tau(ZHONG_TAU_S)) == 0.0
    with pytest.raises(ConfigError, match=r"tau_s = \[0.5, 2\] s: device 'zhong_2021' .* not set by a bias"):
        d.v_bias_for_tau(torch.tensor([0.5, 2.0]))


def test_it_runs_through_the_energy_command(tmp_path, capsys):
    from stoxbar.scripts.cli import main

    assert main(["energy", "--layer", "64x8", "--device", "zhong_2021", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "device zhong_2021" in out and "cell_read" in out
