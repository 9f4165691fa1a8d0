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

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, and picked at load time
// (portable builds, no -march=native); fp contraction stays off, so both give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define STOXBAR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define STOXBAR_CLONES
#endif

namespace stoxbar {

// Request, level count and step of one row. ge[m] += number of cells with |d| >= thr[m] (ge may
// be null). Levels are looped outside so every inner loop vectorises (no gathers).
template <typename T>
inline void st_request_row(int64_t n, int64_t X, const T* scale, T u, const T* v, T g_range,
                           const T* thr, const T* dg, int L, T* d, int32_t* k, T* step, int64_t* ge) {
#pragma omp simd
  for (int64_t x = 0; x < n; ++x) {
    T r = scale[x] * u;
    r = r * v[x];
    d[x] = r * g_range;
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
    T r = f_in[x] * lam[x];
    r = r + (l < 0 ? -step[x] : step[x]);
    r = r > g_max ? g_max : (r < -g_max ? -g_max : r);
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

}  // namespace stoxbar
