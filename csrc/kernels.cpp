// stoxbar's native CPU kernels (torch extension stoxbar._native), built at install by setup.py.
//
//  * short_term_step: the substrate operation "decay for dt, then apply the requested change
//    scale * (u v^T), discretised to the device's pulse levels" on a tiled short-term state
//    [B, T, O, X], with its bias energy per (chip, row-tile) [B, T], pulse counts per (chip,
//    row-tile, level) [B, T, L] and the column sums the next read needs.
//  * mstpn_forward / mstpn_backward: one step of the digital m-STPN cell (read (W + F) z, tanh,
//    then the same short-term change as short_term_step, with g_range = 1) and its gradient
//    (straight-through quantiser).
//  * stpn_forward / stpn_backward: one step of the plain STPN (row-normalised, no quantiser).
//  * io_mvm: the IO-managed analog read of a tiled layer (csrc/analog_mvm.cpp).
//
// The short-term change itself is written once, in short_term.h. Python wrappers and the torch
// reference of every kernel: stoxbar/crossbar/fused.py and stoxbar/stpn/cells.py.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "analog_mvm.h"
#include "short_term.h"

namespace {

using torch::Tensor;

using stoxbar::threads_for;

void check_cpu_float(const Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// ------------------------------------------------------------------------------------------------
// substrate: decay, then the requested short-term change
// ------------------------------------------------------------------------------------------------
template <typename T>
STOXBAR_CLONES void short_term_step_impl(int64_t B, int64_t TT, int64_t O, int64_t X, const int64_t* rows, T* F, const T* lam,
                          const T* per_st, int S, const T* scale, const T* u, const T* v, T g_range, const T* thr,
                          const T* dg, int L, T g_max, int8_t* level, int64_t* ge, T* col, double* e_bias,
                          T* scratch, int nth) {
  // per_st: S (1 or 2) stacked tables [S, T, O, X] (e.g. the bias load and what the rail delivers):
  // e_bias [B, T, S], each table's weighted sum of |F| at the interval start, in the same pass
  // A presynaptic row-tile with few nonzero inputs pulses only those cells and decays the rest in
  // a plain pass (the same bits: st_pulse_sparse); the thresholds must be > 0 for a zero input to be no pulse.
  const int64_t cells = TT * O * X;
  const bool sparse_ok = stoxbar::st_sparse_ok<T>(thr, L);
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      T* d = scratch + (int64_t)omp_get_thread_num() * 4 * X;
      int32_t* k = (int32_t*)(d + X);  // int32 fits in a T slot (T is float or double)
      T* step = d + 2 * X;
      int32_t* nz = (int32_t*)(d + 3 * X);
      for (int64_t t = 0; t < TT; ++t) {
        int64_t* g = ge + (b * TT + t) * L;  // per (chip, row-tile): the substrate books events per tile
        double eb[2] = {0, 0};
        for (int m = 0; m < L; ++m) g[m] = 0;
        const int64_t n = rows[t];
        const T* vt = v + (b * TT + t) * X;
        T* ct = col + (b * TT + t) * X;
        std::fill(ct, ct + X, T(0));
        const int64_t nnz = sparse_ok ? stoxbar::st_nonzero<T>(n, vt, nz) : n;
        const bool sparse = stoxbar::st_is_sparse(nnz, n);
        for (int64_t o = 0; o < O; ++o) {
          const int64_t off = (t * O + o) * X;
          T* f = F + b * TT * O * X + off;
          int8_t* lv = level ? level + b * TT * O * X + off : nullptr;
          if (sparse)  // d: the pulsed cells' new F, k: their levels, step: their col entries before the row
            stoxbar::st_pulse_sparse<T>(nnz, nz, scale + off, u[b * O + o], vt, g_range, thr, dg, L, f, lam + off,
                                        g_max, ct, d, (int8_t*)k, step, g);
          for (int si = 0; si < S; ++si) {
            const T* pe = per_st + si * cells + off;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t x = 0; x < X; ++x) s += (double)(pe[x] * std::fabs(f[x]));
            eb[si] += s;
          }
          if (sparse) {
            stoxbar::st_decay_row<T>(X, f, f, lam + off, g_max, lv, ct);
            stoxbar::st_place_sparse<T>(nnz, nz, d, (const int8_t*)k, step, f, lv, ct);
          } else {  // after the bias energy, which reads F before the change
            stoxbar::st_update_row<T, true>(n, X, scale + off, u[b * O + o], vt, g_range, thr, dg, L, f, f, lam + off,
                                            g_max, lv, ct, g, d, k, step);
          }
        }
        for (int si = 0; si < S; ++si) e_bias[(b * TT + t) * S + si] = eb[si];
      }
    }
  }
}

// want_level false: no level tensor (an empty one is returned), the pass writes none (the caller needs only
// the counts).
std::vector<Tensor> short_term_step(Tensor F, Tensor rows, Tensor lam, std::optional<Tensor> per_st, Tensor scale,
                                    Tensor u, Tensor v, double g_range, Tensor thr, Tensor dg, double g_max,
                                    bool want_level) {
  TORCH_CHECK(F.dim() == 4, "short_term_step: state must be [B, T, O, X]");
  const auto dt = F.scalar_type();
  const int64_t B = F.size(0), TT = F.size(1), O = F.size(2), X = F.size(3);
  const int L = (int)thr.numel();
  TORCH_CHECK(dg.numel() == L + 1, "short_term_step: dg table must have one entry more than thresholds");
  TORCH_CHECK(rows.scalar_type() == at::kLong && rows.numel() == TT && rows.is_contiguous(),
              "short_term_step: rows must be int64 [T]");
  TORCH_CHECK(lam.numel() == TT * O * X && scale.numel() == TT * O * X && u.numel() == B * O &&
                  v.numel() == B * TT * X,
              "short_term_step: shapes do not match the state");
  check_cpu_float(F, "state", dt);
  for (auto* p : {&lam, &scale, &u, &v, &thr, &dg}) check_cpu_float(*p, "operand", dt);
  if (per_st) {
    check_cpu_float(*per_st, "per_st", dt);
    TORCH_CHECK(per_st->numel() == TT * O * X || (per_st->dim() == 4 && per_st->size(0) <= 2 &&
                                                   per_st->numel() == per_st->size(0) * TT * O * X),
                "short_term_step: per_st must be [T, O, X] or stacked [S <= 2, T, O, X]");
  }
  // stacked tables [S, T, O, X]: bias energy [B, T, S]; one table: [B, T]
  const bool stacked = per_st && per_st->dim() == 4;
  const int S = per_st ? (int)(per_st->numel() / (TT * O * X)) : 0;
  auto level = want_level ? torch::empty(F.sizes(), F.options().dtype(at::kChar))
                          : torch::empty({0}, F.options().dtype(at::kChar));
  auto ge = torch::empty({B, TT, L}, F.options().dtype(at::kLong));
  auto col = torch::empty({B, TT, X}, F.options());
  auto e_bias = stacked ? torch::empty({B, TT, (int64_t)S}, F.options().dtype(at::kDouble))
                        : torch::empty({B, TT}, F.options().dtype(at::kDouble));
  const int nth = threads_for(F.numel());
  auto scratch = torch::empty({nth * 4 * X}, F.options());
  AT_DISPATCH_FLOATING_TYPES(dt, "short_term_step", [&] {
    short_term_step_impl<scalar_t>(B, TT, O, X, rows.data_ptr<int64_t>(), F.data_ptr<scalar_t>(),
                                   lam.data_ptr<scalar_t>(), per_st ? per_st->data_ptr<scalar_t>() : nullptr, S,
                                   scale.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                                   (scalar_t)g_range, thr.data_ptr<scalar_t>(), dg.data_ptr<scalar_t>(), L,
                                   (scalar_t)g_max, want_level ? level.data_ptr<int8_t>() : nullptr,
                                   ge.data_ptr<int64_t>(),
                                   col.data_ptr<scalar_t>(), e_bias.data_ptr<double>(), scratch.data_ptr<scalar_t>(),
                                   nth);
  });
  return {level, ge, col, e_bias};
}

// ------------------------------------------------------------------------------------------------
// digital m-STPN cell: a = (W + F) zh, h = tanh(gain a + b), then the short-term change (g_range 1)
// ------------------------------------------------------------------------------------------------
template <typename T>
STOXBAR_CLONES void mstpn_fwd_impl(int64_t B, int64_t H, int64_t P, const T* W, const T* F, const T* zh, const T* gain,
                    const T* bias, const T* lam, const T* gam, const T* thr, const T* dg, int L, T fmax, T* Fo,
                    T* h, T* u, int64_t* cnt, int8_t* idx, T* scratch, int nth) {
  // a sparse input zh[b] (the encoder's ReLU features) pulses only its nonzero cells (st_pulse_sparse:
  // the same bits), the rest decay in a plain pass; the thresholds must be > 0
  int32_t* nz = (int32_t*)(scratch + (int64_t)nth * 3 * P);  // [B, P] positions, then [B] counts
  int32_t* nnz = nz + B * P;
  stoxbar::st_nonzero_batch<T>(B, P, zh, stoxbar::st_sparse_ok<T>(thr, L), nz, nnz);
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
    T* d = scratch + (int64_t)omp_get_thread_num() * 3 * P;
    int32_t* k = (int32_t*)(d + P);
    T* step = d + 2 * P;
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < B * H; ++bi) {
      const int64_t b = bi / H, i = bi % H;
      const T *Wi = W + i * P, *Fr = F + bi * P, *zb = zh + b * P;
      T su = 0;
#pragma omp simd reduction(+ : su)
      for (int64_t j = 0; j < P; ++j) su += (Wi[j] + Fr[j]) * zb[j];
      const T hh = std::tanh(gain[i] * su + bias[i]);
      int64_t* c = cnt + bi * L;
      for (int m = 0; m < L; ++m) c[m] = 0;
      int8_t* lv = idx ? idx + bi * P : nullptr;
      if (stoxbar::st_is_sparse(nnz[b], P)) {  // d: the pulsed cells' new F, k: their levels
        stoxbar::st_pulse_sparse<T>(nnz[b], nz + b * P, gam + i * P, hh, zb, T(1), thr, dg, L, Fr, lam + i * P, fmax,
                                    nullptr, d, (int8_t*)k, nullptr, c);
        stoxbar::st_decay_row<T>(P, Fr, Fo + bi * P, lam + i * P, fmax, lv, nullptr);
        stoxbar::st_place_sparse<T>(nnz[b], nz + b * P, d, (const int8_t*)k, nullptr, Fo + bi * P, lv, nullptr);
      } else {
        stoxbar::st_update_row<T, false>(P, P, gam + i * P, hh, zb, T(1), thr, dg, L, Fr, Fo + bi * P, lam + i * P,
                                         fmax, lv, nullptr, c, d, k, step);
      }
      h[bi] = hh;
      u[bi] = su;
    }
  }
}

// Backward (straight-through quantiser, clamp mask recomputed, inclusive like torch.clamp).
// gFo, gF may be null. scratch: (B P + 4 P) per thread, then (B P + B) for the nonzero positions.
template <typename T>
STOXBAR_CLONES void mstpn_bwd_impl(int64_t B, int64_t H, int64_t P, const T* W, const T* F, const T* zh, const T* gain,
                    const T* lam, const T* gam, const T* thr, const T* dg, int L, T fmax, const T* h, const T* u,
                    const T* gFo, const T* gh, T* gF, T* gzh, T* gW, T* glam, T* ggam, T* ggain, T* gbias,
                    T* scratch, int nth, bool hebb_act) {
  const int64_t per = B * P + 4 * P;
  // a sparse zh[b] requests only its nonzero cells (st_request_sparse: the same bits; thresholds > 0),
  // into request arrays that hold 0 elsewhere
  int32_t* nz = (int32_t*)(scratch + (int64_t)nth * per);  // [B, P] positions, then [B] counts
  int32_t* nnz = nz + B * P;
  stoxbar::st_nonzero_batch<T>(B, P, zh, stoxbar::st_sparse_ok<T>(thr, L), nz, nnz);
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
    T* gzl = scratch + (int64_t)omp_get_thread_num() * per;
    T* d = gzl + B * P;  // request (0 outside a sparse row's nonzeros between rows)
    int32_t* k = (int32_t*)(d + P);
    T* step = d + 2 * P;
    T* gm = d + 3 * P;  // the masked upstream gradient of the row
    bool dirty = false;  // a dense request left d, k, step nonzero (the scratch starts zeroed)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < H; ++i) {
      const T *Wi = W + i * P, *li = lam + i * P, *gi = gam + i * P;
      T *gWi = gW + i * P, *gli = glam + i * P, *ggi = ggam + i * P;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t bi = b * H + i;
        const T *Fr = F + bi * P, *zb = zh + b * P;
        T* gzb = gzl + b * P;
        const T hh = h[bi], uu = u[bi];
        const T* go = gFo ? gFo + bi * P : nullptr;
        T r1 = 0;
        if (go) {
          const bool sparse = stoxbar::st_is_sparse(nnz[b], P);
          // a dense row with L <= 8 levels: its request and mask in one pass (st_mask_row)
          const bool masked =
              !sparse && stoxbar::st_mask_row<T>(P, gi, hh, zb, T(1), thr, dg, L, Fr, li, fmax, go, gm, r1);
          if (sparse) {
            if (dirty) std::fill(d, d + 3 * P, T(0));
            dirty = false;
            stoxbar::st_request_sparse<T>(nnz[b], nz + b * P, gi, hh, zb, T(1), thr, dg, L, d, k, step, nullptr);
          } else if (!masked) {
            stoxbar::st_request_row<T>(P, P, gi, hh, zb, T(1), thr, dg, L, d, k, step, nullptr);
            dirty = true;
          }
          if (!masked) {
#pragma omp simd reduction(+ : r1)
            for (int64_t j = 0; j < P; ++j) {
              T pre = Fr[j] * li[j];
              pre = pre + stoxbar::st_signed_step(d[j], k[j], step[j]);
              const T g = (pre >= -fmax && pre <= fmax) ? go[j] : T(0);
              gm[j] = g;
              r1 += g * gi[j] * zb[j];
            }
          }
          if (sparse) stoxbar::st_clear_sparse<T>(nnz[b], nz + b * P, d, k, step);
        }
        // hebb_act false: the Hebbian update's activity factors (h, zh) pass no gradient back (Gamma's does)
        const T ga = (gh[bi] + (hebb_act ? r1 : T(0))) * (T(1) - hh * hh);
        const T hz = hebb_act ? hh : T(0);
        gbias[i] += ga;
        ggain[i] += ga * uu;
        const T gu = ga * gain[i];
        T* gFr = gF ? gF + bi * P : nullptr;
        if (go && gFr) {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T g = gm[j], gz_ = gu * zb[j];
            gFr[j] = g * li[j] + gz_;
            gWi[j] += gz_;
            gli[j] += g * Fr[j];
            ggi[j] += g * (hh * zb[j]);
            gzb[j] += gu * (Wi[j] + Fr[j]) + g * gi[j] * hz;
          }
        } else if (go) {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T g = gm[j], gz_ = gu * zb[j];
            gWi[j] += gz_;
            gli[j] += g * Fr[j];
            ggi[j] += g * (hh * zb[j]);
            gzb[j] += gu * (Wi[j] + Fr[j]) + g * gi[j] * hz;
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T gz_ = gu * zb[j];
            if (gFr) gFr[j] = gz_;
            gWi[j] += gz_;
            gzb[j] += gu * (Wi[j] + Fr[j]);
          }
        }
      }
    }
  }
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
#pragma omp for schedule(static)
    for (int64_t q = 0; q < B * P; ++q) {
      T acc = 0;
      for (int t = 0; t < nth; ++t) acc += scratch[(int64_t)t * per + q];
      gzh[q] += acc;
    }
  }
}

// out: where the new F goes (None: a fresh tensor); it may be F itself (each row of F is read, for the read
// and the pulses, before that row is written), which spares a caller without a gradient, e.g. batched
// play, a fresh [B, H, P] tensor per step (at 100 games 68 MB, whose pages the kernel faults in anew).
std::vector<Tensor> mstpn_forward(Tensor zh, Tensor F, Tensor W, Tensor gain, Tensor bias, Tensor lam, Tensor gam,
                                  Tensor thr, Tensor dg, double fmax, bool record, std::optional<Tensor> out) {
  const auto dt = F.scalar_type();
  for (auto* p : {&zh, &F, &W, &gain, &bias, &lam, &gam, &thr, &dg}) check_cpu_float(*p, "m-STPN operand", dt);
  const int64_t B = F.size(0), H = F.size(1), P = F.size(2);
  const int L = (int)thr.numel();
  TORCH_CHECK(dg.numel() == L + 1, "mstpn_forward: dg table must have one entry more than thresholds");
  const int nth = threads_for(F.numel());
  // per thread 3 P (request, levels, steps), then the nonzero positions of every zh[b] and their counts
  // (int32 in T slots)
  auto scratch = torch::empty({nth * 3 * P + B * P + B}, F.options());
  if (out) {
    check_cpu_float(*out, "mstpn_forward out", dt);
    TORCH_CHECK(out->sizes() == F.sizes(), "mstpn_forward: out must have F's shape");
  }
  auto Fo = out ? *out : torch::empty_like(F);
  auto h = torch::empty({B, H}, F.options());
  auto u = torch::empty({B, H}, F.options());
  auto cnt = torch::empty({B, H, L}, F.options().dtype(at::kLong));
  auto idx = record ? torch::empty({B, H, P}, F.options().dtype(at::kChar)) : torch::empty({0}, F.options().dtype(at::kChar));
  AT_DISPATCH_FLOATING_TYPES(dt, "mstpn_forward", [&] {
    mstpn_fwd_impl<scalar_t>(B, H, P, W.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), zh.data_ptr<scalar_t>(),
                             gain.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(),
                             gam.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(), dg.data_ptr<scalar_t>(), L,
                             (scalar_t)fmax, Fo.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
                             cnt.data_ptr<int64_t>(), record ? idx.data_ptr<int8_t>() : nullptr,
                             scratch.data_ptr<scalar_t>(), nth);
  });
  return {Fo, h, u, cnt, idx};
}

std::vector<Tensor> mstpn_backward(Tensor zh, Tensor F, Tensor W, Tensor gain, Tensor lam, Tensor gam, Tensor thr,
                                   Tensor dg, double fmax, Tensor h, Tensor u, std::optional<Tensor> gFo, Tensor gh,
                                   bool need_gF, bool hebb_act) {
  const auto dt = F.scalar_type();
  const int64_t B = F.size(0), H = F.size(1), P = F.size(2);
  const int L = (int)thr.numel();
  const int nth = threads_for(F.numel());
  auto gF = need_gF ? torch::empty_like(F) : torch::empty({0}, F.options());
  auto gzh = torch::zeros_like(zh), gW = torch::zeros_like(W), glam = torch::zeros_like(lam);
  auto ggam = torch::zeros_like(gam), ggain = torch::zeros_like(gain), gb = torch::zeros_like(gain);
  // per thread: B P (zh gradient), 4 P (request, levels, steps, masked gradient); then the nonzero
  // positions of every zh[b] and their counts (int32 in T slots)
  auto scratch = torch::zeros({nth * (B * P + 4 * P) + B * P + B}, F.options());
  AT_DISPATCH_FLOATING_TYPES(dt, "mstpn_backward", [&] {
    mstpn_bwd_impl<scalar_t>(B, H, P, W.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), zh.data_ptr<scalar_t>(),
                             gain.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(), gam.data_ptr<scalar_t>(),
                             thr.data_ptr<scalar_t>(), dg.data_ptr<scalar_t>(), L, (scalar_t)fmax,
                             h.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), gFo ? gFo->data_ptr<scalar_t>() : nullptr,
                             gh.data_ptr<scalar_t>(), need_gF ? gF.data_ptr<scalar_t>() : nullptr,
                             gzh.data_ptr<scalar_t>(), gW.data_ptr<scalar_t>(), glam.data_ptr<scalar_t>(),
                             ggam.data_ptr<scalar_t>(), ggain.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(),
                             scratch.data_ptr<scalar_t>(), nth, hebb_act);
  });
  return {gzh, gF, gW, ggain, gb, glam, ggam};
}

// ------------------------------------------------------------------------------------------------
// plain STPN cell: S = W + F, n = ||S_i|| + 1e-16, h = tanh((S z)/n + b), F' = lam F / n + gam h z^T
// ------------------------------------------------------------------------------------------------
template <typename T>
STOXBAR_CLONES void stpn_fwd_impl(int64_t B, int64_t H, int64_t P, const T* W, const T* F, const T* z, const T* bias, const T* lam,
                   const T* gam, T* Fo, T* h, T* n, T* u, int nth) {
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < B * H; ++bi) {
      const int64_t b = bi / H, i = bi % H;
      const T *Wi = W + i * P, *Fr = F + bi * P, *zb = z + b * P, *li = lam + i * P, *gi = gam + i * P;
      T* Fw = Fo + bi * P;
      T ss = 0, su = 0;
#pragma omp simd reduction(+ : ss, su)
      for (int64_t j = 0; j < P; ++j) {
        const T s = Wi[j] + Fr[j];
        ss += s * s;
        su += s * zb[j];
      }
      const T nn = std::sqrt(ss) + (T)1e-16;
      const T hh = std::tanh(su / nn + bias[i]);
      const T inv = (T)1 / nn;
#pragma omp simd
      for (int64_t j = 0; j < P; ++j) Fw[j] = li[j] * Fr[j] * inv + gi[j] * (hh * zb[j]);
      h[bi] = hh;
      n[bi] = nn;
      u[bi] = su;
    }
  }
}

// Parallel over rows i (gW, glam, ggam, gbias rows are private); gz accumulated per thread in
// scratch[nth][B][P] and reduced at the end. gFo, gF may be null.
template <typename T>
STOXBAR_CLONES void stpn_bwd_impl(int64_t B, int64_t H, int64_t P, const T* W, const T* F, const T* z, const T* lam, const T* gam,
                   const T* h, const T* n, const T* u, const T* gFo, const T* gh, T* gF, T* gz, T* gW, T* glam,
                   T* ggam, T* gbias, T* scratch, int nth) {
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
    T* gzl = scratch + (int64_t)omp_get_thread_num() * B * P;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < H; ++i) {
      const T *Wi = W + i * P, *li = lam + i * P, *gi = gam + i * P;
      T *gWi = gW + i * P, *gli = glam + i * P, *ggi = ggam + i * P;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t bi = b * H + i;
        const T *Fr = F + bi * P, *zb = z + b * P;
        T* gzb = gzl + b * P;
        const T hh = h[bi], nn = n[bi], uu = u[bi], inv = (T)1 / nn;
        T r1 = 0, r2 = 0;
        const T* go = gFo ? gFo + bi * P : nullptr;
        if (go) {
#pragma omp simd reduction(+ : r1, r2)
          for (int64_t j = 0; j < P; ++j) {
            r1 += go[j] * gi[j] * zb[j];
            r2 += go[j] * li[j] * Fr[j];
          }
        }
        const T ga = (gh[bi] + r1) * ((T)1 - hh * hh);
        gbias[i] += ga;
        const T gu = ga * inv;
        const T gn = -(ga * uu + r2) * inv * inv;
        const T norm = nn - (T)1e-16;
        const T coef = norm > 0 ? gn / norm : 0;
        T* gFr = gF ? gF + bi * P : nullptr;
        if (go && gFr) {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T s = Wi[j] + Fr[j], g = go[j], gS = gu * zb[j] + coef * s;
            gFr[j] = gS + g * li[j] * inv;
            gWi[j] += gS;
            gli[j] += g * Fr[j] * inv;
            ggi[j] += g * (hh * zb[j]);
            gzb[j] += gu * s + g * gi[j] * hh;
          }
        } else if (go) {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T s = Wi[j] + Fr[j], g = go[j], gS = gu * zb[j] + coef * s;
            gWi[j] += gS;
            gli[j] += g * Fr[j] * inv;
            ggi[j] += g * (hh * zb[j]);
            gzb[j] += gu * s + g * gi[j] * hh;
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < P; ++j) {
            const T s = Wi[j] + Fr[j], gS = gu * zb[j] + coef * s;
            if (gFr) gFr[j] = gS;
            gWi[j] += gS;
            gzb[j] += gu * s;
          }
        }
      }
    }
  }
#pragma omp parallel num_threads(nth)
  {
    stoxbar::FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
#pragma omp for schedule(static)
    for (int64_t q = 0; q < B * P; ++q) {
      T acc = 0;
      for (int t = 0; t < nth; ++t) acc += scratch[(int64_t)t * B * P + q];
      gz[q] += acc;
    }
  }
}

// out: as mstpn_forward's (each row of F is read, for the norm and the read, before that row is written).
std::vector<Tensor> stpn_forward(Tensor z, Tensor F, Tensor W, Tensor bias, Tensor lam, Tensor gam,
                                 std::optional<Tensor> out) {
  const auto dt = F.scalar_type();
  for (auto* p : {&z, &F, &W, &bias, &lam, &gam}) check_cpu_float(*p, "STPN operand", dt);
  const int64_t B = F.size(0), H = F.size(1), P = F.size(2);
  const int nth = threads_for(F.numel());
  if (out) {
    check_cpu_float(*out, "stpn_forward out", dt);
    TORCH_CHECK(out->sizes() == F.sizes(), "stpn_forward: out must have F's shape");
  }
  auto Fo = out ? *out : torch::empty_like(F);
  auto h = torch::empty({B, H}, F.options()), n = torch::empty({B, H}, F.options()), u = torch::empty({B, H}, F.options());
  AT_DISPATCH_FLOATING_TYPES(dt, "stpn_forward", [&] {
    stpn_fwd_impl<scalar_t>(B, H, P, W.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                            bias.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(), gam.data_ptr<scalar_t>(),
                            Fo.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), n.data_ptr<scalar_t>(),
                            u.data_ptr<scalar_t>(), nth);
  });
  return {h, Fo, n, u};
}

std::vector<Tensor> stpn_backward(Tensor z, Tensor F, Tensor W, Tensor lam, Tensor gam, Tensor h, Tensor n, Tensor u,
                                  std::optional<Tensor> gFo, Tensor gh, bool need_gF) {
  const auto dt = F.scalar_type();
  const int64_t B = F.size(0), H = F.size(1), P = F.size(2);
  const int nth = threads_for(F.numel());
  auto gF = need_gF ? torch::empty_like(F) : torch::empty({0}, F.options());
  auto gz = torch::zeros_like(z), gW = torch::zeros_like(W), glam = torch::zeros_like(lam);
  auto ggam = torch::zeros_like(gam), gb = torch::zeros({H}, F.options());
  auto scratch = torch::zeros({nth * B * P}, F.options());
  AT_DISPATCH_FLOATING_TYPES(dt, "stpn_backward", [&] {
    stpn_bwd_impl<scalar_t>(B, H, P, W.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                            lam.data_ptr<scalar_t>(), gam.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                            n.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), gFo ? gFo->data_ptr<scalar_t>() : nullptr,
                            gh.data_ptr<scalar_t>(), need_gF ? gF.data_ptr<scalar_t>() : nullptr,
                            gz.data_ptr<scalar_t>(), gW.data_ptr<scalar_t>(), glam.data_ptr<scalar_t>(),
                            ggam.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(), scratch.data_ptr<scalar_t>(), nth);
  });
  return {gz, gF, gW, gb, glam, ggam};
}

stoxbar::IOPars io_pars(bool perfect, int64_t nm_type, double nm_thres, int64_t bm_type, double inp_res,
                        double inp_bound, double inp_noise, double inp_asymmetry, double out_res, double out_bound,
                        double out_noise, double out_asymmetry, double out_scale, double max_bm_factor,
                        double max_bm_res) {
  stoxbar::IOPars p;
  p.perfect = perfect;
  p.nm_type = nm_type;
  p.nm_thres = nm_thres;
  p.bm_type = bm_type;
  p.inp_res = inp_res;
  p.inp_bound = inp_bound;
  p.inp_noise = inp_noise;
  p.inp_asymmetry = inp_asymmetry;
  p.out_res = out_res;
  p.out_bound = out_bound;
  p.out_noise = out_noise;
  p.out_asymmetry = out_asymmetry;
  p.out_scale = out_scale;
  p.max_bm_factor = max_bm_factor;
  p.max_bm_res = max_bm_res;
  return p;
}

std::tuple<Tensor, int64_t> io_mvm(Tensor weight, Tensor x, std::optional<Tensor> noise_var, bool perfect,
                                   int64_t nm_type, double nm_thres, int64_t bm_type, double inp_res, double inp_bound,
                                   double inp_noise, double inp_asymmetry, double out_res, double out_bound,
                                   double out_noise, double out_asymmetry, double out_scale, double max_bm_factor,
                                   double max_bm_res) {
  return stoxbar::io_mvm(weight, x, noise_var,
                         io_pars(perfect, nm_type, nm_thres, bm_type, inp_res, inp_bound, inp_noise, inp_asymmetry,
                                 out_res, out_bound, out_noise, out_asymmetry, out_scale, max_bm_factor, max_bm_res));
}

// Finite test of a tensor's values (NaN or inf anywhere: false), one vectorised pass.
template <typename T>
STOXBAR_CLONES bool all_finite(int64_t n, const T* p) {
  int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += !(std::fabs(p[i]) <= std::numeric_limits<T>::max());
  return bad == 0;
}

// The read's drive integral per tile, added to drive [T * J] (double): weight * sum over vectors n
// and rows x of the normalised drive of x[n, t, x] (x^2 / max_x x^2, amplitude; |x| / max_x |x|,
// PWM) times g_col[n or 0, t, j, x] (S). Rows whose max is 0 drive nothing.
template <typename T>
STOXBAR_CLONES void add_read_drive(int64_t N, int64_t TT, int64_t X, const T* x, int64_t A, int64_t J, const T* g, int64_t mode,
                    double weight, double* drive) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t a = A == 1 ? 0 : n;
    for (int64_t t = 0; t < TT; ++t) {
      const T* xr = x + (n * TT + t) * X;
      T m = 0;
      if (J == 1) {  // one column-tile (the common case): the max and the sum in one pass over x
        const T* gr = g + (a * TT + t) * X;
        double acc = 0;
        if (mode == 0) {
#pragma omp simd reduction(max : m) reduction(+ : acc)
          for (int64_t i = 0; i < X; ++i) {
            const T v = std::fabs(xr[i]);
            m = v > m ? v : m;  // the input is finite (checked before)
            acc += (double)(xr[i] * xr[i]) * (double)gr[i];
          }
        } else {
#pragma omp simd reduction(max : m) reduction(+ : acc)
          for (int64_t i = 0; i < X; ++i) {
            const T v = std::fabs(xr[i]);
            m = v > m ? v : m;
            acc += (double)v * (double)gr[i];
          }
        }
        if (m != T(0)) drive[t] += weight * (acc / (mode == 0 ? (double)(m * m) : (double)m));
        continue;
      }
#pragma omp simd reduction(max : m)
      for (int64_t i = 0; i < X; ++i) {
        const T v = std::fabs(xr[i]);
        m = v > m ? v : m;  // the input is finite (checked before)
      }
      if (m == T(0)) continue;
      const double s2 = mode == 0 ? (double)(m * m) : (double)m;
      for (int64_t j = 0; j < J; ++j) {
        const T* gr = g + ((a * TT + t) * J + j) * X;
        double acc = 0;
        if (mode == 0) {
#pragma omp simd reduction(+ : acc)
          for (int64_t i = 0; i < X; ++i) acc += (double)(xr[i] * xr[i]) * (double)gr[i];
        } else {
#pragma omp simd reduction(+ : acc)
          for (int64_t i = 0; i < X; ++i) acc += (double)std::fabs(xr[i]) * (double)gr[i];
        }
        drive[t * J + j] += weight * (acc / s2);
      }
    }
  }
}

// io_mvm with the checks and the event a recorded read needs, in one call: status 1 (input not
// finite: nothing read, nothing drawn), 2 (output overflowed: nothing booked), else 0 and, with
// g_col [A, T, J, X] and drive [T * J] given, the read drive integral added to drive (drive_mode
// 0 amplitude, 1 PWM; bound-management round r drives shrink^r of the first). With st and slot_chip
// given, weight and noise_var are per chip and the read is the chip form (stoxbar::ChipWeight).
std::tuple<Tensor, int64_t, int64_t> io_mvm_read(Tensor weight, Tensor x, std::optional<Tensor> noise_var, bool perfect,
                                                 int64_t nm_type, double nm_thres, int64_t bm_type, double inp_res,
                                                 double inp_bound, double inp_noise, double inp_asymmetry,
                                                 double out_res, double out_bound, double out_noise,
                                                 double out_asymmetry, double out_scale, double max_bm_factor,
                                                 double max_bm_res, std::optional<Tensor> g_col,
                                                 std::optional<Tensor> drive, int64_t drive_mode, double shrink,
                                                 std::optional<Tensor> st, std::optional<Tensor> slot_chip,
                                                 double alpha) {
  TORCH_CHECK(st.has_value() == slot_chip.has_value(), "io_mvm_read: st and slot_chip come together");
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), "io_mvm_read: input must be contiguous [N, T, X]");
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "io_mvm_read", [&] {
    finite = all_finite<scalar_t>(x.numel(), x.data_ptr<scalar_t>());
  });
  if (!finite) return {Tensor(), 0, 1};
  stoxbar::ChipWeight chip;
  if (st) chip = stoxbar::ChipWeight{*st, *slot_chip, alpha};
  auto [out, rounds] = stoxbar::io_mvm(weight, x, noise_var,
                                       io_pars(perfect, nm_type, nm_thres, bm_type, inp_res, inp_bound, inp_noise,
                                               inp_asymmetry, out_res, out_bound, out_noise, out_asymmetry, out_scale,
                                               max_bm_factor, max_bm_res),
                                       st ? &chip : nullptr);
  if (!out.is_contiguous()) out = out.contiguous();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "io_mvm_read", [&] {
    finite = all_finite<scalar_t>(out.numel(), out.data_ptr<scalar_t>());
  });
  if (!finite) return {out, rounds, 2};
  if (g_col && drive) {
    const int64_t N = x.size(0), TT = x.size(1), X = x.size(2);
    TORCH_CHECK(g_col->dim() == 4 && g_col->size(1) == TT && g_col->size(3) == X && g_col->is_contiguous() &&
                    g_col->scalar_type() == x.scalar_type() && (g_col->size(0) == 1 || g_col->size(0) == N),
                "io_mvm_read: g_col must be contiguous [1 or N, T, J, X] of the input's dtype");
    const int64_t A = g_col->size(0), J = g_col->size(2);
    TORCH_CHECK(drive->scalar_type() == at::kDouble && drive->numel() == TT * J && drive->is_contiguous(),
                "io_mvm_read: drive must be float64 [T * J]");
    const int64_t r = std::max<int64_t>(rounds, 1);  // an all-zero read is still one read (it drives nothing)
    const double weight_r = (1.0 - std::pow(shrink, (double)r)) / (1.0 - shrink);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "io_mvm_read", [&] {
      add_read_drive<scalar_t>(N, TT, X, x.data_ptr<scalar_t>(), A, J, g_col->data_ptr<scalar_t>(), drive_mode,
                               weight_r, drive->data_ptr<double>());
    });
  }
  return {out, rounds, 0};
}

// [N, in] -> [N, T, X]: tile t takes the next rows[t] inputs, its pad rows are 0 (CrossbarState.to_tiled).
Tensor to_tiled(Tensor x, Tensor rows, int64_t X) {
  TORCH_CHECK(x.dim() == 2 && rows.scalar_type() == at::kLong && rows.dim() == 1 && rows.is_contiguous(),
              "to_tiled: x must be [N, in], rows int64 [T]");
  if (!x.is_contiguous()) x = x.contiguous();
  const int64_t N = x.size(0), in = x.size(1), TT = rows.size(0);
  const int64_t* r = rows.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t t = 0; t < TT; ++t) {
    TORCH_CHECK(r[t] >= 0 && r[t] <= X, "to_tiled: a tile has more rows than X");
    total += r[t];
  }
  TORCH_CHECK(total == in, "to_tiled: rows do not add up to the input size");
  auto out = torch::empty({N, TT, X}, x.options());
  const int64_t bytes = x.element_size();
  const char* src = (const char*)x.data_ptr();
  char* dst = (char*)out.data_ptr();
  for (int64_t n = 0; n < N; ++n) {
    const char* s = src + n * in * bytes;
    for (int64_t t = 0; t < TT; ++t) {
      char* d = dst + (n * TT + t) * X * bytes;
      std::memcpy(d, s, r[t] * bytes);
      std::memset(d + r[t] * bytes, 0, (X - r[t]) * bytes);  // all-zero bits: 0.0 in IEEE floats
      s += r[t] * bytes;
    }
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // The kernels touch only tensors: they release the GIL, so Python threads (the A2C runner's
  // group threads) run them at once.
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.doc() = "stoxbar native CPU kernels (short-term step, m-STPN and STPN cell steps)";
  m.def("short_term_step", &short_term_step, "decay, then the requested short-term change (in place)", nogil);
  m.def("mstpn_forward", &mstpn_forward, "digital m-STPN step forward (out: the new F's tensor, may be F)",
        py::arg("zh"), py::arg("F"), py::arg("W"), py::arg("gain"), py::arg("bias"), py::arg("lam"), py::arg("gam"),
        py::arg("thr"), py::arg("dg"), py::arg("fmax"), py::arg("record"), py::arg("out") = py::none(), nogil);
  m.def("mstpn_backward", &mstpn_backward, "digital m-STPN step backward", nogil);
  m.def("stpn_forward", &stpn_forward, "STPN step forward (out: the new F's tensor, may be F)", py::arg("z"),
        py::arg("F"), py::arg("W"), py::arg("bias"), py::arg("lam"), py::arg("gam"), py::arg("out") = py::none(),
        nogil);
  m.def("stpn_backward", &stpn_backward, "STPN step backward", nogil);
  m.def("io_mvm", &io_mvm, "IO-managed tiled analog MVM (aihwkit AnalogMVM ONE_PASS + read noise)", nogil);
  m.def("to_tiled", &to_tiled, "[N, in] -> [N, T, X] with zero pad rows", nogil);
  m.def("io_mvm_read", &io_mvm_read, "io_mvm with input/output finite checks and the read drive integral per tile", nogil);
}
