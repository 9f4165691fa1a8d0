// The IO-managed analog MVM of a tiled layer (csrc/analog_mvm.cpp).
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <optional>
#include <tuple>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace stoxbar {

// Threads of a kernel's parallel loop: torch's setting, but 1 for small problems (fork/join would dominate).
inline int threads_for(int64_t n_elements) {
  return (int)std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_elements / 250000));
}

// Inside a kernel's parallel region (one per thread): subnormal floats (|x| < 1.18e-38 in float32) read as 0
// and results that would be subnormal written as 0 (x86 MXCSR DAZ + FTZ), the caller's mode restored on exit.
// A decaying short-term state otherwise sticks at the smallest subnormal once its decay factor is above 0.5
// (1.4e-45 * lambda rounds back to 1.4e-45), and every operation on a subnormal takes a slow microcode path:
// in Pong, ~4 % of F's cells after 3,000 steps (docs/native.md §5). Normal numbers give the same bits.
struct FlushSubnormals {
#if defined(__SSE__) || defined(__x86_64__)
  unsigned int saved;
  FlushSubnormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushSubnormals() { _mm_setcsr(saved); }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;
#endif
};

enum NoiseManagement : int64_t { NM_NONE = 0, NM_ABS_MAX = 1, NM_MAX = 2, NM_CONSTANT = 3 };
enum BoundManagement : int64_t { BM_NONE = 0, BM_ITERATIVE = 1 };

// aihwkit IOParameters fields the ONE_PASS forward reads (names as there).
struct IOPars {
  bool perfect = false;
  int64_t nm_type = NM_ABS_MAX;
  double nm_thres = 0.0;
  int64_t bm_type = BM_ITERATIVE;
  double inp_res = 0.0, inp_bound = 1.0, inp_noise = 0.0, inp_asymmetry = 0.0;
  double out_res = 0.0, out_bound = 0.0, out_noise = 0.0, out_asymmetry = 0.0, out_scale = 1.0;
  double max_bm_factor = 1000.0, max_bm_res = 0.25;
};

// A per-slot weight [B, T, O, X] given as its chips' long-term weights [C, T, O, X] (the io_mvm
// weight) plus alpha * st [B, T, O, X] (the slots' short-term state; slot b is on chip slot_chip[b],
// int64 [B]), the read-noise variance per chip [C, T, O, X]: the fast read forms no slot's W + F
// (CrossbarState.chip_weights). Both contiguous, of the input's dtype.
struct ChipWeight {
  torch::Tensor st, slot_chip;
  double alpha = 1.0;
};

// Per-tile partial outputs [B, T, O] of weight [T, O, X] or [B, T, O, X] (or the chip form, chip
// given) read with x [B, T, X], and the number of reads bound management took.
std::tuple<torch::Tensor, int64_t> io_mvm(const torch::Tensor& weight, const torch::Tensor& input,
                                          const std::optional<torch::Tensor>& noise_var, const IOPars& p,
                                          const ChipWeight* chip = nullptr);

}  // namespace stoxbar
