"""Recurrent short-term-plasticity cells: the original STPN and the device-constrained m-STPN.

Shapes: batch B (one per environment), hidden H, presynaptic P = n_in + H, z = [x ; h_prev].
State = (h [B, H], F [B, H, P]); F is per environment and zero at episode start.

STPNCell -- the STPN of Garcia Rodriguez et al. (ICML 2022), Pong configuration (docs/stpn.md 1.1):
    S = W + F;  n_i = ||S_i||_2 + 1e-16;  h = tanh((S z)/n + b);  F <- Lambda*F/n + Gamma*(h z^T)
Lambda, Gamma per synapse, unconstrained; init docs/stpn.md 1.2. G = S/n is never materialised: the
output is divided by the row norm instead (docs/training-notes.md).

MSTPNCell -- the m-STPN: the STPN restricted to what the SrTiO3 device can do (docs/paper.md 2).
  * Presynaptic normalisation (digital periphery) instead of per-row efficacy normalisation: a
    row norm of W + F needs every synapse read, and the paper lists "presynaptic input
    normalisation" among the digital operations. z_hat = z / (max_j |z_j| + 1e-6) lies in
    [-1, 1], the DAC's input range.
  * Weight units: w = (G+ - G-)/g_range_s, so the long-term W lives in [-1, 1] (device window;
    the optimiser's result is clamped there by `apply_constraints`, never silently during
    the forward) and the short-term F in [-f_max, f_max], f_max = st_g_max_s/g_range_s
    (the short-term window of one device of the pair).
  * a = (W + F) z_hat (the crossbar MVM);  h = tanh(gain * a + b), per-unit digital gain and bias.
    Init (assumption): W ~ U(-0.5, 0.5), i.e. the weights use the conductance window (analog
    precision: read noise and ADC steps are relative to the window) with 2x headroom, and
    gain = sqrt(3/P)/0.5 so gain*W has var 1/P (unit-scale pre-activations, like the STPN's
    unit-norm G); b ~ U(-1/sqrt(H), 1/sqrt(H)). The short-term window f_max (~0.23 for
    sto_2024) is then a modulation of W, as the device preset intends, not 10x W. Because W
    is 1/gain larger than a conventional weight, `param_groups` gives it Adam lr x (1/gain0)
    (x15 for P = 2656), so gain*W learns at the same pace as a plain layer under the base lr.
  * Lambda realised by the per-synapse decay bias, through the device contract
    (stoxbar.devices.base.MemristiveDevice): learned raw theta,
    tau = tau_min * (tau_max/tau_min)**sigmoid(theta) (always within the device's tau range),
    v_bias = device.v_bias_for_tau(tau), Lambda = device.decay_factor(dt, v_bias), dt = agent
    step period; all differentiable torch ops, so a device with another decay law trains with
    its own law (for the exponential STO law Lambda = exp(-dt/tau)). theta ~ U(-2, 2) at init
    (assumption: spans most of the log range, the analogue of the STPN's Lambda ~ U(0, 1)).
    `v_bias(chip)` turns the learned per-step decay into the bias a chip device needs for the
    same decay, chip.v_bias_for_tau(chip.tau_for_decay_factor(Lambda, dt)).
  * theta's gradient is small: Lambda moves F only where pulses landed (~0.5 % of the synapses
    per step), and dLambda/dtheta ~ Lambda (dt/tau) ln(tau_max/tau_min) s(1-s) is ~1e-3 at long
    tau. Measured on the shipped checkpoint (four real A2C updates): mean |dL/dtheta| 2e-8 to
    1.3e-7 per synapse, against Adam's eps 1e-5 -- Adam's step was lr g/eps, ~300x below lr, so
    theta never left its initialisation. `param_groups` therefore gives theta its own Adam eps,
    eps * THETA_EPS_SCALE (docs/stpn.md §5.5).
  * Hebbian magnitude computed digitally, dF = Gamma * (h z_hat^T), then discretised to the
    device's short-term pulse levels in weight units (levels = dG/g_range_s, signed, nearest
    level, 0 below half the smallest level -> sparse pulses), straight-through gradient.
    F <- clamp(Lambda*F + dF_q, -f_max, f_max). Gamma ~ U(-l1, l1) at init, l1 the smallest
    level (assumption: few pulses at first; Gamma grows by gradient through the STE).
  * Pulse bookkeeping: `last_level_counts` [B, L] (pulses per level, both signs, this step),
    `last_sparsity` (fraction of synapses without a pulse), and with `record_levels=True` the
    full index tensor `last_level_idx` int8 [B, H, P]: 0 = no pulse, +-k = level k (1-based,
    ascending as device.short_term_levels()), sign = device of the pair (+ on G+, - on G-).

Both cells run a native CPU kernel (csrc/kernels.cpp, built at install; one pass over F per step
forward, two reading passes and one write in backward, no temporaries of F's size; within
`state_in_place`, without a gradient, F_new overwrites the F given: batched play) when it is
built, else the pure-torch reference (`stpn_step_reference`, `mstpn_plastic_reference`; same
maths). The m-STPN's F update is the substrate's short-term step with g_range = 1 (weight units
are its conductance units): one C++ implementation (csrc/short_term.h) and one torch
implementation (:func:`stoxbar.crossbar.fused.short_term_change`), one quantiser
(:func:`stoxbar.devices.dynamics.quantise_short_term`). STOXBAR_NO_KERNEL=1 forces the torch
path. With Gamma frozen at 0 (no gradient) on a zero F, the m-STPN step cannot pulse and F stays 0
exactly: it runs as the plain recurrent layer it is (`MSTPNCell._still`; the comparison's recurrent
baseline). MSTPNCell's step is split into overridable `presynaptic`, `mvm`, `activation`,
`plastic_update`; a subclass that overrides any
of the last three (e.g. the analog one) automatically uses the composed path.

May import: torch, stoxbar.core.validation, stoxbar.core.native, stoxbar.devices, stoxbar.crossbar.fused,
stoxbar.peripherals.drivers.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.graph import increment_version

from stoxbar.core import native
from stoxbar.crossbar import fused
from stoxbar.devices import dynamics
from stoxbar.peripherals.drivers import BIAS_ADDRESSINGS as DECAY_ADDRESSINGS
from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

if TYPE_CHECKING:  # pragma: no cover
    from stoxbar.devices.sto import STODevice

State = Tuple[Tensor, Tensor]
NORM_EPS = 1e-16  # STPN code: row norm + 1e-16 (docs/stpn.md 1.1)
PRESYN_EPS = 1e-6  # m-STPN: z / (max|z| + eps); assumption, keeps an all-zero z at zero
W_INIT = 0.5  # m-STPN: W ~ U(-0.5, 0.5) weight units at init; assumption (module docstring)
# theta's Adam eps relative to the base eps: 1e-5 x 1e-3 = 1e-8 (torch's default), below the measured
# mean per-synapse |dL/dtheta| of 2e-8..1.3e-7 (docs/stpn.md §5.5); assumption, chosen from that measurement
THETA_EPS_SCALE = 1e-3
# what the decay biases may depend on: the crossbar's bias-addressing schemes (DECAY_ADDRESSINGS, crossbar/bias.py):
# theta's shape [H, P] per synapse, [1, P] one per row (presynaptic input), [H, 1] one per column (unit),
# [1, 1] one for the layer; row_col learns a row part theta_row [1, P] and a column part theta [H, 1]
_THETA_SHAPE = {"per_cell": lambda h, p: (h, p), "row_col": lambda h, p: (h, 1), "per_row": lambda h, p: (1, p),
                "per_column": lambda h, p: (h, 1), "global": lambda h, p: (1, 1)}

# ----------------------------------------------------------------------------------------------
# pure-torch reference steps (also the fallback path)
# ----------------------------------------------------------------------------------------------


def stpn_step_reference(z: Tensor, F: Tensor, W: Tensor, b: Tensor, lam: Tensor, gam: Tensor) -> State:
    """One STPN step (docs/stpn.md 1.1) in plain torch ops. Returns (h [B,H], F_new [B,H,P])."""
    u = z @ W.t() + torch.bmm(F, z.unsqueeze(-1)).squeeze(-1)
    n = torch.linalg.vector_norm(W + F, dim=-1) + NORM_EPS
    h = torch.tanh(u / n + b)
    F_new = lam * F / n.unsqueeze(-1) + gam * (h.unsqueeze(-1) * z.unsqueeze(1))
    return h, F_new


def mstpn_plastic_reference(F: Tensor, h: Tensor, zh: Tensor, lam: Tensor, gam: Tensor, levels: Tensor,
                            f_max: float) -> Tuple[Tensor, Tensor]:
    """m-STPN short-term update: clamp(Lambda*F + Q(Gamma*(h zh^T)), +-f_max), STE gradient.

    The substrate's short-term step (:func:`stoxbar.crossbar.fused.short_term_change`) on one
    tile with ``g_range = 1``: weight units are its conductance units. ``levels`` [L] (weight
    units, ascending). Returns (F_new [B, H, P], signed level int8 [B, H, P]).
    """
    table = _level_table(levels, F.dtype)
    F_new, idx = fused.short_term_change(F.unsqueeze(1), lam.unsqueeze(0), gam.unsqueeze(0), h, zh.unsqueeze(1),
                                         1.0, dynamics.short_term_thresholds(table), table, f_max)
    return F_new.squeeze(1), idx.squeeze(1)


def _level_table(levels: Tensor, dtype: torch.dtype) -> Tensor:
    """``[L + 1]`` level table (entry 0 = no pulse) of the quantiser, in weight units."""
    return torch.cat([levels.new_zeros(1), levels]).to(dtype)


MAX_LEVELS = 16  # pulse levels a cell accepts (signed level indices are int8)


def kernel_available() -> bool:
    """True if the native kernels are loaded (else the torch reference is used)."""
    return native.available()


class _STPNStep(torch.autograd.Function):
    """Native STPN step: (z, F, W, b, lam, gam) -> (h, F_new)."""

    @staticmethod
    def forward(ctx, z, F, W, b, lam, gam):
        z, F, W, b, lam, gam = (t.contiguous() for t in (z, F, W, b, lam, gam))
        h, Fo, n, u = native.extension().stpn_forward(z, F, W, b, lam, gam, None)
        ctx.save_for_backward(z, F, W, lam, gam, h, n, u)
        ctx.set_materialize_grads(False)
        return h, Fo

    @staticmethod
    def backward(ctx, gh, gFo):
        z, F, W, lam, gam, h, n, u = ctx.saved_tensors
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        gFo = None if gFo is None else gFo.contiguous()
        gz, gF, gW, gb, glam, ggam = native.extension().stpn_backward(z, F, W, lam, gam, h, n, u, gFo, gh,
                                                                      ctx.needs_input_grad[1])
        return gz, (gF if ctx.needs_input_grad[1] else None), gW, gb, glam, ggam


def _mstpn_native(zh, F, W, gain, b, lam, gam, levels, f_max, record, out=None):
    """The native m-STPN step on contiguous operands: (h, F_new, counts [B, L], idx or None, u, dg, thr);
    ``out``: the new F's tensor (None: a fresh one; F itself: in place)."""
    dg = _level_table(levels, F.dtype).contiguous()
    thr = dynamics.short_term_thresholds(dg).contiguous()
    Fo, h, u, cnt, idx = native.extension().mstpn_forward(zh, F, W, gain, b, lam, gam, thr, dg, f_max, record, out)
    ge = cnt.sum(1)  # [B, L]: synapses with |d| >= thr[m]
    counts = ge - torch.cat([ge[:, 1:], ge.new_zeros(F.shape[0], 1)], dim=1)
    return h, Fo, counts, (idx if record else None), u, dg, thr


class _MSTPNStep(torch.autograd.Function):
    """Native m-STPN step: (zh, F, W, gain, b, lam, gam, levels, f_max, record) -> (h, F_new, cnt, idx).

    The F update inside is the substrate's short-term step (csrc/short_term.h) with g_range = 1.
    """

    @staticmethod
    def forward(ctx, zh, F, W, gain, b, lam, gam, levels, f_max, record, hebbian_activity_grad=True):
        zh, F, W, gain, b, lam, gam = (t.contiguous() for t in (zh, F, W, gain, b, lam, gam))
        h, Fo, counts, idx, u, dg, thr = _mstpn_native(zh, F, W, gain, b, lam, gam, levels, f_max, record)
        ctx.save_for_backward(zh, F, W, gain, lam, gam, h, u, dg, thr)
        ctx.f_max, ctx.hebbian_activity_grad = f_max, hebbian_activity_grad
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(counts)
        if idx is not None:
            ctx.mark_non_differentiable(idx)
        return h, Fo, counts, idx

    @staticmethod
    def backward(ctx, gh, gFo, _gc=None, _gi=None):
        zh, F, W, gain, lam, gam, h, u, dg, thr = ctx.saved_tensors
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        gFo = None if gFo is None else gFo.contiguous()
        gzh, gF, gW, ggain, gb, glam, ggam = native.extension().mstpn_backward(
            zh, F, W, gain, lam, gam, thr, dg, ctx.f_max, h, u, gFo, gh, ctx.needs_input_grad[1],
            ctx.hebbian_activity_grad)
        return gzh, (gF if ctx.needs_input_grad[1] else None), gW, ggain, gb, glam, ggam, None, None, None, None


# ----------------------------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------------------------


class _CellBase(nn.Module):
    """State handling shared by both cells: state = (h [B,H], F [B,H,P])."""

    n_in: int
    hidden: int

    @property
    def n_pre(self) -> int:
        """Presynaptic inputs per unit, P = n_in + hidden."""
        return self.n_in + self.hidden

    def initial_state(self, batch: int) -> State:
        """Zero (h, F) for ``batch`` environments (episode start)."""
        check_int("batch", batch, 1)
        p = self.W
        return (p.new_zeros(batch, self.hidden), p.new_zeros(batch, self.hidden, self.n_pre))

    @staticmethod
    def reset_state(state: State, done: Tensor) -> State:
        """Zero h and F of the environments where ``done`` [B] (bool) is set; differentiable."""
        h, F = state
        done = torch.as_tensor(done, dtype=torch.bool, device=h.device)
        if done.shape != h.shape[:1]:
            raise ConfigError(f"done mask shape {tuple(done.shape)} does not match batch {h.shape[0]}")
        if not bool(done.any()):
            return state
        keep = (~done).to(h.dtype)
        return h * keep[:, None], F * keep[:, None, None]

    def _check(self, x: Tensor, state: State) -> None:
        h, F = state
        B = x.shape[0]
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ConfigError(f"cell input has shape {tuple(x.shape)}; expected [B, {self.n_in}]")
        if h.shape != (B, self.hidden) or F.shape != (B, self.hidden, self.n_pre):
            raise ConfigError(f"state shapes h {tuple(h.shape)}, F {tuple(F.shape)}; expected "
                              f"[{B}, {self.hidden}] and [{B}, {self.hidden}, {self.n_pre}]")

    def _fused_ok(self, *tensors: Tensor) -> bool:
        return self.use_kernel and native.usable(*tensors)

    # True (set by :func:`state_in_place`): without a gradient the native step writes F_new into the F it was
    # given, for a caller that keeps no earlier state (batched play); False: a fresh F_new each step
    state_in_place = False

    def _in_place(self, F: Tensor) -> bool:
        return self.state_in_place and not torch.is_grad_enabled() and F.is_contiguous()


@contextmanager
def state_in_place(cell: nn.Module) -> Iterator[None]:
    """Within the block, ``cell``'s native step (STPN or m-STPN, no gradient recorded) overwrites the F it is
    given with F_new instead of allocating it: the same numbers, no fresh [B, H, P] tensor per step (68 MB at
    100 games, its pages faulted in anew by every step). For a caller that keeps no earlier state. A cell whose
    step does not run these kernels (the analog one, whose crossbar holds F and steps it in place) is unaffected;
    another module is left as it is."""
    if not isinstance(cell, _CellBase):
        yield
        return
    old = cell.state_in_place
    cell.state_in_place = True
    try:
        yield
    finally:
        cell.state_in_place = old


class STPNCell(_CellBase):
    """Original STPN (docs/stpn.md 1.1, Pong config) with ``hidden`` units over z = [x ; h_prev]."""

    def __init__(self, n_in: int, hidden: int, use_kernel: bool = True):
        super().__init__()
        self.n_in, self.hidden = check_int("n_in", n_in, 1), check_int("hidden", hidden, 1)
        self.use_kernel = use_kernel
        P = self.n_pre
        stdv = 1.0 / math.sqrt(hidden)  # docs/stpn.md 1.2: k = 1/H, stdv = sqrt(k)
        self.W = nn.Parameter(torch.empty(hidden, P).uniform_(-stdv, stdv))
        self.b = nn.Parameter(torch.empty(hidden).uniform_(-stdv, stdv))
        self.lam = nn.Parameter(torch.rand(hidden, P))  # Lambda ~ U(0, 1)
        self.gam = nn.Parameter(torch.empty(hidden, P).uniform_(-1e-3 * stdv, 1e-3 * stdv))  # docs/stpn.md 1.2

    def step_params(self) -> Tuple[Tensor, Tensor]:
        """(Lambda, Gamma) as used by the step (computed once per rollout by callers who wish)."""
        return self.lam, self.gam

    def forward(self, x: Tensor, state: State, params: Optional[Tuple[Tensor, Tensor]] = None
                ) -> Tuple[Tensor, State]:
        """One step: returns (h [B,H], (h, F_new))."""
        self._check(x, state)
        h_prev, F = state
        lam, gam = params if params is not None else self.step_params()
        z = torch.cat([x, h_prev], dim=1)
        if self._fused_ok(z, F, self.W, self.b, lam, gam):
            if self._in_place(F):
                ops = (t.contiguous() for t in (z, F, self.W, self.b, lam, gam))
                h, F_new = native.extension().stpn_forward(*ops, F)[:2]
                increment_version(F)
            else:
                h, F_new = _STPNStep.apply(z, F, self.W, self.b, lam, gam)
        else:
            h, F_new = stpn_step_reference(z, F, self.W, self.b, lam, gam)
        return h, (h, F_new)

    def param_groups(self, lr: float, eps: Optional[float] = None, decay_lr_scale: float = 1.0) -> list:
        """One optimiser group: every parameter at ``lr`` (the optimiser's own eps); the STPN has no
        device time constants, so ``decay_lr_scale`` (the m-STPN's theta lr factor) must be 1."""
        if decay_lr_scale != 1.0:
            raise ConfigError(f"theta_lr_scale = {decay_lr_scale}: only an m-STPN has time constants (theta) to "
                              "scale; allowed for cell 'stpn': 1")
        return [{"params": list(self.parameters()), "lr": lr}]

    def apply_constraints(self) -> None:
        """The STPN has no parameter constraints (Lambda, Gamma unconstrained, docs/stpn.md 1.1)."""


class MSTPNCell(_CellBase):
    """m-STPN on STO synapses (see module docstring); ``dt_s`` = agent step period (s)."""

    def __init__(self, n_in: int, hidden: int, device: "STODevice", dt_s: float, use_kernel: bool = True,
                 record_levels: bool = False, decay_addressing: str = "per_cell"):
        super().__init__()
        self.decay_addressing = check_choice("decay_addressing", decay_addressing, DECAY_ADDRESSINGS)
        self.n_in, self.hidden = check_int("n_in", n_in, 1), check_int("hidden", hidden, 1)
        self.dt_s = check_range("dt_s", dt_s, 0.0, None, lo_open=True, unit="s")
        self.device = device
        self.use_kernel, self.record_levels = use_kernel, record_levels
        g_range = float(device.g_range_s)
        self.f_max = float(device.st_g_max_s) / g_range  # short-term window in weight units
        _, dg = device.short_term_levels()
        lv = torch.as_tensor([float(v) for v in dg], dtype=torch.float64) / g_range
        if lv.numel() < 1 or lv.numel() > MAX_LEVELS or not bool((lv > 0).all()) or not bool((lv[1:] > lv[:-1]).all()):
            raise ConfigError(f"device.short_term_levels() dG must be 1..{MAX_LEVELS} positive ascending values, "
                              f"got {lv.tolist()} (weight units)")
        self.register_buffer("levels", lv.to(torch.get_default_dtype()), persistent=False)
        self.tau_min_s, self.tau_max_s = float(device.tau_min_s), float(device.tau_max_s)
        P = self.n_pre
        stdv = 1.0 / math.sqrt(hidden)
        # W uses the conductance window (half of it at init, headroom to learn); the digital gain
        # restores unit-scale pre-activations: gain * W has var 1/P, like the STPN's unit-norm G.
        gain0 = math.sqrt(3.0 / P) / W_INIT
        self.W = nn.Parameter(torch.empty(hidden, P).uniform_(-W_INIT, W_INIT))
        self.gain = nn.Parameter(torch.full((hidden,), gain0))
        self.w_lr_scale = 1.0 / gain0  # W's Adam lr multiplier (see param_groups)
        self.b = nn.Parameter(torch.empty(hidden).uniform_(-stdv, stdv))
        # the decay parameters: one per what the bias scheme drives (decay_parameters(); docs/stpn.md §10)
        self.theta = nn.Parameter(torch.empty(_THETA_SHAPE[self.decay_addressing](hidden, P)).uniform_(-2.0, 2.0))
        if self.decay_addressing == "row_col":
            self.theta_row = nn.Parameter(torch.empty(1, P).uniform_(-2.0, 2.0))
        l1 = float(lv[0])
        self.gam = nn.Parameter(torch.empty(hidden, P).uniform_(-l1, l1))
        self._level_counts: Optional[Tensor] = None
        self._uncounted_idx: Optional[Tensor] = None  # the last update's levels, counted when asked
        self.last_level_idx: Optional[Tensor] = None
        self._lam_cache: Optional[Tuple[tuple, Tensor]] = None
        self._known_zero: Optional[Tuple[Tensor, int]] = None  # the F the still step returned (_still)
        self.h_feedback = True  # False: the layer sees only the encoder (h part of z zeroed; an ablation)
        # False: in backward, the Hebbian update Gamma * (h z_hat^T) passes no gradient to its activity factors
        # h and z_hat (Gamma's gradient stays); the forward is unchanged. Cuts the loop F -> h -> F' through
        # which the BPTT gradient explodes (docs/stpn.md §11.5); a training setting (TrainConfig.hebbian_grad)
        self.hebbian_activity_grad = True

    # -- decay: Lambda through the bias voltage ------------------------------------------------
    def decay_parameters(self) -> Tuple[str, ...]:
        """Names of the parameters that set the decay biases (``theta``, and ``theta_row`` for row_col)."""
        return ("theta", "theta_row") if self.decay_addressing == "row_col" else ("theta",)

    def tau_s(self) -> Tensor:
        """Per-synapse decay time constant (s) [H, P], always in [tau_min_s, tau_max_s]."""
        if self.decay_addressing == "row_col":
            return self.device.tau_s(self.trained_v_bias())
        log_ratio = math.log(self.tau_max_s / self.tau_min_s)
        tau = self.tau_min_s * torch.exp(torch.sigmoid(self.theta) * log_ratio)
        return tau.expand(self.hidden, self.n_pre)

    @torch.no_grad()
    def fit_decay_to_bias(self, v_bias: Tensor) -> None:
        """Set the decay parameters to the least-squares fit (in volts) of a bias matrix ``v_bias`` [H, P]
        that this cell's addressing can express: the whole matrix (per_cell), its row or column means
        (per_row, per_column), its mean (global), the two-way additive fit m + r_i + c_j (row_col).

        How a network trained with one scheme starts fine-tuning under another (``stoxbar train
        --init-from CKPT --decay-addressing S``); for the STO law log tau is linear in V, so this is
        also the least-squares fit in log tau. Values the parametrisation cannot reach (sigmoid ends)
        are brought to within 1e-4 of its range.
        """
        v = torch.as_tensor(v_bias, dtype=torch.float64)
        if tuple(v.shape) != (self.hidden, self.n_pre):
            raise ConfigError(f"v_bias has shape {tuple(v.shape)}: expected ({self.hidden}, {self.n_pre})")
        lo, hi = float(self.device.v_bias_min_v), float(self.device.v_bias_max_v)

        def logit(frac: Tensor) -> Tensor:
            return torch.logit(frac.clamp(1e-4, 1.0 - 1e-4))

        if self.decay_addressing == "row_col":
            half = 0.5 * (hi - lo)
            m = v.mean()
            row, col = v.mean(0, keepdim=True) - m, v.mean(1, keepdim=True) - m  # [1, P], [H, 1]
            # V - lo = (row - min row + alpha) + (col - min col + beta): split the offset so both parts lie
            # in [0, half] where possible (centred between the parts' spans)
            off = float(m - lo + row.min() + col.min())
            s_r, s_c = float(row.max() - row.min()), float(col.max() - col.min())
            alpha = min(max(0.5 * (off + 0.5 * (s_c - s_r)), off - (half - s_c), 0.0), max(half - s_r, 0.0), max(off, 0.0))
            self.theta_row.copy_(logit((row - row.min() + alpha) / half))
            self.theta.copy_(logit((col - col.min() + off - alpha) / half))
            return
        dims = {"per_cell": (), "per_row": (0,), "per_column": (1,), "global": (0, 1)}[self.decay_addressing]
        v = v.mean(dims, keepdim=True) if dims else v
        tau = torch.as_tensor(self.device.tau_s(v.clamp(lo, hi)), dtype=torch.float64)
        frac = torch.log(tau / self.tau_min_s) / math.log(self.tau_max_s / self.tau_min_s)
        self.theta.copy_(logit(frac))

    def trained_v_bias(self) -> Tensor:
        """Per-synapse bias (V) [H, P] on the device the network is trained for.

        ``device.v_bias_for_tau(tau)``; under ``row_col`` addressing the bias itself is the learned
        quantity, ``V_ij = a_i - b_j`` with row voltage ``a_i = v_min + (R/2) sigmoid(theta_row_i)``
        and column voltage ``b_j = -(R/2) sigmoid(theta_j)`` (R the device's bias range), so every
        learned matrix is one the crossbar's lines can hold, inside the device's range. Rows are the
        presynaptic inputs (crossbar rows), columns the units. Differentiable (torch ops of the
        device contract); computed in float64 so the round trip through the device law adds no
        float32 rounding.
        """
        if self.decay_addressing == "row_col":
            half = 0.5 * (float(self.device.v_bias_max_v) - float(self.device.v_bias_min_v))
            v = (float(self.device.v_bias_min_v) + half * torch.sigmoid(self.theta_row.double())
                 + half * torch.sigmoid(self.theta.double()))
            return v.clamp(float(self.device.v_bias_min_v), float(self.device.v_bias_max_v))
        return self.device.v_bias_for_tau(self.tau_s().double())

    def held_bias_energy_j(self, through_w: bool = True) -> Tensor:
        """Energy (J, 0-d float64) the layer's decay biases draw over one step period on the device it trains for,
        differentiable to the decay parameters and to W: the chip's own price of the held bias
        (:func:`~stoxbar.devices.dynamics.bias_energy_j`, as ``CrossbarState`` books it) on the conductances the
        write-verified W programs (one device of each pair at ``g_min``, the other at ``g_min + |W| g_range``:
        ``CrossbarState.program``, no digital rescaling), the bias held for the whole step, the short-term
        increment left out (F's share of the conductance, small and state-dependent). A network's training can
        add it to its loss (``TrainConfig.bias_energy_coef``), so that every held bias has to earn its energy;
        ``through_w=False`` keeps W out of the gradient (the price then steers only the biases)."""
        dev = self.device
        w = (self.W if through_w else self.W.detach()).double().abs().clamp(max=1.0)  # the chip's window, |W| <= 1
        g_lt = 2.0 * float(dev.g_min_s) + w * float(dev.g_range_s)
        v = self.trained_v_bias()
        return dynamics.bias_energy_j(g_lt, torch.zeros((), dtype=g_lt.dtype), v, self.dt_s, dev, reduce=True)

    def lambda_(self) -> Tensor:
        """Per-synapse decay factor per step, ``device.decay_factor(dt, v_bias)`` (exp(-dt/tau) for STO).

        The device's own law at the bias the learned tau needs, differentiable to theta.
        """
        lam = self.device.decay_factor(self.dt_s, self.trained_v_bias())
        return lam.to(self.theta.dtype)

    def v_bias(self, device: Optional["STODevice"] = None) -> Tensor:
        """Per-synapse decay-control bias voltage (V) realising the learned decay on ``device`` (default: the cell's).

        The learned per-step decay Lambda (on the training device's law) is turned into the bias
        ``device`` needs for the same decay over one step period,
        ``device.v_bias_for_tau(device.tau_for_decay_factor(Lambda, dt))``; a tau outside that
        device's range is clamped to it first (a device with a narrower range realises the nearest
        decay it can).
        """
        device = self.device if device is None else device
        with torch.no_grad():
            lam = self.device.decay_factor(self.dt_s, self.trained_v_bias())
            tau = torch.as_tensor(device.tau_for_decay_factor(lam, self.dt_s), dtype=torch.float64)
            tau = tau.clamp(device.tau_min_s, device.tau_max_s)
        return torch.as_tensor(device.v_bias_for_tau(tau)).to(self.W.dtype)

    def step_params(self) -> Tuple[Tensor, Tensor]:
        """(Lambda, Gamma) for the step; compute once per rollout to save the device law per step.

        Without autograd (play, evaluation) Lambda is cached until theta changes (its version counter).
        """
        if torch.is_grad_enabled():
            return self.lambda_(), self.gam
        key = tuple((p._version, p.data_ptr(), p.dtype) for p in (getattr(self, n) for n in self.decay_parameters()))
        if self._lam_cache is None or self._lam_cache[0] != key:
            self._lam_cache = (key, self.lambda_())
        return self._lam_cache[1], self.gam

    # -- overridable pieces of the step ---------------------------------------------------------
    def presynaptic(self, x: Tensor, h_prev: Tensor) -> Tensor:
        """z_hat = [x ; h_prev] / (max|.| + eps), in [-1, 1] (digital periphery, DAC range); h_prev
        is zeroed when ``h_feedback`` is off (the no-feedback ablation)."""
        z = torch.cat([x, h_prev if self.h_feedback else torch.zeros_like(h_prev)], dim=1)
        return z / (z.abs().amax(dim=1, keepdim=True) + PRESYN_EPS)

    def mvm(self, z_hat: Tensor, F: Tensor) -> Tensor:
        """Crossbar read a = (W + F) z_hat (digital reference; analog subclasses override)."""
        return z_hat @ self.W.t() + torch.bmm(F, z_hat.unsqueeze(-1)).squeeze(-1)

    def activation(self, a: Tensor) -> Tensor:
        """Digital neuron: h = tanh(gain * a + b)."""
        return torch.tanh(self.gain * a + self.b)

    def plastic_update(self, F: Tensor, h: Tensor, z_hat: Tensor, params: Optional[Tuple[Tensor, Tensor]] = None
                       ) -> Tuple[Tensor, Tensor]:
        """F_new = clamp(Lambda*F + Q(Gamma * h z_hat^T), +-f_max); returns (F_new, level_idx int8). A subclass
        that keeps no levels (e.g. a chip that counts its pulses while pulsing) returns None for them and
        answers ``level_counts(None)``."""
        lam, gam = params if params is not None else self.step_params()
        return mstpn_plastic_reference(F, h, z_hat, lam, gam, self.levels.to(F.dtype), self.f_max)

    def level_counts(self, idx: Optional[Tensor]) -> Tensor:
        """Pulses per level (both signs) of the update ``plastic_update`` just made, [B, L]."""
        return dynamics.level_counts(idx, self.levels.numel())

    def _composed(self) -> bool:
        cls = type(self)
        return any(getattr(cls, m) is not getattr(MSTPNCell, m) for m in ("mvm", "activation", "plastic_update"))

    def forward(self, x: Tensor, state: State, params: Optional[Tuple[Tensor, Tensor]] = None
                ) -> Tuple[Tensor, State]:
        """One step: returns (h [B,H], (h, F_new)); pulse statistics in ``last_level_counts``."""
        self._check(x, state)
        h_prev, F = state
        params = params if params is not None else self.step_params()
        zh = self.presynaptic(x, h_prev)
        if not self._composed() and self._still(F, params[1]):
            # Gamma frozen at 0 on a zero F: no pulse (below every threshold), Lambda * 0 = 0, so F stays 0
            # exactly and the step is a plain recurrent layer h = tanh(gain W z_hat + b); F_new is F
            h = self.activation(zh @ self.W.t())
            self._uncounted_idx = None
            self._level_counts = F.new_zeros(F.shape[0], self.levels.numel(), dtype=torch.long)
            self.last_level_idx = F.new_zeros(F.shape, dtype=torch.int8) if self.record_levels else None
            self._known_zero = (F, F._version)
            return h, (h, F)
        if not self._composed() and self._fused_ok(zh, F, self.W, self.gain, self.b, *params):
            if self._in_place(F):
                ops = (t.contiguous() for t in (zh, F, self.W, self.gain, self.b, *params))
                h, F_new, counts, idx = _mstpn_native(*ops, self.levels, self.f_max, self.record_levels, out=F)[:4]
                increment_version(F)  # the kernel wrote F's memory: what keys on F's version sees the change
            else:
                h, F_new, counts, idx = _MSTPNStep.apply(zh, F, self.W, self.gain, self.b, params[0], params[1],
                                                         self.levels, self.f_max, self.record_levels,
                                                         self.hebbian_activity_grad)
            self._uncounted_idx = None
        else:
            a = self.mvm(zh, F)
            h = self.activation(a)
            hebb = (h, zh) if self.hebbian_activity_grad else (h.detach(), zh.detach())
            F_new, idx = self.plastic_update(F, *hebb, params)
            if idx is None:  # a plastic_update that keeps no levels has counted them: level_counts(None)
                counts, self._uncounted_idx = self.level_counts(None), None
            else:
                counts, self._uncounted_idx = None, idx
            idx = idx if self.record_levels else None
        self._level_counts, self.last_level_idx = counts, idx
        return h, (h, F_new)

    def _still(self, F: Tensor, gam: Tensor) -> bool:
        """True if this step cannot change F: Gamma frozen (no gradient) and all 0, F all 0 and not a
        leaf of a gradient (dF_new/dF = Lambda would be lost). F's check is skipped for the F this path
        returned last, unchanged since (its version counter)."""
        if gam.requires_grad or F.requires_grad or bool(gam.any()):
            return False
        known = self._known_zero
        return (known is not None and known[0] is F and known[1] == F._version) or not bool(F.any())

    @property
    def last_level_counts(self) -> Optional[Tensor]:
        """Pulses per level (both signs) of the last step, [B, L] (None before the first step).

        The native kernel counts while it pulses; the torch path counts here, on first reading: a
        histogram is bookkeeping, not part of the network's step (a GPU playing the agent never
        reads it, and a contended scatter-add was most of a GPU step, docs/paper-energy.md §2.3).
        """
        if self._uncounted_idx is not None:
            self._level_counts, self._uncounted_idx = self.level_counts(self._uncounted_idx), None
        return self._level_counts

    @property
    def last_sparsity(self) -> float:
        """Fraction of synapse-steps without a short-term pulse in the last step (all envs)."""
        if self.last_level_counts is None:
            return float("nan")
        total = self.last_level_counts.shape[0] * self.hidden * self.n_pre
        return 1.0 - float(self.last_level_counts.sum()) / total

    def param_groups(self, lr: float, eps: Optional[float] = None, decay_lr_scale: float = 1.0) -> list:
        """Optimiser groups: the rest at ``lr``; W (device units, scale W_INIT) at lr * w_lr_scale, so
        that gain * W moves as fast as a conventional weight of scale 1/sqrt(P) under ``lr``; theta
        at ``lr * decay_lr_scale`` with Adam eps ``eps * THETA_EPS_SCALE`` (module docstring; only if
        ``eps`` given)."""
        decay = self.decay_parameters()
        rest = [p for n, p in self.named_parameters() if n != "W" and n not in decay]
        theta = {"params": [getattr(self, n) for n in decay], "lr": lr * decay_lr_scale}
        if eps is not None:
            theta["eps"] = eps * THETA_EPS_SCALE
        return [{"params": rest, "lr": lr}, {"params": [self.W], "lr": lr * self.w_lr_scale}, theta]

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Clamp W to the device window [-1, 1] (call after every optimiser step)."""
        self.W.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def limit_recurrent_norm(self, s_max: float) -> float:
        """Scale W's h columns so that the long-term h -> h map, gain x W[:, h inputs], has a largest singular
        value of at most ``s_max`` (a projection onto a contractive recurrence for ``s_max`` <= 1: with
        |tanh'| <= 1 one step then stretches no direction of h through W; docs/stpn.md §11.4). The x columns,
        gain, Gamma and theta are left as they are; scaling down keeps W in its window. Returns the largest
        singular value before (no change where it is at most ``s_max``)."""
        check_range("s_max", s_max, 0.0, None, lo_open=True)
        h = slice(self.n_in, self.n_pre)
        sigma = float(torch.linalg.svdvals((self.gain[:, None] * self.W[:, h]).double())[0])
        if sigma > s_max:
            self.W[:, h] *= s_max / sigma
        return sigma
