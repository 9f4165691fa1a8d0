"""Line parasitics: the tile's resistive-network solver against ngspice, and the read model built on it.

ngspice (Debian package, installed by ``make setup``) solves the same netlists: rows driven at their
first cell through the row wire, each cell a resistor 1/G between its row and column node, the column
wire ending at a 0 V source (the sense amplifier's virtual ground). ``full`` must agree within 1 % on
every column current and every cell voltage (it agrees to ~1e-6); the error of ``first_order`` is
measured and bounded by its theory (second order in r G N^2).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import replace

import pytest
import torch
from aihwkit.nn import AnalogLinear

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger, flush_events
from stoxbar.crossbar.parasitics import FirstOrderParasiticMVM, ParasiticMVM, solve_currents, wire_coupling
from stoxbar.devices import ideal
from stoxbar.peripherals import Parasitics, PeripheryConfig
from stoxbar.core.validation import ConfigError

F64 = torch.float64


def _ngspice(g, v, r_row, r_col, tmp_path, b=None):
    """(cell currents [X, P], cell voltages U - D [X, P], column currents [P]) from ngspice's operating point."""
    assert shutil.which("ngspice"), "ngspice is missing: `make setup` installs it (apt package ngspice)"
    x_n, p_n = g.shape
    lines = ["* crossbar tile with line parasitics"]
    for i in range(x_n):
        lines.append(f"Vin{i} in{i} 0 DC {float(v[i]):.17g}")
        prev = f"in{i}"
        for c in range(p_n):
            lines.append(f"Rr{i}_{c} {prev} u{i}_{c} {r_row:.17g}")
            prev = f"u{i}_{c}"
            lines.append(f"Rx{i}_{c} u{i}_{c} d{i}_{c} {1.0 / float(g[i, c]):.17g}")
            below = f"d{i + 1}_{c}" if i + 1 < x_n else f"o{c}"
            lines.append(f"Rc{i}_{c} d{i}_{c} {below} {r_col:.17g}")
    for c in range(p_n):
        lines.append(f"Vo{c} o{c} 0 DC {0.0 if b is None else float(b[c]):.17g}")
    raw = tmp_path / "out.raw"
    lines += [".control", "set filetype=ascii", "op", f"write {raw} all", "quit", ".endc", ".end"]
    net = tmp_path / "tile.cir"
    net.write_text("\n".join(lines) + "\n")
    run = subprocess.run(["ngspice", "-b", str(net)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and raw.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    text = raw.read_text().split("\n")
    names, values, mode = [], [], None
    for line in text:
        if line.startswith("Variables:"):
            mode = "vars"
            continue
        if line.startswith("Values:"):
            mode = "vals"
            continue
        parts = line.split()
        if mode == "vars" and len(parts) >= 3:
            names.append(parts[1].lower())
        elif mode == "vals" and parts:
            values.append(float(parts[-1]))
    val = dict(zip(names, values))
    node = lambda n: val[f"v({n})"] if f"v({n})" in val else val[n]  # noqa: E731
    u = torch.tensor([[node(f"u{i}_{c}") for c in range(p_n)] for i in range(x_n)], dtype=F64)
    d = torch.tensor([[node(f"d{i}_{c}") for c in range(p_n)] for i in range(x_n)], dtype=F64)
    # SPICE: a source's current is positive into its + node, i.e. the column current into the sense amplifier
    col = torch.tensor([val[f"i(vo{c})"] for c in range(p_n)], dtype=F64)
    return g * (u - d), u - d, col


CASES = [  # (rows x physical columns, conductance range S, r_row, r_col)
    ((16, 16), (10e-9, 100e-9), 1.04, 3.13),    # STO at 32 nm
    ((16, 16), (1e-6, 10e-6), 10.0, 10.0),      # a 100x more conductive device, thin wires
    ((64, 64), (10e-9, 100e-9), 1.56, 4.69),    # STO at 22 nm
    ((64, 64), (1e-6, 10e-6), 1.56, 4.69),      # the 100x device at 22 nm: r G N^2 ~ 0.5
]


@pytest.mark.parametrize("shape, g_range, r_row, r_col", CASES)
def test_full_solve_matches_ngspice_within_one_percent(shape, g_range, r_row, r_col, tmp_path):
    gen = torch.Generator().manual_seed(hash(shape) % 1000 + int(r_row * 100))
    g = g_range[0] + (g_range[1] - g_range[0]) * torch.rand(shape, generator=gen, dtype=F64)
    v = 0.2 * (torch.rand(shape[0], generator=gen, dtype=F64) * 2 - 1)  # +-0.2 V row drives
    i_sp, vc_sp, col_sp = _ngspice(g, v, r_row, r_col, tmp_path)
    i = solve_currents(g, v, r_row, r_col, "full", tol=1e-10)
    vc = v.unsqueeze(-1) - wire_coupling(i, r_row, r_col)
    assert torch.allclose(i / g, vc, rtol=1e-6, atol=1e-12)  # the solution is consistent with its network
    rel_col = ((i.sum(0) - col_sp).abs() / col_sp.abs().clamp_min(1e-3 * col_sp.abs().max())).max()
    rel_v = ((vc - vc_sp).abs() / vc_sp.abs().clamp_min(1e-3 * vc_sp.abs().max())).max()
    assert float(rel_col) <= 0.01 and float(rel_v) <= 0.01, (float(rel_col), float(rel_v))
    assert float(rel_col) <= 1e-5  # in fact the same solution, to the solver's tolerance
    # the wires matter here: the ideal currents differ from SPICE's
    ideal_col = (g * v.unsqueeze(-1)).sum(0)
    assert float(((ideal_col - col_sp).abs() / col_sp.abs().max()).max()) > 1e-5
    # first order: the error left is second order in the wire drop (theory), measured here
    first = solve_currents(g, v, r_row, r_col, "first_order").sum(0)
    err1 = float(((first - col_sp).abs()).max() / col_sp.abs().max())
    err0 = float(((ideal_col - col_sp).abs()).max() / col_sp.abs().max())
    print(f"ideal error {err0:.3g}, first-order error {err1:.3g}")
    assert err1 <= 2.0 * err0**2 + 1e-9


def test_held_bias_network_matches_ngspice(tmp_path):
    """Rows held at a_i, column ends at b_c (a row/column bias scheme): the cell voltages the bias leaves."""
    gen = torch.Generator().manual_seed(3)
    g = 10e-9 + 90e-9 * torch.rand(16, 16, generator=gen, dtype=F64)
    a = 0.3 + 0.1 * torch.rand(16, generator=gen, dtype=F64)
    b = -0.1 * torch.rand(16, generator=gen, dtype=F64)
    _, vc_sp, _ = _ngspice(g, a, 2.0, 6.0, tmp_path, b=b)
    i = solve_currents(g, a, 2.0, 6.0, "full", tol=1e-12, v_col=b)
    v = a.unsqueeze(-1) - b.unsqueeze(0)
    vc = v - wire_coupling(i, 2.0, 6.0)
    assert float(((vc - vc_sp).abs() / vc_sp.abs()).max()) <= 1e-6
    assert float((v - vc_sp).abs().max()) > 0  # the wires drop a little of the bias
    # the same network driven by its cells' line differences a_i - b_c (the form the crossbar state uses)
    i_cells = solve_currents(g, v, 2.0, 6.0, "full", tol=1e-12, per_cell=True)
    assert torch.allclose(i_cells, i, rtol=1e-9, atol=1e-18)


DEV_100X = replace(ideal(), g_min_s=1e-6, g_max_s=11e-6, lt_dg_s=1e-9, st_g_max_s=2e-6)  # 100x STO: visible drop


def _tiled_layer(mode, seed, perfect=True, **periphery):
    """A 64 -> 8 layer on 2 row-tiles x 2 column-tiles (32 x 4) of the 100x device, wires 1 / 3 ohm per cell."""
    p = replace(PeripheryConfig().with_tile(32, 4), parasitics=Parasitics(mode=mode, r_row_ohm=1.0, r_col_ohm=3.0),
                **periphery)
    cfg = STORPUConfig(device=DEV_100X, periphery=p)
    cfg.forward.is_perfect = perfect
    layer = AnalogLinear(64, 8, bias=False, rpu_config=cfg)
    layer.eval()
    torch.manual_seed(seed)
    layer.set_weights(torch.rand(8, 64) * 2 - 1)
    return layer, p


def _bias_layer(mode, addressing="row_col"):
    return _tiled_layer(mode, 4, False, bias_addressing=addressing)[0], DEV_100X


@pytest.mark.parametrize("addressing", ["row_col", "per_cell"])
def test_the_held_bias_drops_along_its_wires_and_the_decay_follows_the_cells_voltage(addressing):
    """With parasitics on, set_bias holds what the wires leave of the lines' voltages (solved in full), the
    drop is reported, and the decay runs at the cells' voltages: a shorter-biased cell decays slower
    (tau falls with V here), exactly as tau(V_cell) says."""
    v = torch.full((8, 64), 0.4)
    held = {}
    for mode in ("off", "full"):
        layer, dev = _bias_layer(mode, addressing)
        tile = layer.analog_module
        rep = tile.set_bias(v)
        held[mode] = (tile.state.v_bias[tile.state.mask.expand_as(tile.state.v_bias)].clone(), rep)
        tile.set_batch(1)
        tile.apply_short_term(torch.full((1, 8, 64), 0.1))
        f0 = tile.state.g_st.clone()
        tile.decay(0.05)
        ratio = tile.state.g_st[f0 != 0] / f0[f0 != 0]
        cells = tile.state.v_bias.expand_as(f0[0])[f0[0] != 0]
        assert torch.allclose(ratio, torch.exp(-0.05 / torch.as_tensor(dev.tau_s(cells.double()))).to(ratio.dtype),
                              rtol=1e-4)
    off, full = held["off"], held["full"]
    assert off[1].wire_drop_max_v == 0 and torch.allclose(off[0], torch.full_like(off[0], 0.4))
    drop = 0.4 - full[0]
    assert float(drop.min()) >= 0 and float(drop.max()) == pytest.approx(full[1].wire_drop_max_v, rel=1e-4)
    assert full[1].wire_drop_max_v > 1e-4 and full[1].wire_tau_err_max > 0
    # per physical tile: the layer's maxima are the largest of the tiles'
    assert max(full[1].wire_drop_max_v_per_tile) == pytest.approx(full[1].wire_drop_max_v, rel=1e-12)
    assert max(full[1].wire_tau_err_max_per_tile) == pytest.approx(full[1].wire_tau_err_max, rel=1e-12)
    assert len(full[1].wire_drop_max_v_per_tile) == layer.analog_module.state.n_tiles
    # the largest tau error is the largest drop through the device's tau(V) law
    dev = _bias_layer("off")[1]
    want = float(dev.tau_s(0.4 - full[1].wire_drop_max_v)) / float(dev.tau_s(0.4)) - 1.0
    assert full[1].wire_tau_err_max == pytest.approx(abs(want), rel=1e-3)


def test_zero_wire_resistance_is_the_ideal_read_and_bad_values_are_refused():
    g = torch.rand(8, 6, dtype=F64) * 1e-7
    v = torch.rand(8, dtype=F64)
    for mode in ("first_order", "full"):
        assert torch.allclose(solve_currents(g, v, 0.0, 0.0, mode), g * v.unsqueeze(-1), rtol=1e-12)
    with pytest.raises(ConfigError, match="parasitics.mode"):
        Parasitics(mode="exact")
    with pytest.raises(ConfigError, match="parasitics.r_row_ohm"):
        Parasitics(r_row_ohm=-1.0)
    with pytest.raises(ConfigError, match="node_nm"):
        Parasitics.at_node(7)
    with pytest.raises(ConfigError, match="did not reach"):
        solve_currents(torch.full((64, 64), 1e-3, dtype=F64), torch.ones(64, dtype=F64), 50.0, 50.0, "full",
                       tol=1e-12, max_iter=2)


def _layer(mode, r=1.56, g_scale=1.0, rows=64, dac_mode="pwm"):
    dev = replace(ideal(), g_min_s=ideal().g_min_s * g_scale, g_max_s=ideal().g_max_s * g_scale,
                  lt_dg_s=ideal().lt_dg_s * g_scale, st_g_max_s=ideal().st_g_max_s * g_scale)
    p = PeripheryConfig()
    p = replace(p, parasitics=Parasitics(mode=mode, r_row_ohm=r, r_col_ohm=3 * r), dac=replace(p.dac, mode=dac_mode))
    cfg = STORPUConfig(device=dev, periphery=p)
    cfg.forward.is_perfect = True
    layer = AnalogLinear(rows, 8, bias=False, rpu_config=cfg)
    layer.eval()
    torch.manual_seed(0)
    layer.set_weights(torch.rand(8, rows) * 2 - 1)
    return layer


def test_the_parasitic_read_model_is_chosen_by_the_periphery_and_reads_through_the_solver():
    torch.manual_seed(0)  # fixed weights and inputs: the ratio check below divides by the ideal outputs
    x = torch.rand(5, 64)
    ideal_layer = _layer("off")
    assert ideal_layer.analog_module.tile._analog_mvm.__name__ == "TiledAnalogMVM"
    with torch.no_grad():
        y0 = ideal_layer(x)
        errs = {}
        for mode in ("first_order", "full"):
            layer = _layer(mode)
            expected_model = ParasiticMVM if mode == "full" else FirstOrderParasiticMVM
            assert layer.analog_module.tile._analog_mvm is expected_model
            assert expected_model.native_capable() == (mode == "first_order")  # first order: effective weights
            ledger = attach_ledger(layer, EnergyLedger())
            y = layer(x)
            flush_events(layer)
            assert ledger.by_component()["cell_read"] > 0
            errs[mode] = float((y - y0).abs().max() / y0.abs().max())
            # the same read by the solver directly, from the layer's own conductances
            st = layer.analog_module.state
            g = torch.stack((st.g_pos[0].T, st.g_neg[0].T), -1).flatten(-2).double()
            col = solve_currents(g, x.double(), 1.56, 4.68, mode).sum(-2)
            col0 = solve_currents(g, x.double(), 0.0, 0.0, mode).sum(-2)  # the same tile without wires
            ref = (col[..., 0::2] - col[..., 1::2]) / (col0[..., 0::2] - col0[..., 1::2])
            assert torch.allclose(y.double() / y0.double(), ref, rtol=1e-4 if mode == "full" else 2e-4)  # scale cancels
        assert 0 < errs["full"] < 0.05 and errs["first_order"] == pytest.approx(errs["full"], rel=0.2)
        # 100x the conductance: 100x the wire error (first order in r G N^2)
        big = _layer("full", g_scale=100.0)
        err_big = float((big(x) - y0).abs().max() / y0.abs().max())
        assert err_big > 20 * errs["full"]


def test_full_reads_switch_to_the_cached_transfer_matrix_after_as_many_vectors_as_rows():
    """The full solve is linear in the row voltages: after a tile's row count of input vectors the read goes
    through the transfer matrix (X unit-drive solves, cached), natively, and gives the per-input solve's
    outputs to the solver's tolerance; reprogramming drops it (2 row-tiles x 2 column-tiles, 100x STO)."""
    from stoxbar.crossbar.parasitics import ParasiticTransferMVM, transfer_weight

    layer, p = _tiled_layer("full", 2)
    st = layer.analog_module.state
    x = torch.rand(40, 64) * 2 - 1
    with torch.no_grad():
        y_solved = layer(x[:20])  # 20 vectors <= 32 rows: solved per input
        assert ParasiticMVM.for_state(st, p, 1) is ParasiticMVM  # 21 served
        y_more = layer(x[20:])  # 41 >= 32: the transfer matrix from this read on
        assert ParasiticMVM.for_state(st, p, 1) is ParasiticTransferMVM and ParasiticTransferMVM.native_capable()
        y_transfer = layer(x[:20])
        assert transfer_weight(st, p.parasitics).shape == (2, 8, 32)  # [row-tiles, outputs, rows per tile]
        ideal_w = st.effective_weight()  # the same conductances without wires
        y_ideal = torch.einsum("btx,tox->bo", st.to_tiled(x[:20]), ideal_w)
    scale = float(y_solved.abs().max())
    assert torch.allclose(y_transfer, y_solved, rtol=1e-5, atol=1e-6 * scale)
    assert float((y_solved - y_ideal).abs().max()) > 1e-3 * scale  # the wires do change the read
    assert y_more.shape == (20, 8)
    layer.set_weights(torch.rand(8, 64) * 2 - 1)  # reprogrammed: solved per input again until it pays
    assert ParasiticMVM.for_state(layer.analog_module.state, p, 1) is ParasiticMVM


def test_gradients_flow_through_the_parasitic_read():
    layer = _layer("full")
    layer.train()
    x = torch.rand(3, 64)
    layer(x).sum().backward()
    w = layer.analog_module.tile.weight
    assert w.grad is not None and float(w.grad.abs().sum()) > 0


def test_first_order_and_full_agree_on_a_tiled_array_with_short_term_state():
    """2 row-tiles x 2 column-tiles (each physical tile has its own wires), a per-sample short-term state."""
    outs = {}
    for mode in ("off", "first_order", "full"):
        layer, _ = _tiled_layer(mode, 1)
        tile = layer.analog_module
        tile.set_batch(3)
        tile.apply_short_term((torch.rand(3, 8, 64) * 2 - 1) * 0.15)
        with torch.no_grad():
            outs[mode] = layer(torch.rand(3, 64))
    wire = float((outs["full"] - outs["off"]).abs().max() / outs["off"].abs().max())
    first = float((outs["first_order"] - outs["full"]).abs().max() / outs["off"].abs().max())
    assert wire > 1e-3 and first < 0.1 * wire


def test_energy_command_reports_the_wire_error(tmp_path, capsys):
    """`stoxbar energy --parasitics MODE --json F`: the MVM error from the wires alone, growing with the line length."""
    import json

    from stoxbar.scripts.cli import main

    errs = {}
    for rows in (128, 512):
        out = tmp_path / f"e{rows}.json"
        assert main(["energy", "--layer", f"{rows}x16", "--tile", f"{rows}x16", "--parasitics", "full",
                     "--json", str(out)]) == 0
        rec = json.loads(out.read_text())["parasitics"]
        assert rec["mode"] == "full" and rec["r_row_ohm"] == pytest.approx(1.04)
        errs[rows] = rec["ir_drop_rel_error"]
    assert 0 < errs[128] < errs[512] < 0.1  # the drop grows with the line (~ r G N^2)
    assert "MVM error from the wires alone" in capsys.readouterr().out
    assert main(["energy", "--layer", "64x16", "--json", str(tmp_path / "off.json")]) == 0
    assert "parasitics" not in json.loads((tmp_path / "off.json").read_text())  # off: the table is unchanged


def test_wire_power_matches_ngspice(tmp_path):
    """The wires' I^2 R (delivered power less the cells'), from the solve, against ngspice's operating point."""
    from stoxbar.crossbar.parasitics import line_power

    gen = torch.Generator().manual_seed(5)
    g = 1e-6 + 9e-6 * torch.rand(16, 16, generator=gen, dtype=F64)  # the 100x device: a visible wire loss
    v = 0.2 * torch.rand(16, generator=gen, dtype=F64)
    i_sp, vc_sp, _ = _ngspice(g, v, 10.0, 10.0, tmp_path)
    delivered_sp = float((v * i_sp.sum(-1)).sum())
    wire_sp = delivered_sp - float((g * vc_sp.square()).sum())
    delivered, in_cells = line_power(g, v, solve_currents(g, v, 10.0, 10.0, "full", tol=1e-12), 10.0, 10.0)
    assert float(delivered) == pytest.approx(delivered_sp, rel=1e-6)
    assert float(delivered - in_cells) == pytest.approx(wire_sp, rel=1e-3)
    assert 0 < wire_sp < 0.05 * delivered_sp
    ideal_p = float((g * v.unsqueeze(-1).square()).sum())
    assert delivered_sp < ideal_p  # the wires' resistance lowers the current the drivers deliver


def test_the_ledger_books_the_wires_i2r_from_the_read_models_solve():
    """PWM reads (the default DAC): the wires' share solved at quadrature points of the window."""
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(2))
    books = {}
    for mode, r in (("off", 1.56), ("full", 1.56), ("full", 0.0), ("first_order", 1.56)):
        layer = _layer(mode, r=r, g_scale=100.0)
        ledger = attach_ledger(layer, EnergyLedger())
        with torch.no_grad():
            layer(x)
        flush_events(layer)
        books[(mode, r)] = ledger.by_component()
    off, full, zero, first = books[("off", 1.56)], books[("full", 1.56)], books[("full", 0.0)], books[("first_order", 1.56)]
    assert "wire_read" not in off and zero.get("wire_read", 0.0) == pytest.approx(0.0, abs=1e-12 * off["cell_read"])
    assert zero["cell_read"] == pytest.approx(off["cell_read"], rel=1e-9)  # no wire: the ideal drive
    w, c = full["wire_read"], full["cell_read"]
    assert 0 < w < 0.2 * c and c + w < off["cell_read"]  # delivered < ideal; the wires take their share
    assert first["wire_read"] == pytest.approx(w, rel=0.2)
    assert w == pytest.approx(GOLDEN_WIRE_J, rel=1e-6), w  # golden: a changed wire or drive model fails here
    assert sum(full.values()) == pytest.approx(math.fsum(full.values()))


GOLDEN_WIRE_J = 4.681409780591424e-12


def test_amplitude_reads_book_the_solved_wire_power():
    """Multibit (amplitude) reads: the delivered and wire power of the solve itself, no quadrature."""
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(2))
    books = {}
    for mode in ("off", "full"):
        layer = _layer(mode, g_scale=100.0, dac_mode="multibit")
        ledger = attach_ledger(layer, EnergyLedger())
        with torch.no_grad():
            layer(x)
        flush_events(layer)
        books[mode] = ledger.by_component()
    w, c, c0 = books["full"]["wire_read"], books["full"]["cell_read"], books["off"]["cell_read"]
    assert 0 < w < 0.2 * c and c + w < c0


def test_first_order_wire_power_is_the_solves_to_second_order_in_the_wire():
    """The first-order model's wire I^2 R (ideal currents in the wires, no per-cell solve) against the full
    solve: the relative error falls with r (second order), and it is the old per-cell formula's to its order."""
    from stoxbar.crossbar.parasitics import first_order_line_power, line_power

    gen = torch.Generator().manual_seed(7)
    g = 1e-6 * torch.rand(3, 24, 20, generator=gen, dtype=F64)
    v = 0.2 * (torch.rand(5, 3, 24, generator=gen, dtype=F64) * 2 - 1)
    errs = []
    for r in (10.0, 1.0):
        d_full, c_full = line_power(g, v, solve_currents(g, v, r, 3 * r, "full", tol=1e-13), r, 3 * r)
        d_first, c_first = first_order_line_power(g, v, r, 3 * r)
        assert d_first.shape == (5, 3)
        w_full, w_first = d_full - c_full, d_first - c_first
        assert (w_first > 0).all() and (d_first < (g * v.unsqueeze(-1).square()).sum((-2, -1))).all()
        errs.append(float(((w_first - w_full) / w_full).abs().max()))
        d_old, c_old = line_power(g, v, solve_currents(g, v, r, 3 * r, "first_order"), r, 3 * r)
        assert torch.allclose(d_first, d_old, rtol=1e-12)  # the drivers' power: the same expression
    assert errs[1] < 0.2 * errs[0] and errs[1] < 1e-3, errs
    zero = first_order_line_power(g, v, 0.0, 0.0)
    assert torch.equal(zero[0], zero[1])  # no wire: delivered = in the cells


def test_analyze_reports_the_wires_per_tile_as_the_layers_own_read_sees_them(capsys):
    """``wire_report`` (what ``analyze`` adds per layer) equals the layer's read with and without the wires
    on the same input, scales with the wire resistance to first order, and is absent with the wires off."""
    from stoxbar.analysis import analyze
    from stoxbar.analysis.run import wire_report

    full, off = _layer("full"), _layer("off")
    state, periphery = full.analog_module.state, full.analog_module.rpu_config.periphery
    rep = wire_report(state, periphery, seed=3)
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(1, 1, 64, generator=gen, dtype=F64) * 2 - 1)[0].float()
    with torch.no_grad():
        y, y0 = full(x).double(), off(x).double()
    assert rep["ir_drop_rel_error_per_tile"]["0.0"] == pytest.approx(float((y - y0).norm() / y0.norm()), rel=2e-3)
    twice = wire_report(_layer("full", r=3.12).analog_module.state, replace(periphery, parasitics=Parasitics(
        mode="full", r_row_ohm=3.12, r_col_ohm=3 * 3.12)), seed=3)
    assert twice["ir_drop_rel_error"] / rep["ir_drop_rel_error"] == pytest.approx(2.0, rel=0.05)
    assert wire_report(off.analog_module.state, off.analog_module.rpu_config.periphery) is None
    p = replace(PeripheryConfig(), tile_rows=32, tile_cols=16,
                parasitics=Parasitics(mode="full", r_row_ohm=1.56, r_col_ohm=4.68))
    cfg = STORPUConfig(device=ideal(), periphery=p)
    report = analyze(torch.nn.Sequential(torch.nn.Linear(64, 24, bias=False)), torch.rand(1, 64), rpu_config=cfg)
    (wires,) = [info["wires"] for info in report.layers.values() if "wires" in info]
    assert sorted(wires["ir_drop_rel_error_per_tile"]) == ["0.0", "0.1", "1.0", "1.1"]
    assert all(0 < e < 0.1 for e in wires["ir_drop_rel_error_per_tile"].values())
    assert "MVM error of the wires alone" in report.table()
