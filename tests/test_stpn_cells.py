"""STPN and m-STPN cells: equations, resets, device constraints, gradients, fused kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stoxbar.devices import presets
from stoxbar.stpn import cells
from stoxbar.devices.dynamics import quantise_short_term
from stoxbar.stpn.cells import MSTPNCell, STPNCell, stpn_step_reference
from stoxbar.core.validation import ConfigError

DT = 4 / 60
KERNEL = [False, True] if cells.kernel_available() else [False]


def _device():
    return presets.sto_2024()


def _numpy_stpn_step(x, h_prev, F, W, b, lam, gam):
    """docs/stpn.md 1.1 with explicit loops: S = W+F, n_i = ||S_i||+1e-16, h = tanh(S z/n + b),
    F' = lam F / n + gam h z^T."""
    B, H, P = F.shape
    h = np.zeros((B, H))
    F_new = np.zeros_like(F)
    for bb in range(B):
        z = np.concatenate([x[bb], h_prev[bb]])
        for i in range(H):
            S = [W[i, j] + F[bb, i, j] for j in range(P)]
            n = math.sqrt(sum(s * s for s in S)) + 1e-16
            G = [s / n for s in S]
            h[bb, i] = math.tanh(sum(G[j] * z[j] for j in range(P)) + b[i])
        for i in range(H):
            S = [W[i, j] + F[bb, i, j] for j in range(P)]
            n = math.sqrt(sum(s * s for s in S)) + 1e-16
            for j in range(P):
                F_new[bb, i, j] = lam[i, j] * F[bb, i, j] / n + gam[i, j] * h[bb, i] * z[j]
    return h, F_new


@pytest.mark.parametrize("use_kernel", KERNEL)
def test_stpn_matches_hand_computed_steps(use_kernel):
    torch.manual_seed(0)
    cell = STPNCell(3, 2, use_kernel=use_kernel).double()
    with torch.no_grad():
        cell.gam.uniform_(-0.5, 0.5)  # make the Hebbian term visible
    B = 2
    xs = [torch.randn(B, 3, dtype=torch.float64) for _ in range(3)]
    state = cell.initial_state(B)
    h_np, F_np = np.zeros((B, 2)), np.zeros((B, 2, 5))
    W, b, lam, gam = (p.detach().numpy() for p in (cell.W, cell.b, cell.lam, cell.gam))
    for x in xs:
        h, state = cell(x, state)
        h_np, F_np = _numpy_stpn_step(x.numpy(), h_np, F_np, W, b, lam, gam)
        np.testing.assert_allclose(h.detach().numpy(), h_np, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[1].detach().numpy(), F_np, rtol=1e-12, atol=1e-12)
    assert np.abs(F_np).max() > 1e-3  # the plastic state actually moved


def test_stpn_init_follows_paper():
    cell = STPNCell(2592, 64)
    stdv = 1 / 8
    assert cell.W.shape == (64, 2656) and cell.W.abs().max() <= stdv
    assert 0 <= float(cell.lam.detach().min()) and float(cell.lam.detach().max()) <= 1
    assert cell.gam.abs().max() <= 1e-3 * stdv
    h, F = cell.initial_state(3)
    assert h.shape == (3, 64) and F.shape == (3, 64, 2656) and not F.any()


def test_stpn_reference_gradcheck():
    torch.manual_seed(1)
    B, H, P = 2, 3, 4
    args = [torch.randn(B, P), torch.randn(B, H, P) * 0.3, torch.randn(H, P), torch.randn(H), torch.rand(H, P),
            torch.randn(H, P) * 0.3]
    args = [a.double().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(stpn_step_reference, args)


def _run(cell, xs, weight_f=0.1):
    cell.zero_grad()
    xs = [x.clone().requires_grad_() for x in xs]
    state = cell.initial_state(xs[0].shape[0])
    loss = 0
    for x in xs:
        h, state = cell(x, state)
        loss = loss + (h * torch.linspace(-1, 1, h.shape[1], dtype=h.dtype)).sum()
    loss = loss + weight_f * (state[1] * torch.randn(state[1].shape, generator=torch.Generator().manual_seed(3),
                                                     dtype=h.dtype)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in cell.parameters()] + [x.grad.clone() for x in xs]
    return state[1].detach(), grads


@pytest.mark.skipif(not cells.kernel_available(), reason="native kernels not built (setup.py)")
@pytest.mark.parametrize("sparse", [False, True])
def test_fused_kernels_match_reference_values_and_gradients(sparse):
    """Values and gradients of the kernels = the torch reference; ``sparse``: most inputs zero (the ReLU
    features' case, one env dense), so the m-STPN kernels request only the nonzero cells of the sparse ones."""
    torch.manual_seed(2)
    n_in = 200 if sparse else 6
    xs = [torch.rand(3, n_in, dtype=torch.float64) * ((torch.rand(3, n_in) < 0.04) if sparse else 1)
          for _ in range(8)]
    if sparse:  # env 1 dense between two sparse ones: the kernels switch forms within a call
        for x in xs:
            x[1] = torch.rand(n_in, dtype=torch.float64)
    stpn = STPNCell(n_in, 4).double()
    with torch.no_grad():
        stpn.gam.uniform_(-0.3, 0.3)
    m = MSTPNCell(n_in, 4, _device(), DT).double()
    with torch.no_grad():
        m.gam.uniform_(-3.0, 3.0)  # large: many pulses and a saturated window (clamp masks)
        m.theta.uniform_(-6, 6)
    for cell in (stpn, m):
        cell.use_kernel = True
        F_k, g_k = _run(cell, xs)
        counts_k = getattr(cell, "last_level_counts", None)
        cell.use_kernel = False
        F_r, g_r = _run(cell, xs)
        torch.testing.assert_close(F_k, F_r, rtol=1e-10, atol=1e-12)
        for a, b in zip(g_k, g_r):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
        if counts_k is not None:
            assert torch.equal(counts_k, cell.last_level_counts) and int(counts_k.sum()) > 0
    assert (F_k.abs() == m.f_max).any()  # the clamp was exercised


@pytest.mark.skipif(not cells.kernel_available(), reason="native kernels not built (setup.py)")
@pytest.mark.parametrize("kind", ["stpn", "mstpn"])
def test_state_in_place_gives_the_same_bits_in_the_given_memory(kind):
    """``state_in_place`` (batched play): without a gradient the native step writes F_new into the F it was
    given; h, F and the pulse counts are bit for bit those of the fresh-tensor step, over sparse and dense
    inputs (both kernel forms) and several steps. With a gradient recorded, or outside the block, F is new."""
    torch.manual_seed(5)
    n_in = 120
    xs = [torch.rand(3, n_in) * (torch.rand(3, n_in) < 0.05) for _ in range(6)]
    for x in xs:
        x[2] = torch.rand(n_in)  # one dense game beside two sparse ones
    cell = STPNCell(n_in, 8) if kind == "stpn" else MSTPNCell(n_in, 8, _device(), DT)
    with torch.no_grad():
        cell.gam.uniform_(-3.0, 3.0) if kind == "mstpn" else cell.gam.uniform_(-0.3, 0.3)
    counts = lambda: cell.last_level_counts.clone() if kind == "mstpn" else None  # noqa: E731

    def run(in_place):
        state, out = cell.initial_state(3), []
        with torch.no_grad(), (cells.state_in_place(cell) if in_place else torch.enable_grad()):
            for x in xs:
                F_in, version = state[1], state[1]._version
                h, state = cell(x, state)
                assert (state[1] is F_in) == in_place  # the given memory, or a new tensor
                assert (state[1]._version > version) == in_place
                out.append((h.clone(), state[1].clone(), counts()))
        return out

    fresh, inplace = run(False), run(True)
    assert not cell.state_in_place  # restored after the block
    for (h0, F0, c0), (h1, F1, c1) in zip(fresh, inplace):
        assert torch.equal(h0, h1) and torch.equal(F0, F1)
        assert c0 is None or torch.equal(c0, c1)
    assert bool(fresh[-1][1].ne(0).any())
    with cells.state_in_place(cell):  # a gradient recorded: no in-place write
        state = cell.initial_state(3)
        _, new = cell(xs[0], state)
        assert new[1] is not state[1] and not bool(state[1].any())


@pytest.mark.parametrize("make", [lambda: STPNCell(3, 2), lambda: MSTPNCell(3, 2, _device(), DT)])
def test_reset_on_done_zeroes_only_finished_envs(make):
    torch.manual_seed(0)
    cell = make()
    with torch.no_grad():
        cell.gam.mul_(50)
    state = cell.initial_state(3)
    for _ in range(3):
        _, state = cell(torch.rand(3, 3), state)
    h, F = cell.reset_state(state, torch.tensor([True, False, True]))
    assert not h[0].any() and not F[0].any() and not h[2].any() and not F[2].any()
    assert torch.equal(h[1], state[0][1]) and torch.equal(F[1], state[1][1])
    assert F[1].abs().sum() > 0
    same = cell.reset_state(state, torch.zeros(3, dtype=torch.bool))
    assert same[0] is state[0] and same[1] is state[1]
    with pytest.raises(ConfigError, match="done mask"):
        cell.reset_state(state, torch.tensor([True, False]))
    with pytest.raises(ConfigError, match="expected"):
        cell(torch.rand(3, 4), state)


def test_mstpn_decay_is_achievable_and_bias_realises_it():
    dev = _device()
    cell = MSTPNCell(5, 3, dev, DT)
    with torch.no_grad():
        cell.theta[0].fill_(-1e4)
        cell.theta[1].fill_(1e4)
    lam = cell.lambda_().detach()
    lo, hi = math.exp(-DT / dev.tau_min_s), math.exp(-DT / dev.tau_max_s)
    assert float(lam.min()) >= lo * (1 - 1e-6) and float(lam.max()) <= hi * (1 + 1e-6)
    assert float(lam[0].min()) == pytest.approx(lo, rel=1e-5) and float(lam[1].max()) == pytest.approx(hi, rel=1e-5)
    tau = cell.tau_s().detach()
    assert float(tau.min()) >= dev.tau_min_s * (1 - 1e-6) and float(tau.max()) <= dev.tau_max_s * (1 + 1e-6)
    v = cell.v_bias()
    assert v.shape == (3, 8)
    assert float(v.min()) >= dev.v_bias_min_v - 1e-6 and float(v.max()) <= dev.v_bias_max_v + 1e-6
    back = dev.decay_lambda(DT, v.double())
    torch.testing.assert_close(back, lam.double(), rtol=1e-5, atol=1e-6)


def test_quantiser_levels_threshold_and_sign():
    lv = torch.tensor([0.1, 0.2, 0.4], dtype=torch.float64)
    d = torch.tensor([0.049, 0.051, 0.149, 0.151, 0.299, 0.301, 5.0, -0.07, 0.0, -0.31], dtype=torch.float64)
    idx, q = quantise_short_term(d, torch.cat([torch.zeros(1, dtype=lv.dtype), lv]))
    assert q.tolist() == [0.0, 0.1, 0.1, 0.2, 0.2, 0.4, 0.4, -0.1, 0.0, -0.4]
    assert idx.tolist() == [0, 1, 1, 2, 2, 3, 3, -1, 0, -3]


@pytest.mark.parametrize("use_kernel", KERNEL)
def test_mstpn_updates_are_pulse_levels_in_window_and_sparse(use_kernel):
    torch.manual_seed(4)
    dev = _device()
    cell = MSTPNCell(40, 8, dev, DT, use_kernel=use_kernel, record_levels=True)
    levels = torch.tensor(dev.short_term_levels()[1]) / dev.g_range_s
    torch.testing.assert_close(cell.levels, levels.float())
    assert cell.f_max == pytest.approx(dev.st_g_max_s / dev.g_range_s)
    state = cell.initial_state(4)
    x = torch.rand(4, 40)
    _, state = cell(x, state)  # from F = 0: F_new = clamp(dF_q) = dF_q
    F1, idx = state[1], cell.last_level_idx
    assert idx.dtype == torch.int8 and idx.shape == F1.shape
    table = torch.cat([torch.zeros(1), cell.levels])
    torch.testing.assert_close(F1, torch.sign(idx.float()) * table[idx.abs().long()])
    counts = torch.stack([(idx.abs() == k).sum((1, 2)) for k in range(1, 5)], 1)
    assert torch.equal(cell.last_level_counts, counts)
    assert cell.last_sparsity == pytest.approx(float((idx == 0).float().mean()))
    assert 0.5 < cell.last_sparsity < 1.0  # default init: few pulses, but some
    with torch.no_grad():
        cell.gam.mul_(100)
    with torch.no_grad():
        for _ in range(30):
            _, state = cell(x, state)
    f_max32 = float(np.float32(cell.f_max))  # the window as the float32 state holds it
    assert float(state[1].abs().max()) == pytest.approx(cell.f_max)  # saturates at the window...
    assert float(state[1].abs().max()) <= f_max32  # ...and never beyond
    assert cell.last_sparsity < 0.5


def test_mstpn_straight_through_gradient():
    torch.manual_seed(5)
    cell = MSTPNCell(6, 3, _device(), DT, use_kernel=False).double()
    with torch.no_grad():
        cell.gam.fill_(1e-6)  # every dF rounds to 0: no pulse anywhere
    zh = torch.rand(2, 9, dtype=torch.float64)
    h = torch.rand(2, 3, dtype=torch.float64)
    F = torch.zeros(2, 3, 9, dtype=torch.float64)
    F_new, idx = cell.plastic_update(F, h, zh)
    assert not F_new.any() and not idx.any()
    F_new.sum().backward()
    # STE: d/dGamma of sum(Gamma * h zh^T) = sum_b h zh^T although the forward value is 0
    torch.testing.assert_close(cell.gam.grad, torch.einsum("bi,bj->ij", h, zh))


def test_mstpn_weight_clamp_and_composed_path():
    torch.manual_seed(6)
    cell = MSTPNCell(4, 3, _device(), DT)
    with torch.no_grad():
        cell.W[0, 0] = 3.0
        cell.W[1, 1] = -2.0
    cell.apply_constraints()
    assert float(cell.W.detach().abs().max()) <= 1.0 and float(cell.W.detach()[0, 0]) == 1.0

    class Composed(MSTPNCell):
        def mvm(self, z_hat, F):
            return super().mvm(z_hat, F)

    other = Composed(4, 3, _device(), DT)
    other.load_state_dict(cell.state_dict())
    assert other._composed() and not cell._composed()
    x = torch.rand(2, 4)
    s1, s2 = cell.initial_state(2), other.initial_state(2)
    for _ in range(3):
        h1, s1 = cell(x, s1)
        h2, s2 = other(x, s2)
    torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s1[1], s2[1], rtol=1e-5, atol=1e-6)


def test_presynaptic_normalisation_in_dac_range():
    cell = MSTPNCell(5, 2, _device(), DT)
    zh = cell.presynaptic(torch.tensor([[0.0, 3.0, -6.0, 1.0, 2.0]]), torch.tensor([[0.5, -0.25]]))
    assert float(zh.abs().max()) == pytest.approx(1.0, abs=1e-6)
    assert float(zh[0, 2]) == pytest.approx(-1.0, abs=1e-6)
    assert not cell.presynaptic(torch.zeros(1, 5), torch.zeros(1, 2)).any()


def test_level_counts_gpu_form_and_lazy_counting():
    """The GPU's bincount form counts as the CPU's scatter-add; the torch path counts on first reading,
    and what it reads is the last step's histogram (never an earlier one)."""
    from stoxbar.devices import dynamics

    g = torch.Generator().manual_seed(0)
    idx = torch.randint(-4, 5, (3, 8, 40), generator=g).to(torch.int8)
    want = torch.stack([(idx.abs() == k).sum((1, 2)) for k in range(1, 5)], 1)
    assert torch.equal(dynamics.level_counts(idx, 4), want)
    assert torch.equal(dynamics._level_counts_bincount(idx.abs().reshape(3, -1).long(), 4), want)
    torch.manual_seed(5)
    cell = MSTPNCell(40, 8, _device(), DT, use_kernel=False, record_levels=True)
    with torch.no_grad():
        cell.gam.mul_(20)
    state, x = cell.initial_state(2), torch.rand(2, 40)
    assert cell.last_level_counts is None
    for _ in range(3):
        _, state = cell(x, state)
    last = cell.last_level_idx
    assert torch.equal(cell.last_level_counts, torch.stack([(last.abs() == k).sum((1, 2)) for k in range(1, 5)], 1))
    assert int(cell.last_level_counts.sum()) > 0


@pytest.mark.skipif(not cells.kernel_available(), reason="native kernels not built (setup.py)")
def test_mstpn_backward_sparse_row_after_dense_row_at_saturation():
    """The backward requests a sparse env's nonzero cells only, into arrays a dense env before it has
    filled: they must be zeroed in between. Env 0 dense (a pulse at every cell), env 1 sparse with its F
    just inside the window, where a stale pulse would push the clamp mask shut: gradients = the reference."""
    torch.manual_seed(5)
    n_in, H = 64, 3
    m = MSTPNCell(n_in, H, _device(), DT).double()
    with torch.no_grad():
        m.theta.fill_(8.0)  # tau near tau_max: lam F stays within one level of f_max
        m.gam.copy_(torch.sign(torch.randn(H, m.n_pre)) * 50 * float(m.levels[-1]))  # every dense cell pulses
    x = torch.zeros(2, n_in, dtype=torch.float64)
    x[0] = torch.rand(n_in, dtype=torch.float64) + 0.5
    x[1, 3] = 0.7  # 1 nonzero in 67 presynaptic cells: the sparse form
    lam = m.lambda_().detach()
    gap = float((m.f_max * (1 - lam)).max())
    assert gap < float(m.levels[0])  # one stale level step crosses the window's edge
    F0 = (torch.sign(torch.randn(2, H, m.n_pre, generator=torch.Generator().manual_seed(1))) * m.f_max).double()
    w = torch.randn(2, H, m.n_pre, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for use_kernel in (True, False):
        m.use_kernel = use_kernel
        m.zero_grad()
        F = F0.clone().requires_grad_()
        h, (_, F1) = m(x, (torch.zeros(2, H, dtype=torch.float64), F))
        (h.sum() + (F1 * w).sum()).backward()
        grads.append([F.grad.clone(), m.theta.grad.clone(), m.gam.grad.clone(), m.W.grad.clone()])
        counts = m.last_level_counts.sum(dim=1)
        assert int(counts[0]) == H * n_in and 0 < int(counts[1]) <= H  # h_prev 0: no h pulses
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("use_kernel", KERNEL)
def test_mstpn_with_frozen_zero_gamma_is_a_plain_recurrent_layer(use_kernel):
    """Gamma frozen at 0 (the comparison's recurrent baseline): F stays exactly 0 and the step is
    h = tanh(gain W z_hat + b), taken without the plastic step; values and gradients = the plastic
    step's (the torch reference with Gamma 0 as a trainable zero), resets included; a nonzero F or a
    Gamma that trains takes the plastic step."""
    torch.manual_seed(4)
    xs = [torch.rand(3, 5, dtype=torch.float64) for _ in range(6)]
    dones = [torch.tensor([False, t == 2, False]) for t in range(6)]

    def run(frozen):
        torch.manual_seed(5)
        m = MSTPNCell(5, 4, _device(), DT, use_kernel=use_kernel, record_levels=True).double()
        with torch.no_grad():
            m.gam.zero_()
        if frozen:
            m.gam.requires_grad_(False)
        else:
            m.use_kernel = False
        state, loss = m.initial_state(3), 0
        for x, d in zip(xs, dones):
            h, state = m(x, state)
            assert not state[1].any() and int(m.last_level_counts.sum()) == 0 and not m.last_level_idx.any()
            loss = loss + (h * torch.linspace(-1, 1, 4, dtype=h.dtype)).sum()
            state = m.reset_state(state, d)
        loss.backward()
        return m, state, [m.W.grad, m.gain.grad, m.b.grad]

    fast, s_f, g_f = run(True)
    ref, s_r, g_r = run(False)
    assert fast._known_zero is not None and fast._known_zero[0] is s_f[1]  # the still step ran
    torch.testing.assert_close(s_f[0], s_r[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert fast.theta.grad is None and not ref.theta.grad.any()  # theta moves nothing while F is 0
    F = torch.full((3, 4, 9), 0.01, dtype=torch.float64)  # a nonzero F decays: the plastic step
    _, (_, F1) = fast(xs[0], (torch.zeros(3, 4, dtype=torch.float64), F))
    torch.testing.assert_close(F1, F * fast.lambda_().detach())


@pytest.mark.skipif(not cells.kernel_available(), reason="native kernels not built (setup.py)")
@pytest.mark.parametrize("n_levels", [1, 3, 9, 16])
def test_mstpn_kernel_forward_equals_reference_for_each_level_count(n_levels):
    """The forward kernel's level loop for devices with 1 to 16 pulse levels: the new F, the recorded
    levels and the per-level counts equal the torch reference's bits, every level and the window reached."""
    import dataclasses

    dev = dataclasses.replace(_device(), st_pulse_levels=tuple((1.0 + 0.1 * k, 10e-6) for k in range(n_levels)))
    torch.manual_seed(n_levels)
    cell = MSTPNCell(30, 5, dev, DT, record_levels=True)
    assert cell.levels.numel() == n_levels
    with torch.no_grad():
        cell.gam.uniform_(-1.0, 1.0).mul_(2 * float(cell.levels[-1]))  # every level and the clamp reached
        cell.theta.uniform_(4, 8)  # slow decay: the window fills
    x = torch.rand(3, 30)
    state = cell.initial_state(3)
    for _ in range(int(cell.f_max / float(cell.levels[0])) + 3):
        out = []
        for use_kernel in (True, False):
            cell.use_kernel = use_kernel
            h, new = cell(x, state)
            out.append((h, new[1], cell.last_level_idx.clone(), cell.last_level_counts.clone()))
        (h_k, F_k, i_k, c_k), (h_r, F_r, i_r, c_r) = out
        assert torch.equal(F_k, F_r) and torch.equal(i_k, i_r) and torch.equal(c_k, c_r)
        torch.testing.assert_close(h_k, h_r)
        state = new
    assert int(i_k.abs().max()) == n_levels and bool((F_k.abs() == cell.f_max).any())


@pytest.mark.skipif(not cells.kernel_available(), reason="native kernels not built (setup.py)")
@pytest.mark.parametrize("n_levels", [1, 3, 9])
def test_mstpn_kernel_gradients_equal_reference_for_each_level_count(n_levels):
    """Training's dense rows (no level record): the kernels' one-pass request for up to 8 levels and the
    two-pass form above give the reference's F and gradients, the clamp mask included."""
    import dataclasses

    dev = dataclasses.replace(_device(), st_pulse_levels=tuple((1.0 + 0.1 * k, 10e-6) for k in range(n_levels)))
    torch.manual_seed(10 + n_levels)
    cell = MSTPNCell(12, 4, dev, DT).double()
    with torch.no_grad():
        cell.gam.uniform_(-1.0, 1.0).mul_(8 * float(cell.levels[-1]))
        cell.theta.uniform_(4, 8)
    xs = [torch.rand(3, 12, dtype=torch.float64) for _ in range(2 * int(cell.f_max / float(cell.levels[0])) + 3)]
    cell.use_kernel = True
    F_k, g_k = _run(cell, xs)
    cell.use_kernel = False
    F_r, g_r = _run(cell, xs)
    assert torch.equal(F_k, F_r) and bool((F_k.abs() == cell.f_max).any())
    for a, b in zip(g_k, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("use_kernel", KERNEL)
def test_mstpn_stopped_hebbian_activity_gradient(use_kernel):
    """``hebbian_activity_grad = False`` (training's ``--hebbian-grad stop_activity``): the forward is unchanged,
    and the Hebbian update Gamma (h z^T) passes no gradient to h and z: a loss on F_new alone then gives W, gain,
    b and the input no gradient (they reach F_new only through h and z), while Gamma and theta keep theirs (the
    same values as with the full gradient); over several steps the kernel's gradients equal the torch reference's."""
    torch.manual_seed(4)
    cell = MSTPNCell(10, 4, _device(), DT).double()
    with torch.no_grad():
        cell.gam.uniform_(-3.0, 3.0)
        cell.theta.uniform_(-6, 6)
    cell.use_kernel = use_kernel
    x = torch.rand(3, 10, dtype=torch.float64)
    F0 = torch.rand(3, 4, 14, dtype=torch.float64) * cell.f_max * 0.5
    c = torch.randn(3, 4, 14, dtype=torch.float64)

    def one_step(flag):
        cell.zero_grad()
        cell.hebbian_activity_grad = flag
        xg = x.clone().requires_grad_()
        h, (_, F1) = cell(xg, (torch.zeros(3, 4, dtype=torch.float64), F0))
        (F1 * c).sum().backward()
        return h.detach(), F1.detach(), {n: p.grad for n, p in cell.named_parameters()}, xg.grad

    h_full, F_full, g_full, gx_full = one_step(True)
    h_stop, F_stop, g_stop, gx_stop = one_step(False)
    assert torch.equal(h_full, h_stop) and torch.equal(F_full, F_stop)
    for name in ("W", "gain", "b"):
        assert float(g_full[name].abs().max()) > 0 and (g_stop[name] is None or not bool(g_stop[name].any()))
    assert float(gx_full.abs().max()) > 0 and (gx_stop is None or not bool(gx_stop.any()))
    for name in ("gam", "theta"):
        assert float(g_stop[name].abs().max()) > 0
        torch.testing.assert_close(g_stop[name], g_full[name], rtol=1e-12, atol=0)

    if use_kernel:  # several steps: kernel = reference, and the stop changes the gradient
        xs = [torch.rand(3, 10, dtype=torch.float64) for _ in range(6)]
        cell.hebbian_activity_grad = False
        F_k, g_k = _run(cell, xs)
        cell.use_kernel = False
        F_r, g_r = _run(cell, xs)
        torch.testing.assert_close(F_k, F_r, rtol=1e-10, atol=1e-12)
        for a, b in zip(g_k, g_r):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
        cell.hebbian_activity_grad = True
        _, g_full = _run(cell, xs)
        assert not torch.allclose(g_full[0], g_r[0])  # W's gradient: the loop through F is gone
