"""Recurrent short-term-plasticity cells: the original STPN and the device-constrained m-STPN.

Shapes: batch B (one per environment), hidden H, presynaptic P = n_in + H, z = [x ; h_prev].
State = (h [B, H], F [B, H, P]); F is per environment and zero at episode start.

STPNCell -- the STPN of Garcia Rodriguez et al. (ICML 2022), Pong configuration (stpn.md 1.1):
    S = W + F;  n_i = ||S_i||_2 + 1e-16;  h = tanh((S z)/n + b);  F <- Lambda*F/n + Gamma*(h z^T)
Lambda, Gamma per synapse, unconstrained; init stpn.md 1.2. G = S/n is never materialised: the
output is divided by the row norm instead (training-notes.md).

MSTPNCell -- the m-STPN: the STPN restricted to what the SrTiO3 device can do (paper.md 2).
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
  * Lambda realised by the per-synapse decay bias: learned raw theta,
    tau = tau_min * (tau_max/tau_min)**sigmoid(theta) (always achievable), Lambda = exp(-dt/tau),
    dt = agent step period. theta ~ U(-2, 2) at init (assumption: spans most of the log range,
    the analogue of the STPN's Lambda ~ U(0, 1)). `v_bias()` gives the bias voltages.
  * Hebbian magnitude computed digitally, dF = Gamma * (h z_hat^T), then discretised to the
    device's short-term pulse levels in weight units (levels = dG/g_range_s, signed, nearest
    level, 0 below half the smallest level -> sparse pulses), straight-through gradient.
    F <- clamp(Lambda*F + dF_q, -f_max, f_max). Gamma ~ U(-l1, l1) at init, l1 the smallest
    level (assumption: few pulses at first; Gamma grows by gradient through the STE).
  * Pulse bookkeeping: `last_level_counts` [B, L] (pulses per level, both signs, this step),
    `last_sparsity` (fraction of synapses without a pulse), and with `record_levels=True` the
    full index tensor `last_level_idx` int8 [B, H, P]: 0 = no pulse, +-k = level k (1-based,
    ascending as device.short_term_levels()), sign = device of the pair (+ on G+, - on G-).

Both cells run a fused CPU kernel (one pass over F per step forward, two reading passes and one
write in backward, no temporaries of F's size; C compiled once with the system C compiler into
the user cache) when available, else the pure-torch reference (`*_reference` functions below,
identical maths). STOXBAR_NO_KERNEL=1 forces the reference. MSTPNCell's step is split into
overridable `presynaptic`, `mvm`, `activation`, `plastic_update`; a subclass that overrides any
of the last three (e.g. the analog one) automatically uses the composed path.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Optional, Tuple

import torch
from torch import Tensor, nn

from stoxbar import native
from stoxbar.devices import dynamics
from stoxbar.native import i64 as _i, ptr as _p, real as _real, suffix as _suffix, threads as _threads
from stoxbar.validation import ConfigError, check_int, check_range

if TYPE_CHECKING:  # pragma: no cover
    from stoxbar.devices.sto import STODevice

State = Tuple[Tensor, Tensor]
NORM_EPS = 1e-16  # STPN code: row norm + 1e-16 (stpn.md 1.1)
PRESYN_EPS = 1e-6  # m-STPN: z / (max|z| + eps); assumption, keeps an all-zero z at zero
W_INIT = 0.5  # m-STPN: W ~ U(-0.5, 0.5) weight units at init; assumption (module docstring)

# ----------------------------------------------------------------------------------------------
# pure-torch reference steps (also the fallback path)
# ----------------------------------------------------------------------------------------------


def stpn_step_reference(z: Tensor, F: Tensor, W: Tensor, b: Tensor, lam: Tensor, gam: Tensor) -> State:
    """One STPN step (stpn.md 1.1) in plain torch ops. Returns (h [B,H], F_new [B,H,P])."""
    u = z @ W.t() + torch.bmm(F, z.unsqueeze(-1)).squeeze(-1)
    n = torch.linalg.vector_norm(W + F, dim=-1) + NORM_EPS
    h = torch.tanh(u / n + b)
    F_new = lam * F / n.unsqueeze(-1) + gam * (h.unsqueeze(-1) * z.unsqueeze(1))
    return h, F_new


def level_thresholds(levels: Tensor) -> Tensor:
    """Decision thresholds of the nearest-level quantiser: l1/2, then midpoints of neighbours."""
    return torch.cat([levels[:1] / 2, (levels[1:] + levels[:-1]) / 2])


def quantize_levels(d: Tensor, levels: Tensor) -> Tuple[Tensor, Tensor]:
    """Nearest signed pulse level of ``d`` (0 below levels[0]/2, largest level above the top).

    Returns (q, idx): q has the values of ``d``'s dtype, idx int8 in [-L, L] (0 = no pulse).
    """
    thr = level_thresholds(levels).to(d.dtype)
    k = torch.bucketize(d.abs(), thr, right=True)  # number of thresholds <= |d|
    table = torch.cat([levels.new_zeros(1), levels]).to(d.dtype)
    q = torch.sign(d) * table[k]
    idx = (torch.sign(d).to(torch.int8) * k.to(torch.int8))
    return q, idx


def mstpn_plastic_reference(F: Tensor, h: Tensor, zh: Tensor, lam: Tensor, gam: Tensor, levels: Tensor,
                            f_max: float) -> Tuple[Tensor, Tensor]:
    """m-STPN short-term update: clamp(Lambda*F + Q(Gamma*(h zh^T)), +-f_max), STE gradient."""
    d = gam * (h.unsqueeze(-1) * zh.unsqueeze(1))
    q, idx = quantize_levels(d.detach(), levels)
    q = d + (q - d).detach()  # straight-through: forward Q(d), backward identity
    return torch.clamp(lam * F + q, -f_max, f_max), idx


# ----------------------------------------------------------------------------------------------
# fused C kernel (ctypes; compiled on first use)
# ----------------------------------------------------------------------------------------------

_C_TEMPLATE = r"""
/* STPN forward: per (b,i) row, one read of F (norm + dot), then the update of the same row. */
void stpn_fwd_SUF(int64_t B, int64_t H, int64_t P, const REAL* W, const REAL* F, const REAL* z,
                  const REAL* bias, const REAL* lam, const REAL* gam, REAL* Fo, REAL* h, REAL* n,
                  REAL* u, int nth) {
  #pragma omp parallel for num_threads(nth) schedule(static)
  for (int64_t bi = 0; bi < B * H; ++bi) {
    int64_t b = bi / H, i = bi % H;
    const REAL *Wi = W + i * P, *Fr = F + bi * P, *zb = z + b * P, *li = lam + i * P, *gi = gam + i * P;
    REAL *Fw = Fo + bi * P;
    REAL ss = 0, su = 0;
    #pragma omp simd reduction(+:ss, su)
    for (int64_t j = 0; j < P; ++j) { REAL s = Wi[j] + Fr[j]; ss += s * s; su += s * zb[j]; }
    REAL nn = sqrt(ss) + (REAL)1e-16;
    REAL hh = tanh(su / nn + bias[i]);
    REAL inv = (REAL)1 / nn;
    #pragma omp simd
    for (int64_t j = 0; j < P; ++j) Fw[j] = li[j] * Fr[j] * inv + gi[j] * (hh * zb[j]);
    h[bi] = hh; n[bi] = nn; u[bi] = su;
  }
}

/* STPN backward. Parallel over rows i (so gW, glam, ggam, gbias rows are private); gz is
   accumulated per thread in scratch[nth][B][P] and reduced at the end. gFo, gF may be NULL. */
void stpn_bwd_SUF(int64_t B, int64_t H, int64_t P, const REAL* W, const REAL* F, const REAL* z,
                  const REAL* lam, const REAL* gam, const REAL* h, const REAL* n, const REAL* u,
                  const REAL* gFo, const REAL* gh, REAL* gF, REAL* gz, REAL* gW, REAL* glam,
                  REAL* ggam, REAL* gbias, REAL* scratch, int nth) {
  #pragma omp parallel num_threads(nth)
  {
    REAL* gzl = scratch + (int64_t)omp_get_thread_num() * B * P;
    #pragma omp for schedule(static)
    for (int64_t i = 0; i < H; ++i) {
      const REAL *Wi = W + i * P, *li = lam + i * P, *gi = gam + i * P;
      REAL *gWi = gW + i * P, *gli = glam + i * P, *ggi = ggam + i * P;
      for (int64_t b = 0; b < B; ++b) {
        int64_t bi = b * H + i;
        const REAL *Fr = F + bi * P, *zb = z + b * P;
        REAL *gzb = gzl + b * P;
        REAL hh = h[bi], nn = n[bi], uu = u[bi], inv = (REAL)1 / nn;
        REAL r1 = 0, r2 = 0;
        const REAL* go = gFo ? gFo + bi * P : 0;
        if (go) {
          #pragma omp simd reduction(+:r1, r2)
          for (int64_t j = 0; j < P; ++j) { r1 += go[j] * gi[j] * zb[j]; r2 += go[j] * li[j] * Fr[j]; }
        }
        REAL ga = (gh[bi] + r1) * ((REAL)1 - hh * hh);
        gbias[i] += ga;
        REAL gu = ga * inv;
        REAL gn = -(ga * uu + r2) * inv * inv;
        REAL norm = nn - (REAL)1e-16;
        REAL coef = norm > 0 ? gn / norm : 0;
        if (go) {
          REAL* gFr = gF ? gF + bi * P : 0;
          if (gFr) {
            #pragma omp simd
            for (int64_t j = 0; j < P; ++j) {
              REAL s = Wi[j] + Fr[j], g = go[j], gS = gu * zb[j] + coef * s;
              gFr[j] = gS + g * li[j] * inv;
              gWi[j] += gS; gli[j] += g * Fr[j] * inv; ggi[j] += g * (hh * zb[j]);
              gzb[j] += gu * s + g * gi[j] * hh;
            }
          } else {
            #pragma omp simd
            for (int64_t j = 0; j < P; ++j) {
              REAL s = Wi[j] + Fr[j], g = go[j], gS = gu * zb[j] + coef * s;
              gWi[j] += gS; gli[j] += g * Fr[j] * inv; ggi[j] += g * (hh * zb[j]);
              gzb[j] += gu * s + g * gi[j] * hh;
            }
          }
        } else {
          REAL* gFr = gF ? gF + bi * P : 0;
          #pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            REAL s = Wi[j] + Fr[j], gS = gu * zb[j] + coef * s;
            if (gFr) gFr[j] = gS;
            gWi[j] += gS; gzb[j] += gu * s;
          }
        }
      }
    }
  }
  #pragma omp parallel for num_threads(nth) schedule(static)
  for (int64_t k = 0; k < B * P; ++k) {
    REAL acc = 0;
    for (int t = 0; t < nth; ++t) acc += scratch[(int64_t)t * B * P + k];
    gz[k] += acc;
  }
}

/* quantiser of one row: d = gam_i * (h * zh); q = sign(d) * (largest level whose threshold
   <= |d|, else 0). Loops over levels outside so every inner loop vectorises. c[m] += number of
   synapses with |d| >= thr[m] (nullable). */
static inline void quant_row_SUF(int64_t P, const REAL* gi, REAL hh, const REAL* zb, const REAL* lv,
                                 const REAL* thr, int L, REAL* d, REAL* q, int64_t* c) {
  #pragma omp simd
  for (int64_t j = 0; j < P; ++j) { d[j] = gi[j] * (hh * zb[j]); q[j] = 0; }
  for (int m = 0; m < L; ++m) {
    REAL t = thr[m], l = lv[m];
    int64_t cm = 0;
    #pragma omp simd reduction(+:cm)
    for (int64_t j = 0; j < P; ++j) { int ge = fabs(d[j]) >= t; q[j] = ge ? l : q[j]; cm += ge; }
    if (c) c[m] += cm;
  }
  #pragma omp simd
  for (int64_t j = 0; j < P; ++j) q[j] = copysign(q[j], d[j]);
}

/* m-STPN forward: a = (W+F) zh, h = tanh(gain a + b), F' = clamp(lam F + Q(gam h zh), +-fmax).
   cnt[bi][m] = number of synapses of row bi with |d| >= thr[m] (level k count = cnt[k-1]-cnt[k]).
   scratch: 2 P per thread. idx (nullable): int8 signed level index. */
void mstpn_fwd_SUF(int64_t B, int64_t H, int64_t P, const REAL* W, const REAL* F, const REAL* zh,
                   const REAL* gain, const REAL* bias, const REAL* lam, const REAL* gam,
                   const REAL* lv, const REAL* thr, int L, REAL fmax, REAL* Fo, REAL* h, REAL* u,
                   int64_t* cnt, int8_t* idx, REAL* scratch, int nth) {
  #pragma omp parallel num_threads(nth)
  {
    REAL* d = scratch + (int64_t)omp_get_thread_num() * 2 * P;
    REAL* q = d + P;
    #pragma omp for schedule(static)
    for (int64_t bi = 0; bi < B * H; ++bi) {
      int64_t b = bi / H, i = bi % H;
      const REAL *Wi = W + i * P, *Fr = F + bi * P, *zb = zh + b * P, *li = lam + i * P, *gi = gam + i * P;
      REAL *Fw = Fo + bi * P;
      REAL su = 0;
      #pragma omp simd reduction(+:su)
      for (int64_t j = 0; j < P; ++j) su += (Wi[j] + Fr[j]) * zb[j];
      REAL hh = tanh(gain[i] * su + bias[i]);
      int64_t* c = cnt + bi * L;
      for (int m = 0; m < L; ++m) c[m] = 0;
      quant_row_SUF(P, gi, hh, zb, lv, thr, L, d, q, c);
      #pragma omp simd
      for (int64_t j = 0; j < P; ++j) {
        REAL pre = li[j] * Fr[j] + q[j];
        Fw[j] = pre > fmax ? fmax : (pre < -fmax ? -fmax : pre);
      }
      if (idx) {
        int8_t* ir = idx + bi * P;
        for (int64_t j = 0; j < P; ++j) {
          int k = 0;
          for (int m = 0; m < L; ++m) k += fabs(d[j]) >= thr[m];
          ir[j] = (int8_t)(d[j] > 0 ? k : (d[j] < 0 ? -k : 0));
        }
      }
      h[bi] = hh; u[bi] = su;
    }
  }
}

/* m-STPN backward (STE through the quantiser, clamp mask recomputed, inclusive like torch.clamp).
   gFo, gF may be NULL. scratch: (B P + 2 P) per thread. */
void mstpn_bwd_SUF(int64_t B, int64_t H, int64_t P, const REAL* W, const REAL* F, const REAL* zh,
                   const REAL* gain, const REAL* lam, const REAL* gam, const REAL* lv,
                   const REAL* thr, int L, REAL fmax, const REAL* h, const REAL* u, const REAL* gFo,
                   const REAL* gh, REAL* gF, REAL* gzh, REAL* gW, REAL* glam, REAL* ggam,
                   REAL* ggain, REAL* gbias, REAL* scratch, int nth) {
  #pragma omp parallel num_threads(nth)
  {
    REAL* gzl = scratch + (int64_t)omp_get_thread_num() * (B * P + 2 * P);
    REAL* gp = gzl + B * P;   /* masked upstream gradient of the row (reuses the d buffer) */
    REAL* q = gp + P;
    #pragma omp for schedule(static)
    for (int64_t i = 0; i < H; ++i) {
      const REAL *Wi = W + i * P, *li = lam + i * P, *gi = gam + i * P;
      REAL *gWi = gW + i * P, *gli = glam + i * P, *ggi = ggam + i * P;
      for (int64_t b = 0; b < B; ++b) {
        int64_t bi = b * H + i;
        const REAL *Fr = F + bi * P, *zb = zh + b * P;
        REAL *gzb = gzl + b * P;
        REAL hh = h[bi], uu = u[bi];
        const REAL* go = gFo ? gFo + bi * P : 0;
        REAL r1 = 0;
        if (go) {
          quant_row_SUF(P, gi, hh, zb, lv, thr, L, gp, q, 0);
          #pragma omp simd reduction(+:r1)
          for (int64_t j = 0; j < P; ++j) {
            REAL pre = li[j] * Fr[j] + q[j];
            REAL g = (pre >= -fmax && pre <= fmax) ? go[j] : (REAL)0;
            gp[j] = g;
            r1 += g * gi[j] * zb[j];
          }
        }
        REAL ga = (gh[bi] + r1) * ((REAL)1 - hh * hh);
        gbias[i] += ga;
        ggain[i] += ga * uu;
        REAL gu = ga * gain[i];
        REAL* gFr = gF ? gF + bi * P : 0;
        if (go) {
          if (gFr) {
            #pragma omp simd
            for (int64_t j = 0; j < P; ++j) {
              REAL g = gp[j], gz_ = gu * zb[j];
              gFr[j] = g * li[j] + gz_;
              gWi[j] += gz_; gli[j] += g * Fr[j]; ggi[j] += g * (hh * zb[j]);
              gzb[j] += gu * (Wi[j] + Fr[j]) + g * gi[j] * hh;
            }
          } else {
            #pragma omp simd
            for (int64_t j = 0; j < P; ++j) {
              REAL g = gp[j], gz_ = gu * zb[j];
              gWi[j] += gz_; gli[j] += g * Fr[j]; ggi[j] += g * (hh * zb[j]);
              gzb[j] += gu * (Wi[j] + Fr[j]) + g * gi[j] * hh;
            }
          }
        } else {
          #pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            REAL gz_ = gu * zb[j];
            if (gFr) gFr[j] = gz_;
            gWi[j] += gz_; gzb[j] += gu * (Wi[j] + Fr[j]);
          }
        }
      }
    }
  }
  #pragma omp parallel for num_threads(nth) schedule(static)
  for (int64_t k = 0; k < B * P; ++k) {
    REAL acc = 0;
    for (int t = 0; t < nth; ++t) acc += scratch[(int64_t)t * (B * P + 2 * P) + k];
    gzh[k] += acc;
  }
}
"""

MAX_LEVELS = 16  # the kernel keeps per-row counts for at most 16 pulse levels


def _kernel_source() -> str:
    """C source of the kernels for float (suffix f32) and double (f64)."""
    parts = [_C_TEMPLATE.replace("REAL", real).replace("SUF", suf) for real, suf in (("float", "f32"), ("double", "f64"))]
    return native.HEADER + "\n".join(parts)


def _load_kernel():
    """The fused kernel library (compiled on first use, see :mod:`stoxbar.native`), or None."""
    return native.load("stpn", _kernel_source, [f"{n}_{s}" for s in ("f32", "f64")
                                                for n in ("stpn_fwd", "stpn_bwd", "mstpn_fwd", "mstpn_bwd")])


def kernel_available() -> bool:
    """True if the fused C kernel compiled and loaded (else the torch reference is used)."""
    return _load_kernel() is not None


class _STPNStep(torch.autograd.Function):
    """Fused STPN step: (z, F, W, b, lam, gam) -> (h, F_new)."""

    @staticmethod
    def forward(ctx, z, F, W, b, lam, gam):
        lib = _load_kernel()
        z, F, W, b, lam, gam = (t.contiguous() for t in (z, F, W, b, lam, gam))
        B, H, P = F.shape
        Fo = torch.empty_like(F)
        h, n, u = (z.new_empty(B, H) for _ in range(3))
        nth = _threads(F.numel())
        getattr(lib, f"stpn_fwd_{_suffix(F.dtype)}")(_i(B), _i(H), _i(P), _p(W), _p(F), _p(z), _p(b), _p(lam),
                                                        _p(gam), _p(Fo), _p(h), _p(n), _p(u), ctypes.c_int(nth))
        ctx.save_for_backward(z, F, W, lam, gam, h, n, u)
        ctx.set_materialize_grads(False)
        return h, Fo

    @staticmethod
    def backward(ctx, gh, gFo):
        z, F, W, lam, gam, h, n, u = ctx.saved_tensors
        B, H, P = F.shape
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        gFo = None if gFo is None else gFo.contiguous()
        gF = torch.empty_like(F) if ctx.needs_input_grad[1] else None
        gz, gW, glam, ggam, gb = (torch.zeros_like(t) for t in (z, W, lam, gam, h[0]))
        nth = _threads(F.numel())
        scratch = z.new_zeros(nth * B * P)
        getattr(_load_kernel(), f"stpn_bwd_{_suffix(F.dtype)}")(
            _i(B), _i(H), _i(P), _p(W), _p(F), _p(z), _p(lam), _p(gam), _p(h), _p(n), _p(u), _p(gFo), _p(gh),
            _p(gF), _p(gz), _p(gW), _p(glam), _p(ggam), _p(gb), _p(scratch), ctypes.c_int(nth))
        return gz, gF, gW, gb, glam, ggam


class _MSTPNStep(torch.autograd.Function):
    """Fused m-STPN step: (zh, F, W, gain, b, lam, gam, levels, f_max, record) -> (h, F_new, cnt, idx)."""

    @staticmethod
    def forward(ctx, zh, F, W, gain, b, lam, gam, levels, f_max, record):
        lib = _load_kernel()
        zh, F, W, gain, b, lam, gam = (t.contiguous() for t in (zh, F, W, gain, b, lam, gam))
        B, H, P = F.shape
        L = levels.numel()
        thr = level_thresholds(levels).to(F.dtype).contiguous()
        lv = levels.to(F.dtype).contiguous()
        nth = _threads(F.numel())
        scratch = F.new_empty(nth * 2 * P)
        Fo = torch.empty_like(F)
        h, u = zh.new_empty(B, H), zh.new_empty(B, H)
        cnt = torch.empty(B, H, L, dtype=torch.int64)
        idx = torch.empty(B, H, P, dtype=torch.int8) if record else None
        getattr(lib, f"mstpn_fwd_{_suffix(F.dtype)}")(
            _i(B), _i(H), _i(P), _p(W), _p(F), _p(zh), _p(gain), _p(b), _p(lam), _p(gam), _p(lv), _p(thr),
            ctypes.c_int(L), _real(F.dtype, f_max), _p(Fo), _p(h), _p(u), _p(cnt), _p(idx), _p(scratch),
            ctypes.c_int(nth))
        ge = cnt.sum(1)  # [B, L]: synapses with |d| >= thr[m]
        counts = ge - torch.cat([ge[:, 1:], ge.new_zeros(B, 1)], dim=1)
        ctx.save_for_backward(zh, F, W, gain, lam, gam, h, u, lv, thr)
        ctx.f_max = f_max
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(counts)
        if idx is not None:
            ctx.mark_non_differentiable(idx)
        return h, Fo, counts, idx

    @staticmethod
    def backward(ctx, gh, gFo, _gc=None, _gi=None):
        zh, F, W, gain, lam, gam, h, u, lv, thr = ctx.saved_tensors
        B, H, P = F.shape
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        gFo = None if gFo is None else gFo.contiguous()
        gF = torch.empty_like(F) if ctx.needs_input_grad[1] else None
        gzh, gW, glam, ggam, ggain, gb = (torch.zeros_like(t) for t in (zh, W, lam, gam, gain, gain))
        nth = _threads(F.numel())
        scratch = zh.new_zeros(nth * (B * P + 2 * P))
        getattr(_load_kernel(), f"mstpn_bwd_{_suffix(F.dtype)}")(
            _i(B), _i(H), _i(P), _p(W), _p(F), _p(zh), _p(gain), _p(lam), _p(gam), _p(lv), _p(thr),
            ctypes.c_int(thr.numel()), _real(F.dtype, ctx.f_max), _p(h), _p(u), _p(gFo), _p(gh), _p(gF), _p(gzh),
            _p(gW), _p(glam), _p(ggam), _p(ggain), _p(gb), _p(scratch), ctypes.c_int(nth))
        return gzh, gF, gW, ggain, gb, glam, ggam, None, None, None


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
        dtype = tensors[0].dtype
        return (self.use_kernel and dtype in (torch.float32, torch.float64)
                and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) and kernel_available())


class STPNCell(_CellBase):
    """Original STPN (stpn.md 1.1, Pong config) with ``hidden`` units over z = [x ; h_prev]."""

    def __init__(self, n_in: int, hidden: int, use_kernel: bool = True):
        super().__init__()
        self.n_in, self.hidden = check_int("n_in", n_in, 1), check_int("hidden", hidden, 1)
        self.use_kernel = use_kernel
        P = self.n_pre
        stdv = 1.0 / math.sqrt(hidden)  # stpn.md 1.2: k = 1/H, stdv = sqrt(k)
        self.W = nn.Parameter(torch.empty(hidden, P).uniform_(-stdv, stdv))
        self.b = nn.Parameter(torch.empty(hidden).uniform_(-stdv, stdv))
        self.lam = nn.Parameter(torch.rand(hidden, P))  # Lambda ~ U(0, 1)
        self.gam = nn.Parameter(torch.empty(hidden, P).uniform_(-1e-3 * stdv, 1e-3 * stdv))  # stpn.md 1.2

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
            h, F_new = _STPNStep.apply(z, F, self.W, self.b, lam, gam)
        else:
            h, F_new = stpn_step_reference(z, F, self.W, self.b, lam, gam)
        return h, (h, F_new)

    def param_groups(self, lr: float) -> list:
        """One optimiser group: every parameter at ``lr``."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def apply_constraints(self) -> None:
        """The STPN has no parameter constraints (Lambda, Gamma unconstrained, stpn.md 1.1)."""


class MSTPNCell(_CellBase):
    """m-STPN on STO synapses (see module docstring); ``dt_s`` = agent step period (s)."""

    def __init__(self, n_in: int, hidden: int, device: "STODevice", dt_s: float, use_kernel: bool = True,
                 record_levels: bool = False):
        super().__init__()
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
        self.theta = nn.Parameter(torch.empty(hidden, P).uniform_(-2.0, 2.0))
        l1 = float(lv[0])
        self.gam = nn.Parameter(torch.empty(hidden, P).uniform_(-l1, l1))
        self.last_level_counts: Optional[Tensor] = None
        self.last_level_idx: Optional[Tensor] = None

    # -- decay: Lambda through the bias voltage ------------------------------------------------
    def tau_s(self) -> Tensor:
        """Per-synapse decay time constant (s), always in [tau_min_s, tau_max_s]."""
        log_ratio = math.log(self.tau_max_s / self.tau_min_s)
        return self.tau_min_s * torch.exp(torch.sigmoid(self.theta) * log_ratio)

    def lambda_(self) -> Tensor:
        """Per-synapse decay factor per step, Lambda = exp(-dt/tau)."""
        return torch.exp(-self.dt_s / self.tau_s())

    def v_bias(self, device: Optional["STODevice"] = None) -> Tensor:
        """Per-synapse decay-control bias voltage (V) realising tau on ``device`` (default: the cell's).

        Each tau is clamped to that device's range first: a device with a narrower range realises
        the nearest tau it can.
        """
        device = self.device if device is None else device
        tau = self.tau_s().detach().double().clamp(device.tau_min_s, device.tau_max_s)
        return torch.as_tensor(device.v_bias_for_tau(tau)).to(self.W.dtype)

    def step_params(self) -> Tuple[Tensor, Tensor]:
        """(Lambda, Gamma) for the step; compute once per rollout to save the exp/sigmoid per step."""
        return self.lambda_(), self.gam

    # -- overridable pieces of the step ---------------------------------------------------------
    def presynaptic(self, x: Tensor, h_prev: Tensor) -> Tensor:
        """z_hat = [x ; h_prev] / (max|.| + eps), in [-1, 1] (digital periphery, DAC range)."""
        z = torch.cat([x, h_prev], dim=1)
        return z / (z.abs().amax(dim=1, keepdim=True) + PRESYN_EPS)

    def mvm(self, z_hat: Tensor, F: Tensor) -> Tensor:
        """Crossbar read a = (W + F) z_hat (digital reference; analog subclasses override)."""
        return z_hat @ self.W.t() + torch.bmm(F, z_hat.unsqueeze(-1)).squeeze(-1)

    def activation(self, a: Tensor) -> Tensor:
        """Digital neuron: h = tanh(gain * a + b)."""
        return torch.tanh(self.gain * a + self.b)

    def plastic_update(self, F: Tensor, h: Tensor, z_hat: Tensor, params: Optional[Tuple[Tensor, Tensor]] = None
                       ) -> Tuple[Tensor, Tensor]:
        """F_new = clamp(Lambda*F + Q(Gamma * h z_hat^T), +-f_max); returns (F_new, level_idx int8)."""
        lam, gam = params if params is not None else self.step_params()
        return mstpn_plastic_reference(F, h, z_hat, lam, gam, self.levels.to(F.dtype), self.f_max)

    def level_counts(self, idx: Tensor) -> Tensor:
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
        if not self._composed() and self._fused_ok(zh, F, self.W, self.gain, self.b, *params):
            h, F_new, counts, idx = _MSTPNStep.apply(zh, F, self.W, self.gain, self.b, params[0], params[1],
                                                     self.levels, self.f_max, self.record_levels)
        else:
            a = self.mvm(zh, F)
            h = self.activation(a)
            F_new, idx = self.plastic_update(F, h, zh, params)
            counts = self.level_counts(idx)
            idx = idx if self.record_levels else None
        self.last_level_counts, self.last_level_idx = counts, idx
        return h, (h, F_new)

    @property
    def last_sparsity(self) -> float:
        """Fraction of synapse-steps without a short-term pulse in the last step (all envs)."""
        if self.last_level_counts is None:
            return float("nan")
        total = self.last_level_counts.shape[0] * self.hidden * self.n_pre
        return 1.0 - float(self.last_level_counts.sum()) / total

    def param_groups(self, lr: float) -> list:
        """Optimiser groups: W (device units, scale W_INIT) gets lr * w_lr_scale, so that
        gain * W moves as fast as a conventional weight of scale 1/sqrt(P) under ``lr``."""
        rest = [p for n, p in self.named_parameters() if n != "W"]
        return [{"params": rest, "lr": lr}, {"params": [self.W], "lr": lr * self.w_lr_scale}]

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Clamp W to the device window [-1, 1] (call after every optimiser step)."""
        self.W.clamp_(-1.0, 1.0)
