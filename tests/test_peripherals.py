"""Tests of stoxbar.peripherals: validation, scaling laws, aihwkit IO, GPU baseline; and the one cost
model (stoxbar.crossbar.costs) on synthetic full-scale reads: event counts, latency, area."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stoxbar.peripherals.adc import ADC, schreier_energy_j, walden_energy_j
from stoxbar.crossbar.costs import area, cost, full_scale_read
from stoxbar.devices import presets
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.peripherals.dac import DAC
from stoxbar.peripherals.digital import DigitalPeriphery
from stoxbar.peripherals.drivers import BiasDriver, RowDriver, WriteDriver
from stoxbar.peripherals.gpu_baseline import GPUSpec, dense_layer_cost
from stoxbar.stpn.gpu_cost import stpn_step_cost
from stoxbar.peripherals.sense import TIA, SampleHold
from stoxbar.core.validation import ConfigError

DEV = presets.sto_2024()


def event_counts(p, rows, cols):
    """Counts per component of one full-scale read of one vector (the one cost model)."""
    return {k: n for k, (n, _) in cost(full_scale_read(p, DEV, rows, cols), DEV, p).parts.items()}


def event_costs(p, rows, cols):
    """Energy (J) per component of one full-scale read of one vector."""
    return cost(full_scale_read(p, DEV, rows, cols), DEV, p).by_component()


def mvm_latency_s(p, rows, cols):
    return cost(full_scale_read(p, DEV, rows, cols), DEV, p).latency_s


def tile_area_m2(p):
    return area(1, p)


# ---- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("factory, field", [
    (lambda: DAC(bits=0), "dac.bits"),
    (lambda: DAC(bits=17), "dac.bits"),
    (lambda: DAC(bits=True), "dac.bits"),
    (lambda: DAC(mode="thermometer"), "dac.mode"),
    (lambda: DAC(v_read_v=0.0), "dac.v_read_v"),
    (lambda: ADC(bits=0), "adc.bits"),
    (lambda: ADC(bits=17), "adc.bits"),
    (lambda: ADC(sample_rate_hz=-1.0), "adc.sample_rate_hz"),
    (lambda: ADC(tech_node_nm=float("nan")), "adc.tech_node_nm"),
    (lambda: ADC(share=0), "adc.share"),
    (lambda: RowDriver(c_per_cell_f=-1e-16), "row_driver.c_per_cell_f"),
    (lambda: WriteDriver(c_wire_f=-1e-15), "write_driver.c_wire_f"),
    (lambda: BiasDriver(efficiency=0.0), "bias_driver.efficiency"),
    (lambda: TIA(power_w=-1.0), "tia.power_w"),
    (lambda: SampleHold(t_hold_s=0.0), "sample_hold.t_hold_s"),
    (lambda: DigitalPeriphery(tanh_segments=1), "digital.tanh_segments"),
    (lambda: PeripheryConfig(tile_rows=4096), "tile_rows"),
    (lambda: PeripheryConfig(tile_cols=0), "tile_cols"),
    (lambda: PeripheryConfig(tile_cols=1025), "tile_cols"),
    (lambda: PeripheryConfig(tile_cols=2048, signed_mapping="reference"), "tile_cols"),
    (lambda: PeripheryConfig(signed_mapping="offset"), "signed_mapping"),
    (lambda: PeripheryConfig(adc=ADC(share=3)), "adc.share"),
    (lambda: PeripheryConfig(dac=DAC(bits=1)), "dac.bits"),
    (lambda: PeripheryConfig(adc="8 bit"), "adc"),
    (lambda: PeripheryConfig(out_noise=-0.1), "out_noise"),
    (lambda: PeripheryConfig(bound_management="shift"), "bound_management"),
    (lambda: GPUSpec(utilisation=0.0), "utilisation"),
])
def test_validation_names_field(factory, field):
    with pytest.raises(ConfigError) as err:
        factory()
    assert str(err.value).startswith(field + " = ")


def test_the_tile_limit_holds_for_physical_lines():
    """A differential output is two wires: 1024 outputs fill 2048 physical columns, 1025 do not fit."""
    assert PeripheryConfig(tile_rows=2048, tile_cols=1024).tile_cols == 1024
    with pytest.raises(ConfigError, match=r"tile_cols = 1025: a differential tile has 2050 physical columns.*\[1, 1024\]"):
        PeripheryConfig(tile_cols=1025)
    with pytest.raises(ConfigError, match=r"reference tile has 2049 physical columns.*\[1, 2047\]"):
        PeripheryConfig(tile_cols=2048, signed_mapping="reference")


def test_share_must_divide_adc_columns_and_message_lists_allowed():
    with pytest.raises(ConfigError, match=r"adc.share = 6.*512 ADC columns.*allowed"):
        PeripheryConfig(tile_cols=256, adc=ADC(share=6))
    # analog subtraction: 256 converted columns; reference+digital: 257 (prime)
    assert PeripheryConfig(tile_rows=256, tile_cols=256, subtraction="analog", adc=ADC(share=256)).adcs_per_tile == 1
    with pytest.raises(ConfigError, match="adc.share"):
        PeripheryConfig(tile_rows=256, tile_cols=256, signed_mapping="reference", adc=ADC(share=2))
    assert PeripheryConfig(tile_rows=256, tile_cols=256, signed_mapping="reference", adc=ADC(share=257)).adcs_per_tile == 1


def test_active_block_larger_than_tile_rejected():
    p = PeripheryConfig(tile_rows=64, tile_cols=32)
    with pytest.raises(ConfigError, match="rows"):
        event_costs(p, 65, 32)
    with pytest.raises(ConfigError, match="cols"):
        event_costs(p, 64, 33)


# ---- ADC ----------------------------------------------------------------------------------------
def test_adc_isaac_calibration_8bit_32nm():
    e = ADC(bits=8, tech_node_nm=32).energy_per_conversion_j
    assert 1.5e-12 <= e <= 2.0e-12  # ISAAC 1.56 pJ (docs/peripherals-energy.md §1)
    assert ADC(bits=8).area_m2 == pytest.approx(1200e-12)


@pytest.mark.parametrize("bits", range(2, 8))
def test_adc_walden_regime_doubles_per_bit(bits):
    lo, hi = ADC(bits=bits), ADC(bits=bits + 1)
    assert lo.regime == hi.regime == "walden"
    assert hi.energy_per_conversion_j / lo.energy_per_conversion_j == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("bits", range(10, 16))
def test_adc_schreier_regime_quadruples_per_bit(bits):
    lo, hi = ADC(bits=bits), ADC(bits=bits + 1)
    assert lo.regime == hi.regime == "schreier"
    # 6.02 dB per bit -> 10**0.602 = 3.999
    assert hi.energy_per_conversion_j / lo.energy_per_conversion_j == pytest.approx(4.0, rel=1e-3)


def test_adc_model_is_max_of_fom_bounds_and_tech_scaling():
    with pytest.raises(ConfigError, match=r"adc.bits = 1.*\[2, 16\]"):  # one range: ADC = PeripheryConfig (issue 12)
        ADC(bits=1)
    for b in range(2, 17):
        a = ADC(bits=b)
        assert a.energy_per_conversion_j == pytest.approx(max(walden_energy_j(b), schreier_energy_j(b)))
    # node**1.88 reproduces the accelergy-adc-plug-in ratios (22 nm 0.85/1.71, 65 nm 6.5/1.71)
    e32 = ADC(tech_node_nm=32).energy_per_conversion_j
    assert ADC(tech_node_nm=22).energy_per_conversion_j / e32 == pytest.approx(0.85 / 1.71, rel=0.03)
    assert ADC(tech_node_nm=65).energy_per_conversion_j / e32 == pytest.approx(6.5 / 1.71, rel=0.03)
    assert ADC(tech_node_nm=65, tech_scaling_exponent=0.0).energy_per_conversion_j == pytest.approx(e32)


def test_adc_sharing_changes_latency_and_area_not_conversions():
    rows, cols = 200, 100
    ps = [PeripheryConfig(tile_rows=256, tile_cols=256, adc=ADC(share=s)) for s in (1, 8, 64, 512)]
    counts = [event_counts(p, rows, cols)["adc"] for p in ps]
    costs = [event_costs(p, rows, cols)["adc"] for p in ps]
    lat = [mvm_latency_s(p, rows, cols) for p in ps]
    area = [tile_area_m2(p)["adc"] for p in ps]
    assert len(set(counts)) == 1 and counts[0] == 2 * cols  # differential, digital subtraction
    assert costs == pytest.approx([costs[0]] * len(costs))
    assert all(a < b for a, b in zip(lat, lat[1:]))
    assert all(a > b for a, b in zip(area, area[1:]))
    assert [p.adcs_per_tile for p in ps] == [512, 64, 8, 1]
    # 512 columns through one 1.28 GS/s ADC: 200 active-column conversions in turn
    assert ps[-1].adc.readout_latency_s(200, n_adcs=1) == pytest.approx(200 / 1.28e9)


# ---- DAC -----------------------------------------------------------------------------------------
def test_dac_bit_serial_energy_linear_in_bits():
    one = DAC(mode="bit_serial", bits=1).energy_per_input_j
    assert one == pytest.approx(0.39e-12, rel=0.01)  # ISAAC: 0.39 pJ per row per 100 ns cycle
    for b in range(1, 17):
        d = DAC(mode="bit_serial", bits=b)
        assert d.energy_per_input_j == pytest.approx(b * one)
        assert d.energy_per_conversion_j == pytest.approx(one)
        assert d.passes_per_mvm == b and d.latency_per_input_s == pytest.approx(b * 100e-9)


@pytest.mark.parametrize("mode", ["multibit", "pwm"])
def test_dac_multibit_and_pwm_double_per_bit_one_conversion(mode):
    for b in range(1, 16):
        lo, hi = DAC(mode=mode, bits=b), DAC(mode=mode, bits=b + 1)
        assert hi.energy_per_input_j / lo.energy_per_input_j == pytest.approx(2.0)
        assert lo.passes_per_mvm == 1
    assert DAC(mode="multibit", bits=4).power_w == pytest.approx(31.2e-6)  # MNSIM DAC_power_dict
    assert DAC(mode="multibit", bits=8).area_m2 == pytest.approx(21.248e-12)  # MNSIM DAC_area_dict
    assert DAC(mode="pwm", bits=8).read_window_s == pytest.approx(128e-9)


# ---- drivers, sense, digital --------------------------------------------------------------------
def test_row_driver_energy_linear_in_cells_and_quadratic_in_voltage():
    d = RowDriver()
    e = [d.energy_j(n, 0.5) for n in (0, 100, 200, 300)]
    assert e[0] == pytest.approx(d.c_wire_f * 0.25)
    assert e[2] - e[1] == pytest.approx(e[1] - e[0]) == pytest.approx(e[3] - e[2])
    assert e[1] - e[0] == pytest.approx(100 * d.c_per_cell_f * 0.25)
    assert d.energy_j(100, 1.0) == pytest.approx(4 * d.energy_j(100, 0.5))


def test_write_and_bias_driver_overheads():
    w = WriteDriver()
    assert w.short_term_pulse_j(1.0, 10) == pytest.approx(w.line_capacitance_f(10) + w.e_fixed_short_j)
    assert w.long_term_pulse_j(2.0, 0) == pytest.approx(4 * w.c_wire_f + w.e_fixed_long_j)
    b = BiasDriver(efficiency=0.5, p_quiescent_w=1e-7)
    assert b.energy_j(2.0, p_load_w=1e-6, n_lines=3) == pytest.approx(2.0 * (1e-6 + 3e-7))
    assert b.energy_j(0.0, 1e-3, 10) == 0.0
    assert b.retarget_energy_j(0.6, 0.6, 100) == 0.0


def test_sense_energies():
    assert SampleHold().energy_per_sample_j() == pytest.approx(0.98e-15, rel=0.01)  # ISAAC ~1 fJ
    t = TIA()
    assert t.energy_per_sample_j(200e-9) == pytest.approx(2 * t.energy_per_sample_j())


def test_digital_horowitz_anchor_points_and_scaling():
    d = DigitalPeriphery()
    assert d.energy_j("add", 8) == pytest.approx(0.03e-12)
    assert d.energy_j("add", 32) == pytest.approx(0.1e-12)
    assert d.energy_j("mult", 8) == pytest.approx(0.2e-12)
    assert d.energy_j("mult", 32) == pytest.approx(3.1e-12)
    assert d.energy_j("fp_mult", 16) == pytest.approx(1.1e-12)
    assert d.energy_j("fp_add", 32, count=10) == pytest.approx(9e-12)
    assert d.energy_j("sram_read_64b") == pytest.approx(10e-12)
    assert d.accumulate_j(16, count=3) == pytest.approx(3 * d.energy_j("add", 16))
    assert d.tanh_j(8) == pytest.approx(5 * d.energy_j("add", 8) + d.energy_j("mult", 8))
    assert d.memory_read_j(16) == pytest.approx(2 * 10e-12)  # two 64-bit SRAM words
    assert d.memory_read_j(8, "dram") == pytest.approx(1.95e-9)
    with pytest.raises(ConfigError, match="memory"):
        d.memory_read_j(8, "flash")
    assert d.l2_normalise_j(10, 16) > 0
    with pytest.raises(ConfigError, match="bits"):
        d.energy_j("fp_add", 8)
    with pytest.raises(ConfigError, match="op"):
        d.energy_j("sqrt", 8)
    d22 = DigitalPeriphery(tech_node_nm=22.5)
    assert d22.energy_j("mult", 8) == pytest.approx(0.1e-12)  # linear rule: half at half the node


# ---- config: events, latency, area ------------------------------------------------------------
def test_event_counts_follow_the_data_flow():
    p = PeripheryConfig(tile_rows=256, tile_cols=256)
    assert event_counts(p, 100, 10) == {"dac": 100, "row_driver": 100, "cell_read": 2000, "adc": 20,
                                        "sense": 20, "digital_subtract": 10}
    pa = p.with_(subtraction="analog")
    assert event_counts(pa, 100, 10)["adc"] == 10 and "digital_subtract" not in event_counts(pa, 100, 10)
    pr = PeripheryConfig(tile_rows=256, tile_cols=256, signed_mapping="reference", adc=ADC(share=1))
    assert event_counts(pr, 100, 10)["adc"] == 11
    pb = PeripheryConfig(tile_rows=256, tile_cols=256, dac=DAC(mode="bit_serial", bits=6), subtraction="analog")
    n = event_counts(pb, 100, 10)
    # dac counts input values (each one 6 one-bit conversions, costed in energy_per_input_j)
    assert n["adc"] == 60 and n["dac"] == 100 and n["row_driver"] == 600 and n["digital_accum"] == 50
    e = event_costs(pb, 100, 10)
    assert e["adc"] == pytest.approx(60 * pb.adc.energy_per_conversion_j)
    assert e["dac"] == pytest.approx(100 * pb.dac.energy_per_input_j)
    cells = 2 * 256  # a row line spans the full physical tile width
    assert e["row_driver"] == pytest.approx(600 * pb.row_driver.energy_j(cells, pb.dac.v_read_v))


def test_latency_pipelines_passes():
    p = PeripheryConfig(tile_rows=256, tile_cols=256, dac=DAC(mode="bit_serial", bits=4))
    read = p.row_driver.t_drive_s + 100e-9
    readout = math.ceil(p.adc_columns(256) / p.adcs_per_tile) / p.adc.sample_rate_hz
    assert mvm_latency_s(p, 256, 256) == pytest.approx(read + 3 * max(read, readout) + readout)


def test_tile_area_total_is_sum_and_helpers():
    p = PeripheryConfig(tile_rows=256, tile_cols=256)
    a = tile_area_m2(p)
    assert a["total"] == pytest.approx(sum(v for k, v in a.items() if k != "total"))
    assert a["array"] == pytest.approx(256 * 512 * p.cell_area_m2)
    assert p.with_adc_bits(6).adc.bits == 6 and p.with_dac_bits(4).dac.bits == 4
    assert p.with_adc_share(64).adc_share == 64
    assert p.with_tech_node(22).adc.tech_node_nm == 22 == p.with_tech_node(22).digital.tech_node_nm
    assert "inp_res 1/254" in p.describe()
    with pytest.raises(ConfigError, match="tile_rows"):
        p.with_tile(3000, 64)


# ---- aihwkit IOParameters --------------------------------------------------------------------------
@pytest.mark.parametrize("dac_bits, adc_bits", [(2, 2), (6, 6), (7, 9), (8, 8), (16, 12)])
def test_io_parameters_resolutions_exact(dac_bits, adc_bits):
    from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

    p = PeripheryConfig(dac=DAC(bits=dac_bits), adc=ADC(bits=adc_bits), out_noise=0.02,
                        out_bound=7.0, noise_management="constant", nm_thres=2.0,
                        bound_management="none")
    io = p.io_parameters()
    assert io.inp_res == 1.0 / (2**dac_bits - 2)
    assert io.out_res == 1.0 / (2**adc_bits - 2)
    assert io.inp_bound == 1.0 and io.out_bound == 7.0 and io.out_noise == 0.02
    assert io.bound_management == BoundManagementType.NONE
    assert io.noise_management == NoiseManagementType.CONSTANT and io.nm_thres == 2.0
    io2 = PeripheryConfig().io_parameters()
    assert io2.bound_management == BoundManagementType.ITERATIVE
    assert io2.noise_management == NoiseManagementType.ABS_MAX
    for mode in ("multibit", "bit_serial"):  # same effective input resolution in every mode
        assert PeripheryConfig(dac=DAC(mode=mode, bits=5)).io_parameters().inp_res == 1 / 30


def _mvm(p: PeripheryConfig, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    from aihwkit.simulator.tiles.analog_mvm import AnalogMVM

    return AnalogMVM.matmul(weight, x, p.io_parameters(), is_test=True)


def test_aihwkit_mvm_uses_the_configured_adc():
    torch.manual_seed(0)
    weight = torch.rand(32, 64) * 2 - 1
    x = torch.rand(256, 64) * 2 - 1
    x[:, 0] = 1.0  # max|x| = 1 -> abs_max scale 1, outputs stay on the ADC grid
    base = PeripheryConfig(dac=DAC(bits=12), out_noise=0.0, out_bound=20.0, bound_management="none")
    y_ideal = x @ weight.T
    errs = {}
    for bits in (10, 8, 6, 4):
        p = base.with_adc_bits(bits)
        y = _mvm(p, weight, x)
        step = 2 * p.out_bound / (2**bits - 2)
        grid = y / step
        assert torch.allclose(grid, grid.round(), atol=1e-3), bits  # a 6-bit ADC is a 6-bit ADC
        errs[bits] = (y - y_ideal).pow(2).mean().sqrt().item()
    assert errs[10] < errs[8] < errs[6] < errs[4]
    assert errs[6] / errs[8] > 2.5 and errs[4] / errs[6] > 2.5  # ~x4 per 2 bits


# ---- property test: no negative / NaN cost -----------------------------------------------------------
@st.composite
def periphery_configs(draw):
    dac = DAC(bits=draw(st.integers(2, 16)), mode=draw(st.sampled_from(["multibit", "pwm", "bit_serial"])),
              v_read_v=draw(st.floats(1e-3, 2.0)), t_cycle_s=draw(st.floats(1e-10, 1e-5)),
              f_pwm_hz=draw(st.floats(1e6, 1e10)))
    rows = draw(st.integers(1, 2048))
    mapping = draw(st.sampled_from(["differential", "reference"]))
    cols = draw(st.integers(1, 1024 if mapping == "differential" else 2047))  # physical lines <= 2048
    subtraction = draw(st.sampled_from(["digital", "analog"]))
    n_conv = {("differential", "digital"): 2 * cols, ("reference", "digital"): cols + 1}.get(
        (mapping, subtraction), cols)
    share = draw(st.sampled_from([d for d in (1, 2, 4, 8, 16, 32, 64, 128, n_conv) if n_conv % d == 0]))
    adc = ADC(bits=draw(st.integers(2, 16)), sample_rate_hz=draw(st.floats(1e6, 1e10)),
              tech_node_nm=draw(st.floats(3.0, 180.0)), share=share)
    return PeripheryConfig(
        dac=dac, adc=adc, tile_rows=rows, tile_cols=cols, signed_mapping=mapping,
        subtraction=subtraction, row_driver=RowDriver(c_per_cell_f=draw(st.floats(0, 1e-15))),
        tia=TIA(power_w=draw(st.floats(0, 1e-4))),
        digital=DigitalPeriphery(tech_node_nm=draw(st.floats(3.0, 180.0))),
    ), draw(st.integers(1, rows)), draw(st.integers(1, cols))


@settings(max_examples=60, deadline=None)
@given(periphery_configs())
def test_random_valid_configs_give_finite_nonnegative_costs(case):
    p, rows, cols = case
    values = list(event_costs(p, rows, cols).values()) + list(tile_area_m2(p).values())
    assert set(event_counts(p, rows, cols)) >= {"dac", "row_driver", "cell_read", "adc", "sense"}
    values.append(mvm_latency_s(p, rows, cols))
    assert all(math.isfinite(v) and v >= 0 for v in values), values
    assert p.digital.accumulate_j() >= 0


# ---- GPU baseline ---------------------------------------------------------------------------------
def test_gpu_stpn_cost_affine_in_batch_and_linear_in_size():
    e = [stpn_step_cost(64, 2656, b).energy_j for b in (1, 2, 3, 4)]
    diffs = [b - a for a, b in zip(e, e[1:])]
    assert diffs == pytest.approx([diffs[0]] * 3)  # shared W, Lambda, Gamma + per-sample F
    big = [stpn_step_cost(64, 2656, b) for b in (1000, 2000)]
    assert big[1].energy_j / big[0].energy_j == pytest.approx(2.0, rel=2e-3)
    s1, s2 = stpn_step_cost(64, 2656, 8), stpn_step_cost(128, 2656, 8)
    assert s2.bytes / s1.bytes == pytest.approx(2.0, rel=0.02) and s2.flops / s1.flops == pytest.approx(2.0, rel=1e-3)
    c = stpn_step_cost(64, 2656, 1, "fp16")
    assert c.energy_j == pytest.approx(c.dram_j + c.compute_j + c.static_j)
    assert c.bytes == pytest.approx(stpn_step_cost(64, 2656, 1).bytes / 2)
    assert c.bound == "memory" and "O'Connor" in c.assumptions()


def test_gpu_dense_layer_and_conv_override():
    d = [dense_layer_cost(64, n, 16).energy_j for n in (10, 20, 30)]
    assert d[2] - d[1] == pytest.approx(d[1] - d[0])
    conv = dense_layer_cost(1, 1, 1, flops=2e9, weight_bytes=8e3, act_bytes=0.0, label="conv")
    assert conv.flops == 2e9 and conv.bytes == 8e3 and conv.bound == "compute"
    total = conv + dense_layer_cost(64, 6)
    assert total.energy_j == pytest.approx(conv.energy_j + dense_layer_cost(64, 6).energy_j)
    spec = GPUSpec(static_power_w=0.0, utilisation=1.0)
    c = dense_layer_cost(100, 100, 1, spec=spec)
    assert c.time_s == pytest.approx(c.bytes / 1555e9)
    assert c.energy_j == pytest.approx(c.bytes * 31.2e-12 + c.flops * 2.3e-12)
