"""Fused C kernel of one short-term step of a tiled crossbar state (decay, then outer-product pulses).

One pass over F instead of ~20 torch passes (decay, bias-energy sum, outer-product request, quantiser,
pulse, pulse energy and counts, |F| column sums). The arithmetic is that of
:meth:`~stoxbar.crossbar.state.CrossbarState.decay` followed by
:meth:`~stoxbar.crossbar.state.CrossbarState.apply_short_term`, operation by operation in the
same precision (built with ``-ffp-contract=off``), so F and the levels are bit-identical to the
torch path; the energy sums differ by float round-off only (accumulated here in double).
Compiled on first use (:mod:`stoxbar.native`); without a C compiler :func:`short_term_step`
returns None and the caller runs the torch path.
"""

from __future__ import annotations

import ctypes
from typing import Optional, Tuple

import torch
from torch import Tensor

from stoxbar import native

_C_TEMPLATE = r"""
/* F [B, T, O, X] (S), tile t has rows[t] real rows (the rest is padding, never pulsed).
   Per element: e_bias[b] += per_st |F| (if per_st); F <- F lam;
   d = ((gam h[b,o]) z[b,t,x]) g_range (S); k = #{m : |d| >= thr[m]}, level = sign(d) k;
   F <- clamp(F + (level < 0 ? -dg[k] : dg[k]), -gmax, gmax); ge[b][m] += |d| >= thr[m];
   col[b,t,x] = sum_o |F| after the step. Per row: the request d, its level count k and step
   dg[k] (blended level by level: no gathers) in scratch (3 X per thread), then one update pass. */
void st_step_SUF(int64_t B, int64_t T, int64_t O, int64_t X, const int64_t* rows, REAL* F,
                 const REAL* lam, const REAL* per_st, const REAL* gam, const REAL* h, const REAL* z,
                 REAL g_range, const REAL* thr, const REAL* dg, int L, REAL gmax, int8_t* level,
                 int64_t* ge, REAL* col, double* e_bias, REAL* scratch, int nth) {
  #pragma omp parallel for num_threads(nth) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    REAL* d = scratch + (int64_t)omp_get_thread_num() * 3 * X;
    int32_t* k = (int32_t*)(d + X);
    REAL* step = d + 2 * X;
    int64_t* g = ge + b * L;
    double eb = 0;
    for (int m = 0; m < L; ++m) g[m] = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = rows[t];
      const REAL* zt = z + (b * T + t) * X;
      REAL* ct = col + (b * T + t) * X;
      memset(ct, 0, X * sizeof(REAL));
      for (int64_t o = 0; o < O; ++o) {
        const int64_t off = (t * O + o) * X;
        REAL* f = F + b * T * O * X + off;
        int8_t* lv = level + b * T * O * X + off;
        const REAL *la = lam + off, *ga = gam + off;
        const REAL hh = h[b * O + o];
        #pragma omp simd
        for (int64_t x = 0; x < n; ++x) {
          REAL v = ga[x] * hh;
          v = v * zt[x];
          d[x] = v * g_range; k[x] = 0; step[x] = 0;
        }
        for (int64_t x = n; x < X; ++x) { d[x] = 0; k[x] = 0; step[x] = 0; }
        for (int m = 0; m < L; ++m) {
          const REAL tm = thr[m], dm = dg[m + 1];
          int32_t cm = 0;
          #pragma omp simd reduction(+:cm)
          for (int64_t x = 0; x < n; ++x) {
            int32_t q = FABS(d[x]) >= tm;
            k[x] += q; cm += q; step[x] = q ? dm : step[x];
          }
          g[m] += cm;
        }
        if (per_st) {
          const REAL* pe = per_st + off;
          double s = 0;
          #pragma omp simd reduction(+:s)
          for (int64_t x = 0; x < X; ++x) s += (double)(pe[x] * FABS(f[x]));
          eb += s;
        }
        #pragma omp simd
        for (int64_t x = 0; x < X; ++x) {
          const int32_t l = d[x] > 0 ? k[x] : (d[x] < 0 ? -k[x] : 0);
          REAL v = f[x] * la[x];
          v = v + (l < 0 ? -step[x] : step[x]);
          v = v > gmax ? gmax : (v < -gmax ? -gmax : v);
          f[x] = v;
          lv[x] = (int8_t)l;
          ct[x] += FABS(v);
        }
      }
    }
    e_bias[b] = eb;
  }
}
"""


def _source() -> str:
    parts = [_C_TEMPLATE.replace("REAL", real).replace("SUF", suf).replace("FABS", fabs)
             for real, suf, fabs in (("float", "f32", "fabsf"), ("double", "f64", "fabs"))]
    return native.HEADER + "\n".join(parts)


def _library():
    return native.load("crossbar", _source, ("st_step_f32", "st_step_f64"),
                       (*native.CFLAGS, "-ffp-contract=off"))


def available() -> bool:
    """True if the fused kernel compiled and loaded."""
    return _library() is not None


def short_term_step(g_st: Tensor, rows: Tensor, lam: Tensor, per_st: Optional[Tensor], scale: Tensor, u: Tensor,
                    v: Tensor, g_range: float, thresholds: Tensor, dg_table: Tensor, g_max: float
                    ) -> Optional[Tuple[Tensor, Tensor, Tensor, float]]:
    """Decay ``g_st [B, T, O, X]`` (S, in place) by ``lam``, then pulse the requested outer-product change.

    The request is ``scale [T, O, X] * u [B, O] * v [B, T, X] * g_range`` (S), quantised with
    ``thresholds [L]`` to the levels of ``dg_table [L + 1]`` (S) and saturated at ``+-g_max``;
    ``rows [T]`` (int64) are each tile's real rows. ``per_st`` (J/S per cell, None: no bias held)
    gives the bias energy of the interval. Returns (signed level int8 [B, T, O, X], ``[B, L]``
    number of cells with ``|request| >= threshold m``, column sums ``sum_o |F|`` [B, T, X] (S),
    bias energy J), or None without the kernel or for a state it cannot run on (not a contiguous
    float32/float64 CPU tensor).
    """
    lib = _library()
    if (lib is None or g_st.device.type != "cpu" or g_st.dtype not in (torch.float32, torch.float64)
            or not g_st.is_contiguous()):
        return None
    dt = g_st.dtype
    b, t, o, x = g_st.shape
    n_levels = thresholds.numel()
    lam, scale, u, v, thresholds, dg_table = (
        t_.to(dt).contiguous() for t_ in (lam, scale, u, v, thresholds, dg_table))
    per_st = None if per_st is None else per_st.to(dt).contiguous()
    nth = native.threads(g_st.numel())
    level = torch.empty(g_st.shape, dtype=torch.int8)
    ge = torch.empty(b, n_levels, dtype=torch.int64)
    col = g_st.new_empty(b, t, x)
    e_bias = torch.empty(b, dtype=torch.float64)
    scratch = g_st.new_empty(nth * 3 * x)
    p, i = native.ptr, native.i64
    getattr(lib, f"st_step_{native.suffix(dt)}")(
        i(b), i(t), i(o), i(x), p(rows), p(g_st), p(lam), p(per_st), p(scale), p(u), p(v),
        native.real(dt, g_range), p(thresholds), p(dg_table), ctypes.c_int(n_levels), native.real(dt, g_max),
        p(level), p(ge), p(col), p(e_bias), p(scratch), ctypes.c_int(nth))
    return level, ge, col, float(e_bias.sum())
