// The short-term change of one row of synapses, written once and used by every native kernel
// that changes a short-term state (the substrate's short_term_step and the digital m-STPN cell).
//
// Maths (per element x of a row with n real cells, X >= n slots; slots n..X-1 are padding):
//   request  d[x] = ((scale[x] * u) * v[x]) * g_range
//   level    k[x] = #{m : |d[x]| >= thr[m]},  signed level = sign(d) k   (0 = no pulse)
//   change   step[x] = dg[k[x]]  (dg[0] = 0; dg[m + 1] is level m + 1)
//   update   F'[x] = clamp(F[x] * lam[x] + sign(d) step[x], -g_max, g_max)
// Operation by operation as the torch reference (stoxbar.crossbar.fused.short_term_change), in
// the same precision; built with -ffp-contract=off so results are bit-identical to it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, and picked at load time
// (portable builds, no -march=native); fp contraction stays off, so both give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define STOXBAR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define STOXBAR_CLONES
#endif
// Forced inlining for the one-pass row helpers: each of their L-unrolled loops must be compiled inside
// the caller's clone (AVX-512, AVX2); left out of line (their size), the baseline x86-64 copy would run.
#if defined(__GNUC__)
#define STOXBAR_INLINE inline __attribute__((always_inline))
#define STOXBAR_LAMBDA __attribute__((always_inline))
#else
#define STOXBAR_INLINE inline
#define STOXBAR_LAMBDA
#endif

namespace stoxbar {

// The request of one cell, d = ((scale u) v) g_range, in this order (the torch reference's).
template <typename T>
inline T st_request(T scale, T u, T v, T g_range) {
  T r = scale * u;
  r = r * v;
  return r * g_range;
}

// Request, level count and step of one row. ge[m] += number of cells with |d| >= thr[m] (ge may
// be null). Levels are looped outside so every inner loop vectorises (no gathers).
template <typename T>
inline void st_request_row(int64_t n, int64_t X, const T* scale, T u, const T* v, T g_range,
                           const T* thr, const T* dg, int L, T* d, int32_t* k, T* step, int64_t* ge) {
#pragma omp simd
  for (int64_t x = 0; x < n; ++x) {
    d[x] = st_request<T>(scale[x], u, v[x], g_range);
    k[x] = 0;
    step[x] = 0;
  }
  for (int64_t x = n; x < X; ++x) {
    d[x] = 0;
    k[x] = 0;
    step[x] = 0;
  }
  for (int m = 0; m < L; ++m) {
    const T tm = thr[m], dm = dg[m + 1];
    int64_t cm = 0;
#pragma omp simd reduction(+ : cm)
    for (int64_t x = 0; x < n; ++x) {
      const int32_t q = std::fabs(d[x]) >= tm;
      k[x] += q;
      cm += q;
      step[x] = q ? dm : step[x];
    }
    if (ge) ge[m] += cm;
  }
}

// Sparse presynaptic vectors (the encoder's ReLU output is ~94 % zeros in Pong): with every threshold
// > 0 a zero input requests no pulse, so the sparse forms below touch the nonzero cells only and give
// the same bits. st_sparse_ok: the thresholds allow it; st_is_sparse: worth it (<= 1 nonzero in 8).
template <typename T>
inline bool st_sparse_ok(const T* thr, int L) {
  bool ok = true;
  for (int m = 0; m < L; ++m) ok = ok && thr[m] > T(0);
  return ok;
}

inline bool st_is_sparse(int64_t nnz, int64_t n) { return nnz * 8 <= n; }

// The positions x < n where v[x] != 0 (NaN included) into idx; returns how many.
template <typename T>
inline int64_t st_nonzero(int64_t n, const T* v, int32_t* idx) {
  int64_t c = 0;
  for (int64_t x = 0; x < n; ++x)
    if (v[x] != T(0)) idx[c++] = (int32_t)x;
  return c;
}

// st_nonzero of each of B vectors z[b] of length P: positions into nz [B, P], counts into nnz [B]
// (P, i.e. dense, unless ok).
template <typename T>
inline void st_nonzero_batch(int64_t B, int64_t P, const T* z, bool ok, int32_t* nz, int32_t* nnz) {
  for (int64_t b = 0; b < B; ++b) nnz[b] = ok ? (int32_t)st_nonzero<T>(P, z + b * P, nz + b * P) : (int32_t)P;
}

// The new F of one cell: clamp(f * lam + signed step, +-g_max) for its signed level l.
template <typename T>
inline T st_apply_one(T f, T lam, int32_t l, T step, T g_max) {
  T r = f * lam;
  r = r + (l < 0 ? -step : step);
  return r > g_max ? g_max : (r < -g_max ? -g_max : r);
}

// -v if neg, else v, by flipping the sign bit (what negation does): no branch for a scalar cell whose
// sign is data (a branch there mispredicts half the time).
template <typename T>
inline T st_negate_if(T v, bool neg) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U bits;
  std::memcpy(&bits, &v, sizeof(T));
  bits ^= (U)neg << (8 * sizeof(T) - 1);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

// True if the thresholds do not decrease (every device's: the midpoints of increasing levels).
template <typename T>
inline bool st_thr_sorted(const T* thr, int L) {
  bool ok = true;
  for (int m = 1; m < L; ++m) ok = ok && thr[m - 1] <= thr[m];
  return ok;
}

// The request of one cell and its level count k and step (the level loop of st_request_row, for one
// cell); ge[m] += 1 where |request| >= thr[m] (ge may be null). With sorted thresholds the cells at or
// above thr[m] are a prefix m < k, so the step is dg[k]: one load after the loop, no branch per level
// (a data-dependent branch there mispredicts on about every level of a scattered cell); the same value.
template <typename T>
inline T st_request_one(T scale, T u, T v, T g_range, const T* thr, const T* dg, int L, int32_t& k, T& step,
                        int64_t* ge, bool sorted) {
  const T r = st_request<T>(scale, u, v, g_range);
  const T a = std::fabs(r);
  if (sorted) {
    int32_t c = 0;
    for (int m = 0; m < L; ++m) {
      const int32_t q = a >= thr[m];
      c += q;
      if (ge) ge[m] += q;
    }
    k = c;
    step = dg[c];
    return r;
  }
  k = 0;
  step = 0;
  for (int m = 0; m < L; ++m) {
    const int32_t q = a >= thr[m];
    k += q;
    if (ge) ge[m] += q;
    step = q ? dg[m + 1] : step;
  }
  return r;
}

// The pulses of a row whose input is sparse (idx[0..nnz): st_nonzero of its v; thresholds > 0, so a
// zero v, which requests 0 (or NaN for an infinite scale or u), is no pulse and its cell only decays,
// st_decay_row). For each idx[i], what st_request_row + st_apply_row_t give that cell, computed from
// f and col before the row's decay: val[i] = its new F, lev[i] its signed level, cs[i] its col entry
// before the row (the caller writes them back after st_decay_row: st_place_sparse); ge[m] counted.
template <typename T>
inline void st_pulse_sparse(int64_t nnz, const int32_t* idx, const T* scale, T u, const T* v, T g_range,
                            const T* thr, const T* dg, int L, const T* f, const T* lam, T g_max, const T* col,
                            T* val, int8_t* lev, T* cs, int64_t* ge) {
  const bool sorted = st_thr_sorted<T>(thr, L);
  for (int64_t i = 0; i < nnz; ++i) {
    const int32_t x = idx[i];
    int32_t k;
    T step;
    const T r = st_request_one<T>(scale[x], u, v[x], g_range, thr, dg, L, k, step, ge, sorted);
    const int32_t l = k * ((int32_t)(r > 0) - (int32_t)(r < 0));  // sign(r) k, without a branch
    T y = f[x] * lam[x];  // st_apply_one, the step's sign without a branch
    y = y + st_negate_if<T>(step, l < 0);
    y = y > g_max ? g_max : (y < -g_max ? -g_max : y);
    val[i] = y;
    lev[i] = (int8_t)l;
    if (col) cs[i] = col[x];
  }
}

// st_request_row at the positions idx[0..nnz) only (st_nonzero of the row's v; thresholds > 0): there a
// zero v requests no pulse, so d, k and step keep the 0 they must hold elsewhere (st_clear_sparse
// restores it after the row) and the counts are the same.
template <typename T>
inline void st_request_sparse(int64_t nnz, const int32_t* idx, const T* scale, T u, const T* v, T g_range,
                              const T* thr, const T* dg, int L, T* d, int32_t* k, T* step, int64_t* ge) {
  const bool sorted = st_thr_sorted<T>(thr, L);
  for (int64_t i = 0; i < nnz; ++i) {
    const int32_t x = idx[i];
    d[x] = st_request_one<T>(scale[x], u, v[x], g_range, thr, dg, L, k[x], step[x], ge, sorted);
  }
}

template <typename T>
inline void st_clear_sparse(int64_t nnz, const int32_t* idx, T* d, int32_t* k, T* step) {
  for (int64_t i = 0; i < nnz; ++i) {
    d[idx[i]] = 0;
    k[idx[i]] = 0;
    step[idx[i]] = 0;
  }
}

// A row with no pulse: st_apply_row_t where every level is 0 (f_out = clamp(f_in * lam + 0, +-g_max): the
// + 0 turns a -0 into +0 as there), level = 0, col += |f_out|.
template <typename T>
inline void st_decay_row(int64_t X, const T* f_in, T* f_out, const T* lam, T g_max, int8_t* level, T* col) {
  if (col) {
#pragma omp simd
    for (int64_t x = 0; x < X; ++x) {
      T r = f_in[x] * lam[x];
      r = r + T(0);
      r = r > g_max ? g_max : (r < -g_max ? -g_max : r);
      f_out[x] = r;
      col[x] += std::fabs(r);
    }
  } else {
#pragma omp simd
    for (int64_t x = 0; x < X; ++x) {
      T r = f_in[x] * lam[x];
      r = r + T(0);
      f_out[x] = r > g_max ? g_max : (r < -g_max ? -g_max : r);
    }
  }
  if (level && X > 0) std::fill(level, level + X, int8_t(0));
}

// Write st_pulse_sparse's cells over the decayed row.
template <typename T>
inline void st_place_sparse(int64_t nnz, const int32_t* idx, const T* val, const int8_t* lev, const T* cs, T* f,
                            int8_t* level, T* col) {
  for (int64_t i = 0; i < nnz; ++i) {
    const int32_t x = idx[i];
    f[x] = val[i];
    if (level) level[x] = lev[i];
    if (col) col[x] = cs[i] + std::fabs(val[i]);
  }
}

// The signed change of one cell, given its request d, level count k and step.
template <typename T>
inline T st_signed_step(T d, int32_t k, T step) {
  const int32_t l = d > 0 ? k : (d < 0 ? -k : 0);
  return l < 0 ? -step : step;
}

// Decay and pulse one row, one loop: f_out = clamp(f_in * lam + signed step, +-g_max) (f_out may
// equal f_in); level[x] = signed level (int8) if kLevel; col[x] += |f_out[x]| if kCol.
template <typename T, bool kLevel, bool kCol>
inline void st_apply_row_t(int64_t X, const T* f_in, T* f_out, const T* lam, const T* d, const int32_t* k,
                           const T* step, T g_max, int8_t* level, T* col) {
#pragma omp simd
  for (int64_t x = 0; x < X; ++x) {
    const int32_t l = d[x] > 0 ? k[x] : (d[x] < 0 ? -k[x] : 0);
    const T r = st_apply_one<T>(f_in[x], lam[x], l, step[x], g_max);
    f_out[x] = r;
    if (kLevel) level[x] = (int8_t)l;
    if (kCol) col[x] += std::fabs(r);
  }
}

// st_apply_row_t with nullable level and col.
template <typename T>
inline void st_apply_row(int64_t X, const T* f_in, T* f_out, const T* lam, const T* d, const int32_t* k,
                         const T* step, T g_max, int8_t* level, T* col) {
  if (level && col)
    st_apply_row_t<T, true, true>(X, f_in, f_out, lam, d, k, step, g_max, level, col);
  else if (level)
    st_apply_row_t<T, true, false>(X, f_in, f_out, lam, d, k, step, g_max, level, col);
  else if (col)
    st_apply_row_t<T, false, true>(X, f_in, f_out, lam, d, k, step, g_max, level, col);
  else
    st_apply_row_t<T, false, false>(X, f_in, f_out, lam, d, k, step, g_max, level, col);
}

// st_request_row + st_apply_row_t of one row in one pass, the level loop unrolled for a compile-time L:
// each cell's request, level count and step stay in registers (the two passes store and reload them, and
// loop over the levels once each). Every value is the same operation on the same operands as there, so
// the same bits; ge[m] += the cells with |d| >= thr[m] (counted in int32 per row; ge may be null).
// Slots n..X-1 (padding) request nothing: they only decay (st_decay_row, as st_apply_row_t's 0 levels).
template <typename T, int L, bool kLevel, bool kCol>
STOXBAR_INLINE void st_update_row_L(int64_t n, int64_t X, const T* scale, T u, const T* v, T g_range, const T* thr,
                                    const T* dg, const T* f_in, T* f_out, const T* lam, T g_max, int8_t* level, T* col,
                                    int64_t* ge) {
  T tm[L], dm[L];
  int32_t cm[L];
  for (int m = 0; m < L; ++m) {
    tm[m] = thr[m];
    dm[m] = dg[m + 1];
    cm[m] = 0;
  }
#pragma omp simd reduction(+ : cm[:L])
  for (int64_t x = 0; x < n; ++x) {
    const T r = st_request<T>(scale[x], u, v[x], g_range);
    const T a = std::fabs(r);
    int32_t k = 0;
    T step = 0;
    for (int m = 0; m < L; ++m) {
      const int32_t q = a >= tm[m];
      k += q;
      cm[m] += q;
      step = q ? dm[m] : step;
    }
    const int32_t l = r > 0 ? k : (r < 0 ? -k : 0);
    const T y = st_apply_one<T>(f_in[x], lam[x], l, step, g_max);
    f_out[x] = y;
    if (kLevel) level[x] = (int8_t)l;
    if (kCol) col[x] += std::fabs(y);
  }
  if (X > n) st_decay_row<T>(X - n, f_in + n, f_out + n, lam + n, g_max, kLevel ? level + n : nullptr,
                            kCol ? col + n : nullptr);
  if (ge)
    for (int m = 0; m < L; ++m) ge[m] += cm[m];
}

// f(std::integral_constant<int, L>{}) for L = 1..8 (the one-pass helpers' unrolled level counts); false for
// another L. f must be a STOXBAR_LAMBDA, so that its loop too is compiled inside the caller's clone.
template <typename F>
STOXBAR_INLINE bool st_with_levels(int L, F&& f) {
  switch (L) {
#define STOXBAR_ST_CASE(NL)                \
  case NL:                                 \
    f(std::integral_constant<int, NL>{}); \
    return true;
    STOXBAR_ST_CASE(1)
    STOXBAR_ST_CASE(2)
    STOXBAR_ST_CASE(3)
    STOXBAR_ST_CASE(4)
    STOXBAR_ST_CASE(5)
    STOXBAR_ST_CASE(6)
    STOXBAR_ST_CASE(7)
    STOXBAR_ST_CASE(8)
#undef STOXBAR_ST_CASE
    default:
      return false;
  }
}

template <typename T, bool kLevel, bool kCol>
STOXBAR_INLINE bool st_update_row_t(int64_t n, int64_t X, const T* scale, T u, const T* v, T g_range, const T* thr,
                                    const T* dg, int L, const T* f_in, T* f_out, const T* lam, T g_max, int8_t* level,
                                    T* col, int64_t* ge) {
  return st_with_levels(L, [&](auto nl) STOXBAR_LAMBDA {
    st_update_row_L<T, decltype(nl)::value, kLevel, kCol>(n, X, scale, u, v, g_range, thr, dg, f_in, f_out, lam,
                                                          g_max, level, col, ge);
  });
}

// One dense row's short-term change (request, levels, decay and pulse; level nullable; col written iff kCol,
// as the caller knows): one pass for L <= 8 levels (st_update_row_L), else st_request_row then st_apply_row
// through the scratch d, k, step [X].
template <typename T, bool kCol>
STOXBAR_INLINE void st_update_row(int64_t n, int64_t X, const T* scale, T u, const T* v, T g_range, const T* thr,
                                  const T* dg, int L, const T* f_in, T* f_out, const T* lam, T g_max, int8_t* level,
                                  T* col, int64_t* ge, T* d, int32_t* k, T* step) {
  const bool done =
      level ? st_update_row_t<T, true, kCol>(n, X, scale, u, v, g_range, thr, dg, L, f_in, f_out, lam, g_max, level,
                                             col, ge)
            : st_update_row_t<T, false, kCol>(n, X, scale, u, v, g_range, thr, dg, L, f_in, f_out, lam, g_max, level,
                                              col, ge);
  if (done) return;
  st_request_row<T>(n, X, scale, u, v, g_range, thr, dg, L, d, k, step, ge);
  st_apply_row<T>(X, f_in, f_out, lam, d, k, step, g_max, level, kCol ? col : nullptr);
}

// The backward's clamp mask of one dense row with its request recomputed in registers (st_request_row's
// request, level count and step; the level loop unrolled for a compile-time L): gm[x] = go[x] where
// f_in * lam + the signed step lies in [-g_max, g_max] (inclusive, as torch.clamp), else 0; returns
// sum_x gm[x] * scale[x] * v[x].
template <typename T, int L>
STOXBAR_INLINE T st_mask_row_L(int64_t n, const T* scale, T u, const T* v, T g_range, const T* thr, const T* dg,
                               const T* f_in, const T* lam, T g_max, const T* go, T* gm) {
  T tm[L], dm[L];
  for (int m = 0; m < L; ++m) {
    tm[m] = thr[m];
    dm[m] = dg[m + 1];
  }
  T r1 = 0;
#pragma omp simd reduction(+ : r1)
  for (int64_t x = 0; x < n; ++x) {
    const T r = st_request<T>(scale[x], u, v[x], g_range);
    const T a = std::fabs(r);
    T step = 0;
    for (int m = 0; m < L; ++m) step = a >= tm[m] ? dm[m] : step;
    T pre = f_in[x] * lam[x];
    // the signed step (a -0 where r < 0 requests nothing: the same sum up to its zero's sign, which no
    // comparison below sees)
    pre = pre + (r < 0 ? -step : step);
    const bool in = (pre >= -g_max) & (pre <= g_max);  // & not &&: no branch, so the loop vectorises
    const T g = in ? go[x] : T(0);
    gm[x] = g;
    r1 += g * scale[x] * v[x];
  }
  return r1;
}

// st_mask_row_L for L <= 8 levels (r1 = its sum); false for more (the caller requests the row first).
template <typename T>
STOXBAR_INLINE bool st_mask_row(int64_t n, const T* scale, T u, const T* v, T g_range, const T* thr, const T* dg, int L,
                                const T* f_in, const T* lam, T g_max, const T* go, T* gm, T& r1) {
  return st_with_levels(L, [&](auto nl) STOXBAR_LAMBDA {
    r1 = st_mask_row_L<T, decltype(nl)::value>(n, scale, u, v, g_range, thr, dg, f_in, lam, g_max, go, gm);
  });
}

}  // namespace stoxbar
