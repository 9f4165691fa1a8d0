"""Native kernels (csrc/) against their torch paths: one short-term step, one quantiser, the fast read."""

from __future__ import annotations

import glob
import math
import os

import pytest
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

from stoxbar.core import native
from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger, flush_events, fused
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import dynamics, presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.stpn.analog import AnalogMSTPNCell
from stoxbar.stpn.cells import MSTPNCell, mstpn_plastic_reference

DT = 4 / 60
BUILT = bool(glob.glob(os.path.join(os.path.dirname(native.__file__), "_native*.so")))
needs_native = pytest.mark.skipif(not native.available(), reason=f"native kernels not built: {native.why_unavailable()}")


@pytest.fixture
def torch_path(monkeypatch):
    """Run the block with the native kernels unavailable (the fallback a user without a build gets)."""
    def use(flag: bool):
        monkeypatch.setattr(native, "_state", {"module": None, "error": "test"} if flag else {})
    return use


def test_built_extension_loads():
    if BUILT and os.environ.get("STOXBAR_NO_KERNEL", "") in ("", "0"):
        assert native.available(), native.why_unavailable()
    if native.available():
        assert {"short_term_step", "mstpn_forward", "mstpn_backward", "stpn_forward", "stpn_backward",
                "io_mvm"} <= set(dir(native.extension()))


def _step_inputs(dtype, rows=(7, 6), o=5, b=3, seed=0, levels=None):
    dev = presets.sto_2024()
    g = torch.Generator().manual_seed(seed)
    t, x = len(rows), max(rows)
    mask = (torch.arange(x)[None, :] < torch.tensor(rows)[:, None]).unsqueeze(1).to(dtype)  # [T, 1, X]
    lam = (0.9 + 0.1 * torch.rand(t, o, x, generator=g, dtype=dtype)) * mask
    per_st = torch.rand(t, o, x, generator=g, dtype=dtype) * 1e-3 * mask
    gam = (torch.rand(t, o, x, generator=g, dtype=dtype) * 2 - 1) * 0.1 * mask
    sign = torch.randint(0, 2, (b, t, o, x), generator=g).to(dtype) * 2 - 1
    f0 = sign * (0.9 + 0.1 * torch.rand(b, t, o, x, generator=g, dtype=dtype)) * dev.st_g_max_s * mask  # near the window
    dg, _, thr = dynamics.short_term_tables(dev, f0)
    if levels is not None:  # another pulse table over the same range: ``levels`` levels
        thr = torch.linspace(float(thr[0]), float(thr[-1]), levels, dtype=dtype)
        dg = torch.cat([dg[:1], torch.linspace(float(dg[1]), float(dg[-1]), levels, dtype=dtype)])
    return dev, torch.tensor(rows), lam, per_st, gam, f0, dg, thr, g


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hold_bias", [False, True])
@pytest.mark.parametrize("levels", [None, 1, 11])  # the device's 4, one, eleven
def test_short_term_step_native_equals_torch_path(dtype, hold_bias, levels, torch_path):
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(dtype, levels=levels)
    states = [f0.clone(), f0.clone()]
    for _ in range(5):
        post = torch.rand(3, 5, generator=g, dtype=dtype) * 2 - 1
        pre = (torch.rand(3, 2, 7, generator=g, dtype=dtype) * 2 - 1)
        out = []
        for i, s in enumerate(states):
            torch_path(i == 1)
            out.append(fused.short_term_step(s, rows, lam, per_st if hold_bias else None, gam, post, pre,
                                             dev.g_range_s, thr, dg, dev.st_g_max_s))
        torch_path(False)
        (lv_n, ge_n, col_n, e_n), (lv_t, ge_t, col_t, e_t) = out
        assert torch.equal(states[0], states[1]) and torch.equal(lv_n, lv_t) and torch.equal(ge_n, ge_t)
        torch.testing.assert_close(col_n, col_t, rtol=1e-6, atol=0)
        assert math.isclose(e_n, e_t, rel_tol=1e-6) and (e_n > 0) == hold_bias
        assert not lv_n[:, 1, :, 6].any()  # the pad row of tile 1 is never pulsed
        assert int(ge_n[:, 0].sum()) > 0 and int(ge_n[:, -1].sum()) > 0  # every level was requested
    assert bool((states[0].abs() == torch.tensor(dev.st_g_max_s, dtype=dtype)).any())  # saturation happened


def _tiles_both_paths(torch_path, states, rows, lam, per_st, gam, post, pre, dev, thr, dg):
    """One ``short_term_step_tiles`` on ``states[0]`` natively and on ``states[1]`` through torch; the states,
    levels and counts must be equal. Returns both outputs."""
    out = []
    for i, s in enumerate(states):
        torch_path(i == 1)
        out.append(fused.short_term_step_tiles(s, rows, lam, per_st, gam, post, pre, dev.g_range_s, thr, dg,
                                               dev.st_g_max_s))
    torch_path(False)
    (lv_n, ge_n, _, _), (lv_t, ge_t, _, _) = out
    assert torch.equal(states[0], states[1]) and torch.equal(lv_n, lv_t) and torch.equal(ge_n, ge_t)
    return out


@pytest.mark.parametrize("use_kernel", [True, False])
def test_short_term_step_without_levels_is_the_same_step(use_kernel, torch_path):
    """``levels=False``: no level tensor (the kernel writes none), the same F, counts, column sums and bias energy."""
    if use_kernel and not native.available():
        pytest.skip(f"native kernels not built: {native.why_unavailable()}")
    torch_path(not use_kernel)
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(torch.float32)
    post = torch.rand(3, 5, generator=g) * 2 - 1
    pre = torch.rand(3, 2, 7, generator=g) * 2 - 1
    out = []
    for levels in (True, False):
        s = f0.clone()
        out.append((s, fused.short_term_step_tiles(s, rows, lam, per_st, gam, post, pre, dev.g_range_s, thr, dg,
                                                   dev.st_g_max_s, levels=levels)))
    (s_a, (lev, *a)), (s_b, (none, *b)) = out
    assert lev is not None and lev.dtype == torch.int8 and none is None
    assert torch.equal(s_a, s_b) and all(torch.equal(x, y) for x, y in zip(a, b))


@needs_native
def test_short_term_step_flushes_subnormal_state_to_zero_and_restores_the_callers_mode(torch_path):
    """A decaying F below float32's normal range (< 1.18e-38 S) becomes 0 in the native step instead of sticking
    at the smallest subnormal (1.4e-45 * lambda > 0.5 rounds back to 1.4e-45 on the torch path); every normal
    cell keeps the torch path's bits; afterwards the caller's own float ops make subnormals again (mode restored)."""
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(torch.float32)
    tiny = torch.finfo(torch.float32).tiny  # smallest normal
    smallest = float(torch.tensor(1.4e-45))  # smallest subnormal
    f0[0, 0, 0, :4] = torch.tensor([smallest, -smallest, 1e-40, tiny])
    f0[1, 1, 2, 3] = 3e-39
    assert lam.max() < 1 and lam[0, 0, :4].min() > 0.5
    post = torch.zeros(3, 5)  # no requested change: the step is the decay alone
    pre = torch.rand(3, 2, 7, generator=g)
    states = [f0.clone(), f0.clone()]
    for i, s in enumerate(states):
        torch_path(i == 1)
        fused.short_term_step_tiles(s, rows, lam, per_st, gam, post, pre, dev.g_range_s, thr, dg, dev.st_g_max_s)
    torch_path(False)
    native_f, torch_f = states
    sub = torch_f.ne(0) & (torch_f.abs() < tiny)
    assert float(torch_f[0, 0, 0, 0]) == smallest and float(torch_f[0, 0, 0, 1]) == -smallest  # stuck there
    assert bool(sub.any()) and bool((native_f[sub] == 0).all())  # flushed
    assert torch.equal(native_f[~sub], torch_f[~sub])  # normal cells: the same bits
    x = torch.tensor([1e-37]) * torch.tensor([1e-3])
    assert float(x) != 0.0, "the kernel left flush-to-zero set in the calling thread"


@needs_native
def test_sparse_and_dense_requests_agree_for_thresholds_out_of_order():
    """The sparse request takes the step as dg[k] (one load, no branch per level) only for thresholds that
    do not decrease; others keep the level loop's choice (the last threshold reached), as the dense form
    does: a sparse and a dense row-tile with the same nonzero inputs give the same pulses."""
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(torch.float32, rows=(40, 40), o=6)
    thr = thr.flip(0).contiguous()  # decreasing
    assert not bool((thr[1:] >= thr[:-1]).all())
    post = torch.rand(3, 6, generator=g) * 2 - 1
    pre = torch.zeros(3, 2, 40)
    pre[:, :, :4] = (torch.rand(3, 2, 4, generator=g) * 2 - 1) * 4  # 4 of 40 nonzero: the sparse form
    out = []
    for dense in (False, True):
        s, v = f0.clone(), pre.clone()
        if dense:  # the same requests through the dense form: tile 1 gets 4 more nonzeros, then compare tile 0
            v[:, :, 4:12] = 1e-30  # nonzero, far below every threshold: no pulse, 12 of 40 nonzero
        out.append((s, fused.short_term_step_tiles(s, rows, lam, None, gam, post, v, dev.g_range_s, thr, dg,
                                                   dev.st_g_max_s)))
    (s_a, (lev_a, ge_a, _, _)), (s_b, (lev_b, ge_b, _, _)) = out
    k = lev_a.abs()
    assert bool(((k > 0) & (k < thr.numel())).any())  # cells past some thresholds but not all: dg[k] would differ
    assert torch.equal(s_a, s_b) and torch.equal(lev_a, lev_b) and torch.equal(ge_a, ge_b)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_short_term_step_sparse_input_native_equals_torch_path(dtype, torch_path):
    """A sparse presynaptic input (most of v zero, as the encoder's ReLU output) takes the kernel's sparse
    request: the same F, levels, counts and energies as the torch path, row-tiles of every kind in one
    call (all zero, a few nonzeros, dense)."""
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(dtype, rows=(40, 37, 40), o=6)
    states = [f0.clone(), f0.clone()]
    for _ in range(4):
        post = torch.rand(3, 6, generator=g, dtype=dtype) * 2 - 1
        pre = torch.rand(3, 3, 40, generator=g, dtype=dtype) * 2 - 1
        keep = torch.rand(3, 3, 40, generator=g) < 0.08
        keep[:, 2] = True  # row-tile 2 dense
        keep[1, 0] = False  # chip 1, row-tile 0: all zero
        pre = pre * keep
        (lv_n, ge_n, col_n, e_n), (lv_t, ge_t, col_t, e_t) = _tiles_both_paths(
            torch_path, states, rows, lam, per_st, gam, post, pre, dev, thr, dg)
        torch.testing.assert_close(col_n, col_t, rtol=1e-6, atol=0)
        torch.testing.assert_close(e_n, e_t, rtol=1e-6, atol=0)
        assert int(ge_n[:, :2].sum()) > 0 and not lv_n[1, 0].any()  # sparse tiles pulse; an all-zero one does not
        assert not lv_n[:, :2][~keep[:, :2, None, :].expand(3, 2, 6, 40)].any()  # never where the input is 0


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_short_term_step_per_row_tile_native_equals_torch_path(dtype, torch_path):
    """Pulse counts per (chip, row-tile, level) and bias energy per (chip, row-tile): native == torch,
    and they are the per-tile split of the step's totals (one call gives every tile's events)."""
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(dtype, rows=(7, 6, 7))
    states = [f0.clone(), f0.clone()]
    for _ in range(4):
        post = torch.rand(3, 5, generator=g, dtype=dtype) * 2 - 1
        pre = torch.rand(3, 3, 7, generator=g, dtype=dtype) * 2 - 1
        (lv_n, ge_n, col_n, e_n), (lv_t, ge_t, col_t, e_t) = _tiles_both_paths(
            torch_path, states, rows, lam, per_st, gam, post, pre, dev, thr, dg)
        assert ge_n.shape == (3, 3, thr.numel()) and e_n.shape == e_t.shape == (3, 3) and e_n.dtype == torch.float64
        torch.testing.assert_close(e_n, e_t, rtol=1e-6, atol=0)
        for t in range(3):  # each tile's counts are those of its own levels
            k = lv_n[:, t].abs().reshape(3, -1).long()
            want = torch.stack([(k >= m + 1).sum(1) for m in range(thr.numel())], 1)
            assert torch.equal(ge_n[:, t], want)
        assert bool((e_n > 0).all())
    assert fused.short_term_step_tiles(states[0], rows, lam, None, gam, post, pre, dev.g_range_s, thr, dg,
                                       dev.st_g_max_s)[3] is None


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_short_term_step_stacked_bias_tables_native_equals_torch_path(dtype, torch_path):
    """Stacked bias tables [2, T, O, X] (a rail's load and drawn energy) in one pass: [B, T, 2], each
    column the single-table figure (native and torch), the same F, levels and counts."""
    dev, rows, lam, per_st, gam, f0, dg, thr, g = _step_inputs(dtype, rows=(7, 6, 7))
    stacked = torch.stack([per_st, per_st * 3.5])
    states = [f0.clone() for _ in range(4)]
    for _ in range(3):
        post = torch.rand(3, 5, generator=g, dtype=dtype) * 2 - 1
        pre = torch.rand(3, 3, 7, generator=g, dtype=dtype) * 2 - 1
        out = []
        for i, (s, table) in enumerate(zip(states, (stacked, stacked, per_st, stacked[1]))):
            torch_path(i == 1)
            out.append(fused.short_term_step_tiles(s, rows, lam, table, gam, post, pre, dev.g_range_s, thr, dg,
                                                   dev.st_g_max_s))
        torch_path(False)
        (lv_n, ge_n, _, e_n), (lv_t, ge_t, _, e_t), (lv_1, ge_1, _, e_load), (_, _, _, e_drawn) = out
        assert all(torch.equal(states[0], s) for s in states[1:])
        assert torch.equal(lv_n, lv_t) and torch.equal(lv_n, lv_1) and torch.equal(ge_n, ge_t) and torch.equal(ge_n, ge_1)
        assert e_n.shape == e_t.shape == (3, 3, 2) and e_n.dtype == torch.float64
        torch.testing.assert_close(e_n, e_t, rtol=1e-6, atol=0)
        assert torch.equal(e_n[..., 0], e_load) and torch.equal(e_n[..., 1], e_drawn)  # same order of summation
        assert bool((e_n[..., 1] > e_n[..., 0]).all())


@pytest.mark.parametrize("use_kernel", [False, True] if native.available() else [False])
@pytest.mark.parametrize("sparse", [False, True])
def test_digital_cell_update_is_the_substrate_step(use_kernel, sparse):
    """The m-STPN's F update is the substrate's short-term step with g_range = 1, bit for bit; with a
    sparse input (most of x zero, the kernels' sparse request) too."""
    n_in = 200 if sparse else 10
    torch.manual_seed(1)
    cell = MSTPNCell(n_in, 6, presets.sto_2024(), DT, use_kernel=use_kernel, record_levels=True).double()
    with torch.no_grad():
        cell.gam.uniform_(-3, 3)
    state = cell.initial_state(4)
    lam, gam = cell.step_params()
    table = torch.cat([torch.zeros(1, dtype=torch.float64), cell.levels.double()])
    thr = dynamics.short_term_thresholds(table)
    with torch.no_grad():
        for _ in range(6):
            x = torch.rand(4, n_in, dtype=torch.float64)
            if sparse:
                x = x * (torch.rand(4, n_in) < 0.04)
            zh = cell.presynaptic(x, state[0])
            F = state[1]
            h, state = cell(x, state)
            want, idx = mstpn_plastic_reference(F, h, zh, lam, gam, cell.levels, cell.f_max)
            assert torch.equal(state[1], want) and torch.equal(cell.last_level_idx, idx)
            chip = F.unsqueeze(1).clone()  # the same update as an in-place substrate op on one tile
            level, ge, _, _ = fused.short_term_step(chip, torch.tensor([n_in + 6]), lam.unsqueeze(0), None,
                                                    gam.unsqueeze(0), h, zh.unsqueeze(1), 1.0, thr, table,
                                                    cell.f_max)
            assert torch.equal(chip.squeeze(1), want) and torch.equal(level.squeeze(1), idx)
            assert torch.equal(ge[:, 0], cell.last_level_counts.sum(1))
            assert int(ge.sum()) > 0  # cells were pulsed
    assert sparse or bool((state[1].abs() == cell.f_max).any())


def test_one_quantiser_device_and_table_forms_agree():
    dev = presets.sto_2024()
    dg_table, _, thr = dynamics.short_term_tables(dev, torch.zeros(1, dtype=torch.float64))
    lv = dg_table[1:]
    # thresholds: half the smallest step, then midpoints of neighbouring steps
    torch.testing.assert_close(thr, torch.cat([lv[:1] / 2, (lv[1:] + lv[:-1]) / 2]), rtol=0, atol=0)
    # just below / above every threshold, both signs
    d = torch.cat([thr * (1 - 1e-9), thr * (1 + 1e-9), -thr * (1 + 1e-9), 10 * lv[-1:]])
    level_dev, q_dev = dynamics.quantise_short_term(d, dev)
    level_tab, q_tab = dynamics.quantise_short_term(d / dev.g_range_s, dg_table / dev.g_range_s)  # weight units
    assert torch.equal(level_dev, level_tab)
    n = thr.numel()
    assert level_dev.tolist() == list(range(n)) + list(range(1, n + 1)) + [-k for k in range(1, n + 1)] + [n]
    # the achieved change is exactly the signed step of the level
    assert torch.equal(q_dev, torch.sign(d) * dg_table[level_dev.abs().long()])
    torch.testing.assert_close(q_tab * dev.g_range_s, q_dev, rtol=1e-12, atol=0)


def _io(**changes):
    io = PeripheryConfig().io_parameters()
    for k, v in changes.items():
        setattr(io, k, v)
    return io


IO_CASES = {
    "default (abs-max NM, iterative BM, 8-bit DAC/ADC, out noise)": {},
    "noise off": {"out_noise": 0.0},
    "no management": {"noise_management": NoiseManagementType.NONE, "bound_management": BoundManagementType.NONE},
    "max NM, threshold": {"noise_management": NoiseManagementType.MAX, "nm_thres": 0.5},
    "constant NM": {"noise_management": NoiseManagementType.CONSTANT, "nm_thres": 2.0},
    "input noise and asymmetries": {"inp_noise": 0.01, "inp_asymmetry": 0.1, "out_asymmetry": 0.05},
    "perfect": {"is_perfect": True},
}


@needs_native
@pytest.mark.parametrize("case", list(IO_CASES))
@pytest.mark.parametrize("layout", ["shared [T,O,X]", "per chip [B,T,O,X]"])
@pytest.mark.parametrize("batch", [1, 5])
def test_fast_read_equals_aihwkit_analog_mvm(case, layout, batch, monkeypatch):
    """Bit-exact with noise off, and with noise on under the same seed (the same random draws)."""
    io = _io(**IO_CASES[case])
    torch.manual_seed(0)
    lead = (batch,) if layout.startswith("per chip") else ()
    w = torch.rand(*lead, 3, 8, 120) * 1.5 - 0.5  # mostly positive: sums of 120 rows clip the ADC
    x = torch.rand(batch, 3, 120) - 0.1
    x[0, 1] = 0.0  # an all-zero tile input
    for var in (None, (0.05 * w) ** 2):
        got = []
        for use_native in (True, False):
            monkeypatch.setattr(TiledAnalogMVM, "use_native", use_native)
            torch.manual_seed(7)
            y, rounds = TiledAnalogMVM.tiled_matmul(w, x, io, noise_var=var)
            got.append((y, rounds))
        (y_n, r_n), (y_a, r_a) = got
        assert y_n.shape == (batch, 3, 8) and r_n == r_a
        assert torch.equal(y_n, y_a), f"max diff {(y_n - y_a).abs().max():.3g}"
    if case.startswith("default"):
        assert r_n > 1  # bound management re-read


@needs_native
def test_fast_layer_forward_equals_aihwkit_path_and_books_the_same(monkeypatch):
    torch.manual_seed(0)
    layers, ledgers = [], []
    for _ in range(2):
        layer = AnalogLinear(700, 16, bias=False, rpu_config=STORPUConfig())
        layer.eval()
        ledger = EnergyLedger()
        attach_ledger(layer, ledger)
        layers.append(layer)
        ledgers.append(ledger)
    w = torch.rand(16, 700) * 2 - 1
    for layer in layers:
        layer.set_weights(w)
    x = torch.rand(4, 700) * 2 - 1
    outs, reads = [], []
    for layer, ledger, use_native in zip(layers, ledgers, (True, False)):
        monkeypatch.setattr(TiledAnalogMVM, "use_native", use_native)
        torch.manual_seed(3)
        snap = ledger.snapshot()  # after programming (which draws its own device spread)
        with torch.no_grad():
            outs.append(layer(x))
        flush_events(layer)
        reads.append(ledger.since(snap))
    assert torch.equal(outs[0], outs[1])
    a, b = ({k: (e.count, e.energy_j) for k, e in led.items()} for led in reads)
    assert a
    assert a.keys() == b.keys() and all(a[k][0] == b[k][0] and math.isclose(a[k][1], b[k][1], rel_tol=1e-9)
                                        for k in a)


@needs_native
def test_analog_cell_native_equals_torch_fallback(torch_path):
    """The analog m-STPN (fast read + short-term step) gives the same h, F and energies without the kernels."""
    dev = presets.sto_2024()
    torch.manual_seed(0)
    digital = MSTPNCell(30, 8, dev, DT)
    with torch.no_grad():
        digital.gam.uniform_(-0.3, 0.3)
    xs = [torch.randn(3, 30) for _ in range(6)]
    runs = []
    for fallback in (False, True):
        torch_path(fallback)
        ledger = EnergyLedger()
        cell = AnalogMSTPNCell.from_cell(digital, PeripheryConfig().with_tile(16, 8))
        cell.attach(ledger)
        torch.manual_seed(11)
        state = cell.initial_state(3)
        hs = []
        with torch.no_grad():
            for x in xs:
                h, state = cell(x, state)
                hs.append(h)
        runs.append((torch.stack(hs), cell.chip.g_st.clone(), ledger.total_j))
    torch_path(False)
    (h_n, f_n, e_n), (h_t, f_t, e_t) = runs
    assert torch.equal(h_n, h_t) and torch.equal(f_n, f_t)
    assert f_n.abs().sum() > 0 and math.isclose(e_n, e_t, rel_tol=1e-6)


def test_layer_output_scales_follow_the_tiles():
    """The tiled array reuses its assembled output scales only while the tiles' scales are unchanged."""
    torch.manual_seed(0)
    layer = AnalogLinear(700, 16, bias=False, rpu_config=STORPUConfig())
    layer.eval()
    layer.set_weights(torch.rand(16, 700) * 2 - 1)
    x = torch.rand(2, 700) * 2 - 1
    tile = layer.analog_module.array[0][0]

    def read():
        torch.manual_seed(5)  # the same noise draws every time: only the scales change the output
        with torch.no_grad():
            return layer(x)

    y0 = read()
    tile.set_mapping_scales(tile.get_mapping_scales() * 2)
    y1 = read()
    tile.get_mapping_scales().mul_(0.5)  # in place: the tensor's version changes
    y2 = read()
    assert not torch.equal(y0, y1) and torch.equal(y2, y0)


@needs_native
def test_to_tiled_native_equals_torch_path(torch_path):
    """The native [N, in] -> [N, T, X] copy equals the torch scatter, pad rows zero; from_tiled inverts it."""
    dev = presets.sto_2024()
    st = CrossbarState([7, 6, 6], 4, dev)
    x = torch.rand(5, 19) * 2 - 1
    got = st.to_tiled(x)
    torch_path(True)
    want = st.to_tiled(x)
    torch_path(False)
    assert torch.equal(got, want) and got.shape == (5, 3, 7)
    assert not got[:, 1:, 6].any()
    assert torch.equal(torch.cat([got[:, 0, :7], got[:, 1, :6], got[:, 2, :6]], 1), x)
    assert torch.equal(st.to_tiled(x.t().contiguous().t()), want)  # a non-contiguous input too


@needs_native
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("clipping", ["every tile", "only the last tile"])
def test_fast_read_stopping_a_clipped_round_early_draws_the_same(batch, clipping, monkeypatch):
    """A bound-management round that clips stops at its probe tile in the native read (or reads all
    tiles when the probe passes but another tile clips); the result, the rounds and the random stream
    afterwards are those of aihwkit's path (6 tiles)."""
    io = _io()
    torch.manual_seed(0)
    w = torch.rand(6, 64, 443) * 1.5 - 0.5  # sums of 443 mostly positive rows clip the ADC
    if clipping != "every tile":
        w[:5] *= 0.01  # tiles 0-4 never clip: the first probe (tile 0) passes, tile 5 clips
    x = torch.rand(batch, 6, 443) - 0.1
    var = (0.05 * w) ** 2
    got = []
    for use_native in (True, False):
        monkeypatch.setattr(TiledAnalogMVM, "use_native", use_native)
        torch.manual_seed(11)
        y, rounds = TiledAnalogMVM.tiled_matmul(w, x, io, noise_var=var)
        got.append((y, rounds, torch.rand(4)))
    (y_n, r_n, after_n), (y_a, r_a, after_a) = got
    assert r_n == r_a and r_n > 2
    assert torch.equal(y_n, y_a) and torch.equal(after_n, after_a)


def _chip_read_pair(io, w_chip, var_chip, slot_chip, st, alpha, x, g_col):
    """The native read in its chip form and of the same slots' W + alpha F formed per slot, under one seed:
    ((y, rounds, status, drive, draws after), the same per slot)."""
    from stoxbar.crossbar.read import _native_io

    pars = _native_io(io)
    got = []
    for chip in (True, False):
        torch.manual_seed(5)
        drive = torch.zeros(g_col.shape[1] * g_col.shape[2], dtype=torch.float64)
        if chip:
            args = (w_chip, x, var_chip, *pars, g_col, drive, 0, 0.25, st, slot_chip, alpha)
        else:
            w = torch.add(w_chip[slot_chip], st, alpha=alpha)
            args = (w, x, None if var_chip is None else var_chip[slot_chip], *pars, g_col, drive, 0, 0.25,
                    None, None, 1.0)
        y, rounds, status = native.extension().io_mvm_read(*args)
        got.append((y, rounds, status, drive, torch.rand(3)))
    return got


@needs_native
@pytest.mark.parametrize("case", list(IO_CASES))
def test_chip_form_read_is_the_per_slot_read(case):
    """The chip form (each chip's W and noise variance once, the slots' F: no slot's W + F formed) reads
    what the slots' own W + alpha F read, with the same random draws: bit for bit where every sum is
    exact (dyadic values, no DAC rounding, so the order of the sums cannot matter), and where the
    read takes the per-slot path anyway (perfect IO, input noise: the slots' W + F formed as torch does)."""
    io = _io(**IO_CASES[case], inp_res=-1.0)
    g = torch.Generator().manual_seed(1)
    slot_chip = torch.tensor([0, 0, 1, 1, 1, 2])
    w_chip = torch.randint(-16, 17, (3, 2, 8, 120), generator=g).float() / 16 * 0.5
    st = torch.randint(-4, 5, (6, 2, 8, 120), generator=g).float() / 16
    var_chip = torch.randint(0, 4, (3, 2, 8, 120), generator=g).float() / 256
    x = torch.randint(-16, 17, (6, 2, 120), generator=g).float() / 16
    x[:, :, 0] = 1.0  # every row's abs-max 1: the noise-management scale is exact
    x[3, 1] = 0.0  # an all-zero tile input
    g_col = torch.rand(6, 2, 1, 120, generator=g)
    for var in (var_chip, None):
        (y_c, r_c, s_c, d_c, after_c), (y_s, r_s, s_s, d_s, after_s) = _chip_read_pair(
            io, w_chip, var, slot_chip, st, 0.5, x, g_col)
        assert s_c == s_s == 0 and r_c == r_s
        assert torch.equal(y_c, y_s), f"max diff {(y_c - y_s).abs().max():.3g}"
        assert torch.equal(d_c, d_s) and torch.equal(after_c, after_s)


@needs_native
def test_chip_form_read_of_real_values_differs_by_the_order_of_the_sums_only():
    """Real-valued W, F and inputs through the default IO (8-bit DAC and ADC, noise management, read
    and output noise): the chip form gives the per-slot read's rounds and draws; its outputs before
    the ADC differ by float rounding, so after it a few land one ADC step apart, no more."""
    io = _io()
    g = torch.Generator().manual_seed(2)
    slot_chip = torch.arange(4).repeat_interleave(5)
    w_chip = torch.rand(4, 6, 64, 443, generator=g) * 0.2 - 0.1
    st = (torch.rand(20, 6, 64, 443, generator=g) - 0.5) * 2e-6
    var_chip = (0.05 * w_chip) ** 2
    x = torch.relu(torch.randn(20, 6, 443, generator=g))
    g_col = torch.rand(20, 6, 1, 443, generator=g)
    alpha = 1.0 / presets.sto_2024().g_range_s
    (y_c, r_c, _, d_c, after_c), (y_s, r_s, _, d_s, after_s) = _chip_read_pair(
        io, w_chip, var_chip, slot_chip, st, alpha, x, g_col)
    assert r_c == r_s and torch.equal(d_c, d_s) and torch.equal(after_c, after_s)
    step = 2 * io.out_bound / (io.out_res if io.out_res > 1 else 1 / io.out_res) * x.abs().amax(-1, keepdim=True)
    diff = (y_c - y_s).abs()
    assert bool((diff <= step * 1.0001 * 2 ** (r_c - 1)).all())
    assert float((diff > 0).float().mean()) < 0.01
    # without the ADC's rounding: the same values up to float round-off
    (y_c, r_c, *_), (y_s, r_s, *_) = _chip_read_pair(_io(out_res=-1.0), w_chip, var_chip, slot_chip, st, alpha, x,
                                                     g_col)
    assert r_c == r_s and torch.allclose(y_c, y_s, rtol=1e-5, atol=1e-6 * float(y_s.abs().max()))


def test_chip_weights_are_the_runs_of_slots_that_share_conductances():
    dev = presets.sto_2024()
    st = CrossbarState([7, 6], 5, dev)
    w = torch.rand(5, 13) * 2 - 1
    assert st.chip_weights() is None  # one shared long-term state, no chip slots
    st.program_chips(w, 3, 2, "open_loop", torch.Generator().manual_seed(0))
    w_c, var_c, slot_chip = st.chip_weights()
    assert torch.equal(slot_chip, torch.tensor([0, 0, 1, 1, 2, 2])) and w_c.shape == (3, 2, 5, 7)
    assert torch.equal(w_c[slot_chip], st.weights())
    assert (var_c is None and st.read_noise_var() is None) or torch.equal(var_c[slot_chip], st.read_noise_var())
    st.set_batch(6)
    st.keep_slots(torch.tensor([True, True, False, False, True, True]))  # chip 1 finished its games
    w_c, _, slot_chip = st.chip_weights()
    assert torch.equal(slot_chip, torch.tensor([0, 0, 1, 1])) and torch.equal(w_c[slot_chip], st.weights())
    st.g_pos[3, 0, 0, 0] += 1e-9  # a slot changed apart (e.g. its own drift): a chip of its own
    st.invalidate()
    assert torch.equal(st.chip_weights()[2], torch.tensor([0, 0, 1, 2]))
    assert torch.equal(st.chip_weights()[0][2], st.weights()[3])
    st.g_pos[1, 0, 0, 0] += 1e-9
    st.invalidate()
    assert st.chip_weights() is None  # no slots share: the per-slot read
