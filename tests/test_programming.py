"""Long-term programming modes and chips whose device differs from the trained one."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from stoxbar.crossbar import EnergyLedger
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import dynamics, presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.stpn.analog import AnalogMSTPNCell
from stoxbar.core.validation import ConfigError


def _program_error(device, mode: str, seed: int = 0) -> tuple[float, float, float]:
    torch.manual_seed(seed)
    w = torch.rand(32, 300, generator=torch.Generator().manual_seed(1)) * 2 - 1
    st = CrossbarState([300], 32, device)
    pulses, energy = st.program(w, mode)
    err = (st.from_tiled(st.weights()) - w).abs()
    g = torch.cat([st.g_pos.flatten(), st.g_neg.flatten()])
    assert float(g.min()) >= device.g_min_s * (1 - 1e-6) and float(g.max()) <= device.g_max_s * (1 + 1e-6)  # float32
    assert math.isclose(energy, pulses * device.lt_pulse_energy_j, rel_tol=1e-6)
    return float(err.max()), float(err.pow(2).mean().sqrt()), pulses


def test_ltp_pulses_for_inverts_the_mean_pulse_model():
    dev = replace(presets.sto_2024(), lt_c2c_std=0.0, lt_d2d_std=0.0)
    g = dev.g_min_s + torch.rand(1000, dtype=torch.float64) * dev.g_range_s
    n = dynamics.ltp_pulses_for(g, dev)
    assert bool((n >= 0).all()) and bool((n == n.round()).all())
    reached, _ = dynamics.apply_long_term(torch.full_like(g, dev.g_min_s), n, dev)
    # within one pulse step of the target (the steepest step is at g_min)
    assert float((reached - g).abs().max()) < math.exp(dev.lt_nonlinearity / 2) * dev.lt_dg_s
    with pytest.raises(ConfigError, match="g_target"):
        dynamics.ltp_pulses_for(torch.tensor([dev.g_max_s * 2]), dev)


def test_open_loop_programming_error_grows_with_device_spread():
    base = presets.sto_2024()
    exact, _, pulses_wv = _program_error(base, "write_verify")
    assert exact < 1e-6  # write-verify lands on target
    quiet, _, _ = _program_error(replace(base, lt_c2c_std=0.0, lt_d2d_std=0.0), "open_loop")
    assert quiet < 0.05  # only whole-pulse quantisation left
    rms = [_program_error(replace(base, lt_c2c_std=0.0, lt_d2d_std=s), "open_loop")[1] for s in (0.1, 0.3, 0.6)]
    assert rms[0] < rms[1] < rms[2]
    rms_c2c = [_program_error(replace(base, lt_d2d_std=0.0, lt_c2c_std=s), "open_loop")[1] for s in (0.1, 0.6)]
    assert rms_c2c[0] < rms_c2c[1]
    with pytest.raises(ConfigError, match="programming"):
        PeripheryConfig(programming="closed")


def test_chip_with_narrower_tau_range_realises_the_nearest_tau():
    trained = presets.sto_2024()
    chip = replace(trained, tau_max_s=1.0)
    torch.manual_seed(0)
    cell = AnalogMSTPNCell(20, 4, trained, 4 / 60, PeripheryConfig(), chip_device=chip)
    cell.program()
    tau_wanted = cell.tau_s().detach().double()
    assert float(tau_wanted.max()) > 1.0  # the trained taus reach beyond the chip's range
    v = cell.v_bias().double()
    assert float(v.min()) >= chip.v_bias_min_v - 1e-6 and float(v.max()) <= chip.v_bias_max_v + 1e-6  # float32
    realised = torch.as_tensor(chip.tau_s(v))
    assert torch.allclose(realised, tau_wanted.clamp(chip.tau_min_s, chip.tau_max_s), rtol=1e-4)
    # the tiles decay at the chip's tau: after one step F is multiplied by exp(-dt / tau_realised)
    cell.attach(EnergyLedger())
    cell.initial_state(1)
    cell.chip.g_st.fill_(1e-9)
    cell.array.decay(cell.dt_s)
    lam = cell.chip.from_tiled(cell.chip.g_st[0]).double() / 1e-9
    assert torch.allclose(lam, torch.exp(-cell.dt_s / realised), rtol=1e-4)
