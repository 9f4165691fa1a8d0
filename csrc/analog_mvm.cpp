// The IO-managed analog MVM of a tiled layer in one native call.
//
// The same model as aihwkit 1.2.0's torch AnalogMVM.matmul (ONE_PASS) with stoxbar's tiled
// layouts and output-referred read noise (stoxbar/crossbar/mvm.py TiledAnalogMVM), operation by
// operation with the same ATen calls in the same order (including the random draws), so the
// result equals the Python path bit for bit. What it saves is the Python and autograd-function
// overhead of ~60 small tensor operations per read (the common case, a deterministic input side,
// in fused passes: io_mvm_fast; the rest op by op). Noise management NONE / ABS_MAX / MAX /
// CONSTANT, bound management NONE / ITERATIVE, deterministic rounding; anything else stays on
// the Python path (the caller checks). No gradient (inference reads only).
#include <torch/extension.h>

#include <cmath>
#include <limits>
#include <optional>

#include "analog_mvm.h"
#include "short_term.h"  // STOXBAR_CLONES

namespace stoxbar {

using torch::Tensor;

namespace {

// TiledAnalogMVM._matmul: per-tile partial outputs [B, T, O], plus read noise.
Tensor tiled_matmul_noisy(const Tensor& w, const Tensor& x, const std::optional<Tensor>& var) {
  Tensor out;
  if (w.dim() == 3) {
    out = at::bmm(x.transpose(0, 1), w.transpose(1, 2)).transpose(0, 1).contiguous();
    if (var) {
      auto sq = (x * x).transpose(0, 1);
      out = out + at::bmm(sq, var->transpose(1, 2)).transpose(0, 1).clamp_min(0).sqrt() * at::randn_like(out);
    }
    return out;
  }
  out = at::matmul(x.unsqueeze(-2), w.transpose(-1, -2)).squeeze(-2);
  if (var) {
    auto sq = x * x;
    Tensor v;
    if (var->dim() == 3)
      v = at::bmm(sq.transpose(0, 1), var->transpose(1, 2)).transpose(0, 1);
    else
      v = at::matmul(sq.unsqueeze(-2), var->transpose(-1, -2)).squeeze(-2);
    out = out + v.clamp_min(0).sqrt() * at::randn_like(out);
  }
  return out;
}

// aihwkit UniformQuantize.forward (deterministic rounding).
Tensor uniform_quantize(const Tensor& inp, double res, double bound) {
  res = res > 1.0 ? 1.0 / res : res;
  res *= 2 * bound;
  auto output = inp.clone();
  output = output / res;
  output = output.round();
  output.mul_(res);
  return output;
}

// One scale: a python float or a tensor, as aihwkit juggles it.
struct Scale {
  bool is_tensor = false;
  double value = 1.0;
  Tensor tensor;
};

// Round half to even (torch.round) in a form the compiler vectorises: adding and subtracting
// 1.5 * 2^(mantissa bits) rounds in the default rounding mode; larger values are integers already.
template <typename T>
inline T round_half_even(T v) {
  constexpr T magic = sizeof(T) == 4 ? (T)12582912.0 : (T)6755399441055744.0;  // 1.5 * 2^23, 1.5 * 2^52
  constexpr T limit = sizeof(T) == 4 ? (T)4194304.0 : (T)2251799813685248.0;   // 2^22, 2^51
  const T a = v < 0 ? -v : v;
  const T r = (v + magic) - magic;
  return a < limit ? r : v;
}

template <typename T>
STOXBAR_CLONES int64_t finalize_rows(int64_t n, T* yp, const T* xp, T on, bool quant, T r, T b) {
  int64_t outside = 0;
#pragma omp simd reduction(+ : outside)
  for (int64_t i = 0; i < n; ++i) {
    T v = yp[i];
    if (xp) v = v + xp[i] * on;
    if (quant) {
      v = v / r;
      v = round_half_even(v);
      v = v * r;
    }
    outside += !(v <= b && v >= -b);
    yp[i] = v < -b ? -b : (v > b ? b : v);  // NaN stays NaN, as torch.clamp
  }
  return outside;
}

// Output finalisation of aihwkit's _finalize_output without output asymmetry, in place:
// y += out_noise * xi; y = round(y / r) * r (if out_res > 0); test |y| <= bound; clamp.
bool finalize_output_fused(Tensor& y, const Tensor& xi, double out_noise, double out_res, double out_bound,
                           double bound) {
  if (!y.is_contiguous()) y = y.contiguous();
  double res = out_res > 1.0 ? 1.0 / out_res : out_res;
  res *= 2 * out_bound;
  int64_t outside = 0;
  auto xic = xi.defined() ? xi.contiguous() : xi;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "finalize_output", [&] {
    outside = finalize_rows<scalar_t>(y.numel(), y.data_ptr<scalar_t>(),
                                      xic.defined() ? xic.data_ptr<scalar_t>() : nullptr, (scalar_t)out_noise,
                                      out_res > 0, (scalar_t)res, (scalar_t)bound);
  });
  return outside == 0;
}

// ---- the common case in fewer, fused passes --------------------------------------------------
// Deterministic input side (no input noise, no asymmetries): per round one pass prepares the
// input (scale, DAC, bound) and its square, the GEMMs run as in TiledAnalogMVM._matmul, one pass
// adds read and output noise (the same draws in the same order), quantises, tests and clamps.

// max of a row (of |x| if abs), NaN if it holds a NaN (as torch.amax), in one vectorised pass.
template <typename T>
STOXBAR_CLONES T row_max(int64_t X, const T* xr, bool abs) {
  T m = abs ? std::fabs(xr[0]) : xr[0];
  int64_t nan = 0;
  if (abs) {
#pragma omp simd reduction(max : m) reduction(+ : nan)
    for (int64_t j = 0; j < X; ++j) {
      const T v = std::fabs(xr[j]);
      nan += v != v;
      m = v > m ? v : m;
    }
  } else {
#pragma omp simd reduction(max : m) reduction(+ : nan)
    for (int64_t j = 0; j < X; ++j) {
      const T v = xr[j];
      nan += v != v;
      m = v > m ? v : m;
    }
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : m;
}

template <typename T>
STOXBAR_CLONES void prepare_rows_sq(int64_t rows, int64_t X, const T* xp, T* op, T* sqp, const T* sp, bool mul,
                                    bool quant, T r, T b) {
  for (int64_t i = 0; i < rows; ++i) {
    const T si = sp ? sp[i] : T(1);
    const T* xr = xp + i * X;
    T* orow = op + i * X;
    T* qrow = sqp ? sqp + i * X : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < X; ++j) {
      T v = xr[j];
      if (mul) v = v * si;
      if (quant) {
        v = v / r;
        v = round_half_even(v);
        v = v * r;
      }
      v = v < -b ? -b : (v > b ? b : v);
      orow[j] = v;
      if (qrow) qrow[j] = v * v;
    }
  }
}

template <typename T>
STOXBAR_CLONES int64_t finalize_rows_noisy(int64_t n, T* yp, const T* vp, const T* x1, const T* x2, T on, bool quant,
                                           T r, T b) {
  int64_t outside = 0;
#pragma omp simd reduction(+ : outside)
  for (int64_t i = 0; i < n; ++i) {
    T v = yp[i];
    if (vp) {
      T s = vp[i] < T(0) ? T(0) : vp[i];  // clamp_min(0)
      s = std::sqrt(s);
      s = s * x1[i];
      v = v + s;
    }
    if (x2) v = v + x2[i] * on;
    if (quant) {
      v = v / r;
      v = round_half_even(v);
      v = v * r;
    }
    outside += !(v <= b && v >= -b);
    yp[i] = v < -b ? -b : (v > b ? b : v);
  }
  return outside;
}

// The chip form's read (ChipWeight): out[b, t, o] = sum_x (W[c, t, o, x] + alpha F[b, t, o, x]) s[b, t, x] and
// v[b, t, o] = sum_x var[c, t, o, x] sq[b, t, x], c = chip[b], in one pass over F: the values of the
// per-slot GEMMs up to the order of the sums (W + alpha F is formed per element as torch.add does).
template <typename T>
STOXBAR_CLONES void chip_gemv(int64_t B, int64_t TT, int64_t O, int64_t X, const T* w, const T* st, const int64_t* chip,
                              T alpha, const T* s, const T* var, const T* sq, T* out, T* v) {
#pragma omp parallel num_threads(threads_for(B * TT * O * X))
  {
    FlushSubnormals ftz;  // subnormal floats read and written as 0 (docs/native.md §5)
#pragma omp for schedule(static)
    for (int64_t bt = 0; bt < B * TT; ++bt) {
      const int64_t b = bt / TT, t = bt % TT, cell0 = (chip[b] * TT + t) * O * X;
      const T* xr = s + bt * X;
      for (int64_t o = 0; o < O; ++o) {
        const T *wr = w + cell0 + o * X, *fr = st + (bt * O + o) * X;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < X; ++j) acc += (wr[j] + alpha * fr[j]) * xr[j];
        out[bt * O + o] = acc;
        if (var) {
          const T *vr = var + cell0 + o * X, *qr = sq + bt * X;
          T acc2 = 0;
#pragma omp simd reduction(+ : acc2)
          for (int64_t j = 0; j < X; ++j) acc2 += vr[j] * qr[j];
          v[bt * O + o] = acc2;
        }
      }
    }
  }
}

template <typename T>
std::tuple<Tensor, int64_t> io_mvm_fast(const Tensor& weight, const Tensor& input, const std::optional<Tensor>& var,
                                        const IOPars& p, const ChipWeight* chip) {
  const int64_t B = input.size(0), TT = input.size(1), X = input.size(2), O = weight.size(-2), rows = B * TT;
  auto x = input.contiguous();
  const T* xp = x.data_ptr<T>();
  const bool n_management = p.nm_type != NM_NONE, b_management = p.bm_type != BM_NONE;
  // _compute_noise_management, per (sample, tile) row; scalar for NONE / CONSTANT
  std::vector<T> nm;
  double nm_value = 1.0;
  if (p.nm_type == NM_ABS_MAX || p.nm_type == NM_MAX) {
    nm.resize(rows);
    bool all_zero = true;
    const T thres = (T)p.nm_thres;
    for (int64_t i = 0; i < rows; ++i) {
      T m = row_max<T>(X, xp + i * X, p.nm_type == NM_ABS_MAX);  // torch.amax: NaN if any is NaN
      if (p.nm_thres > 0.0) m = m > thres ? thres : m;
      all_zero = all_zero && m == T(0);
      nm[i] = m <= T(0) ? T(1) : m;
    }
    if (all_zero) return {at::zeros({B, TT, O}, input.options()), 0};
  } else if (p.nm_type == NM_CONSTANT) {
    nm_value = p.nm_thres > 0.0 ? p.nm_thres : 1.0;
  }
  const bool tensor_scale = !nm.empty();
  double inp_res_bm = p.inp_res;
  if (inp_res_bm > 0) {
    inp_res_bm = inp_res_bm > 1.0 ? 1 / inp_res_bm : inp_res_bm;
    inp_res_bm *= 2.0 * p.inp_bound;
  }
  const double inf = std::numeric_limits<double>::infinity();
  const double ibound = p.inp_bound > 0 ? p.inp_bound : inf, obound = p.out_bound > 0 ? p.out_bound : inf;
  double ires = p.inp_res > 1.0 ? 1.0 / p.inp_res : p.inp_res;
  ires *= 2 * p.inp_bound;
  double ores = p.out_res > 1.0 ? 1.0 / p.out_res : p.out_res;
  ores *= 2 * p.out_bound;

  auto s = torch::empty_like(x);
  auto sq = var ? torch::empty_like(x) : Tensor();
  std::vector<T> sc(tensor_scale ? rows : 0);
  double scale_value = 1.0;
  bool scaling = false;
  int64_t rounds = 0, first_clip = 0;
  double reduction = 0.5;
  Tensor output;
  while (true) {
    reduction *= 2.0;
    scaling = false;
    scale_value = 1.0;
    if (n_management) {
      if (tensor_scale)
        for (int64_t i = 0; i < rows; ++i) sc[i] = (T(1) / nm[i]) * T(1.0);  // python: 1.0 / tensor
      else
        scale_value = 1.0 / nm_value;
      scaling = tensor_scale || scale_value != 1.0;
    }
    if (b_management) {
      if (tensor_scale)
        for (int64_t i = 0; i < rows; ++i) sc[i] = sc[i] / (T)reduction;
      else
        scale_value /= reduction;
      scaling = tensor_scale || scale_value != 1.0;
    }
    // a python-float scale multiplies in the tensor's precision, like a per-row one
    std::vector<T> row_scale;
    const T* sp = nullptr;
    if (scaling) {
      if (tensor_scale) {
        sp = sc.data();
      } else {
        row_scale.assign(rows, (T)scale_value);
        sp = row_scale.data();
      }
    }
    prepare_rows_sq<T>(rows, X, xp, s.data_ptr<T>(), var ? sq.data_ptr<T>() : nullptr, sp, scaling, p.inp_res > 0,
                       (T)ires, (T)ibound);
    ++rounds;
    Tensor out, v;
    // A round that clips is discarded whole (bound management reads again), so with shared tiled
    // weights a round that is not the last one allowed first reads one tile, the one that clipped
    // in the round before (tile 0 at first); if it clips, the round stops there. The random draws
    // are made first, for the whole round, as before (the GEMMs draw nothing), and a tile's product
    // equals that tile's matrix of the bmm (the same values, tested).
    const bool last_allowed = !b_management || reduction > p.max_bm_factor ||
                              (inp_res_bm > 0.0 && reduction > p.max_bm_res / inp_res_bm);
    // (only for batches of several vectors: for one vector a tile's GEMV costs less than the calls)
    if (weight.dim() == 3 && !last_allowed && TT > 1 && B >= 4) {
      Tensor x1, x2;
      auto finalize_tile = [&](Tensor& o, Tensor& vv, int64_t t) {  // one tile's outputs of every vector
        int64_t n_out = 0;
        for (int64_t b = 0; b < B; ++b) {
          const int64_t off = (b * TT + t) * O;
          n_out += finalize_rows_noisy<T>(O, o.data_ptr<T>() + off, var ? vv.data_ptr<T>() + off : nullptr,
                                          var ? x1.data_ptr<T>() + off : nullptr,
                                          x2.defined() ? x2.data_ptr<T>() + off : nullptr, (T)p.out_noise,
                                          p.out_res > 0, (T)ores, (T)obound);
        }
        return n_out;
      };
      // probe the tile that clipped last round (tile 0 at first): if it clips again, so does the round
      const int64_t t = first_clip;
      Tensor probe = torch::empty({B, TT, O}, x.options()), probe_v;
      if (var) probe_v = torch::empty({B, TT, O}, x.options());
      x1 = var ? at::randn_like(probe) : Tensor();
      x2 = p.out_noise > 0.0 ? at::randn_like(probe) : Tensor();
      probe.select(1, t).copy_(at::mm(s.select(1, t), weight.select(0, t).t()));  // [B, X] x [X, O]
      if (var) probe_v.select(1, t).copy_(at::mm(sq.select(1, t), var->select(0, t).t()));
      if (finalize_tile(probe, probe_v, t) > 0) {
        output = probe;
        continue;  // this round is discarded: read again at half the input scale
      }
      // the probe passed: read every tile (the probe's tile again, the same values) and test them all
      out = at::bmm(s.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1).contiguous();
      if (var) v = at::bmm(sq.transpose(0, 1), var->transpose(1, 2)).transpose(0, 1).contiguous();
      int64_t outside = 0;
      for (int64_t k = 0; k < TT; ++k) {
        const int64_t n_out = finalize_tile(out, v, k);
        if (n_out && !outside) first_clip = k;
        outside += n_out;
      }
      output = out;
      if (outside == 0) break;  // passed
      continue;
    }
    if (chip) {
      out = torch::empty({B, TT, O}, x.options());
      if (var) v = torch::empty({B, TT, O}, x.options());
      chip_gemv<T>(B, TT, O, X, weight.data_ptr<T>(), chip->st.data_ptr<T>(), chip->slot_chip.data_ptr<int64_t>(),
                   (T)chip->alpha, s.data_ptr<T>(), var ? var->data_ptr<T>() : nullptr, var ? sq.data_ptr<T>() : nullptr,
                   out.data_ptr<T>(), var ? v.data_ptr<T>() : nullptr);
    } else if (weight.dim() == 3) {
      out = at::bmm(s.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1).contiguous();
      if (var) v = at::bmm(sq.transpose(0, 1), var->transpose(1, 2)).transpose(0, 1).contiguous();
    } else {
      out = at::matmul(s.unsqueeze(-2), weight.transpose(-1, -2)).squeeze(-2).contiguous();
      if (var) {
        if (var->dim() == 3)
          v = at::bmm(sq.transpose(0, 1), var->transpose(1, 2)).transpose(0, 1).contiguous();
        else
          v = at::matmul(sq.unsqueeze(-2), var->transpose(-1, -2)).squeeze(-2).contiguous();
      }
    }
    Tensor x1 = var ? at::randn_like(out) : Tensor();
    Tensor x2 = p.out_noise > 0.0 ? at::randn_like(out) : Tensor();
    const int64_t outside = finalize_rows_noisy<T>(out.numel(), out.data_ptr<T>(), var ? v.data_ptr<T>() : nullptr,
                                                   var ? x1.data_ptr<T>() : nullptr,
                                                   x2.defined() ? x2.data_ptr<T>() : nullptr, (T)p.out_noise,
                                                   p.out_res > 0, (T)ores, (T)obound);
    output = out;
    if (!b_management) break;
    const bool passed = outside == 0 || reduction > p.max_bm_factor ||
                        (inp_res_bm > 0.0 && reduction > p.max_bm_res / inp_res_bm);
    if (passed) break;
  }
  if (scaling || p.out_scale != 1.0) {
    T* op = output.data_ptr<T>();
    for (int64_t i = 0; i < rows; ++i) {
      // python: output *= out_scale / scale (tensor: reciprocal * out_scale; float: a python float)
      const T f = tensor_scale ? (T(1) / sc[i]) * (T)p.out_scale : (T)(p.out_scale / scale_value);
      for (int64_t o = 0; o < O; ++o) op[i * O + o] = op[i * O + o] * f;
    }
  }
  return {output, rounds};
}

}  // namespace

std::tuple<Tensor, int64_t> io_mvm(const Tensor& weight_in, const Tensor& input,
                                   const std::optional<Tensor>& noise_var_in, const IOPars& p, const ChipWeight* chip) {
  at::NoGradGuard no_grad;
  const int64_t O = weight_in.size(-2);
  if (chip) {
    const int64_t C = weight_in.size(0);
    TORCH_CHECK(weight_in.dim() == 4 && weight_in.is_contiguous() && chip->st.dim() == 4 && chip->st.is_contiguous() &&
                    chip->st.size(0) == input.size(0) && chip->st.sizes().slice(1) == weight_in.sizes().slice(1) &&
                    chip->st.scalar_type() == weight_in.scalar_type() && input.dim() == 3 &&
                    chip->slot_chip.scalar_type() == at::kLong && chip->slot_chip.dim() == 1 &&
                    chip->slot_chip.is_contiguous() && chip->slot_chip.size(0) == input.size(0) &&
                    (!noise_var_in || (noise_var_in->sizes() == weight_in.sizes() && noise_var_in->is_contiguous())),
                "io_mvm: the chip form needs contiguous chip weights [C, T, O, X], short-term state [B, T, O, X], "
                "chips int64 [B] and variance [C, T, O, X]");
    const int64_t lo = chip->slot_chip.min().item<int64_t>(), hi = chip->slot_chip.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < C, "io_mvm: a slot's chip is outside [0, ", C, ")");
  }
  const bool fast = !p.perfect && p.inp_noise <= 0.0 && p.inp_asymmetry == 0.0 && p.out_asymmetry == 0.0 &&
                    input.dim() == 3;
  if (chip && !fast) {  // the other paths read per slot: form the slots' W + F as the torch path does
    auto w = at::add(weight_in.index_select(0, chip->slot_chip), chip->st, chip->alpha);
    std::optional<Tensor> v;
    if (noise_var_in) v = noise_var_in->index_select(0, chip->slot_chip);
    return io_mvm(w, input, v, p);
  }
  const Tensor& weight = weight_in;
  const std::optional<Tensor>& noise_var = noise_var_in;
  if (p.perfect) return {tiled_matmul_noisy(weight, input, noise_var), 0};
  if (fast) {
    std::tuple<Tensor, int64_t> result;
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "io_mvm", [&] {
      result = io_mvm_fast<scalar_t>(weight, input, noise_var, p, chip);
    });
    return result;
  }

  // _compute_noise_management
  Scale nm;
  if (p.nm_type == NM_ABS_MAX || p.nm_type == NM_MAX) {
    nm.is_tensor = true;
    nm.tensor = p.nm_type == NM_ABS_MAX ? at::amax(input.abs(), -1, true) : at::amax(input, -1, true);
    if (p.nm_thres > 0.0) nm.tensor = at::clamp(nm.tensor, std::nullopt, p.nm_thres);
  } else if (p.nm_type == NM_CONSTANT) {
    nm.value = p.nm_thres > 0.0 ? p.nm_thres : 1.0;
  }
  const bool n_management = p.nm_type != NM_NONE;
  const bool b_management = p.bm_type != BM_NONE;
  if (p.inp_noise <= 0.0 && nm.is_tensor && (nm.tensor == 0.0).all().item<bool>()) {
    return {at::zeros({input.size(0), input.size(1), O}, input.options()), 0};
  }
  if (nm.is_tensor) nm.tensor = at::where(nm.tensor <= 0.0, at::ones_like(nm.tensor), nm.tensor);

  double inp_res_bm = p.inp_res;
  if (inp_res_bm > 0) {
    inp_res_bm = inp_res_bm > 1.0 ? 1 / inp_res_bm : inp_res_bm;
    inp_res_bm *= 2.0 * p.inp_bound;
  }
  const double inf = std::numeric_limits<double>::infinity();
  int64_t rounds = 0;
  double reduction = 0.5;
  bool passed = false;
  Tensor output;
  Scale scale;
  bool scaling = false;
  while (!passed) {
    passed = true;
    reduction *= 2.0;
    scaling = false;
    scale = Scale();
    if (n_management) {
      if (nm.is_tensor) {
        scale.is_tensor = true;
        scale.tensor = nm.tensor.reciprocal() * 1.0;  // python: 1.0 / tensor
      } else {
        scale.value = 1.0 / nm.value;
      }
      scaling = scale.is_tensor || scale.value != 1.0;
    }
    if (b_management) {
      if (scale.is_tensor)
        scale.tensor.div_(reduction);
      else
        scale.value /= reduction;
      scaling = scale.is_tensor || scale.value != 1.0;
    }
    // _prepare_input (scale, DAC quantisation, input bound, input noise, asymmetry)
    const double ibound = p.inp_bound > 0 ? p.inp_bound : inf;
    Tensor s = input.clone();
    if (scaling) {
      if (scale.is_tensor)
        s.mul_(scale.tensor);
      else
        s.mul_(scale.value);
    }
    if (p.inp_res > 0) s = uniform_quantize(s, p.inp_res, p.inp_bound);
    s = at::where(s.abs() <= ibound, s, at::clamp(s, -ibound, ibound));
    if (p.inp_noise > 0.0) s.add_(p.inp_noise * at::randn_like(s));
    if (p.inp_asymmetry != 0.0) {
      auto neg = s < 0;
      s.index_put_({neg}, s.index({neg}) * (1.0 - p.inp_asymmetry));
    }
    // the MVM
    ++rounds;
    auto out = tiled_matmul_noisy(weight, s, noise_var);
    // _finalize_output (output noise, ADC quantisation, bound test, clamp)
    const double obound = p.out_bound > 0 ? p.out_bound : inf;
    bool not_clipping;
    if (p.out_asymmetry == 0.0) {
      Tensor xi = p.out_noise > 0.0 ? at::randn_like(out) : Tensor();
      not_clipping = finalize_output_fused(out, xi, p.out_noise, p.out_res, p.out_bound, obound);
    } else {
      auto neg = out < 0;
      out.index_put_({neg}, out.index({neg}) * (1.0 - p.out_asymmetry));
      if (p.out_noise > 0.0) out.add_(p.out_noise * at::randn_like(out));
      if (p.out_res > 0) out = uniform_quantize(out, p.out_res, p.out_bound);
      not_clipping = ((out <= obound) & (out >= -obound)).all().item<bool>();
      out = at::clamp(out, -obound, obound);
    }
    bool test = b_management ? not_clipping : true;
    output = out;
    if (!b_management) break;
    passed = test || reduction > p.max_bm_factor || (inp_res_bm > 0.0 && reduction > p.max_bm_res / inp_res_bm);
  }
  if (scaling || p.out_scale != 1.0) {
    if (scale.is_tensor)
      output.mul_(scale.tensor.reciprocal() * p.out_scale);  // python: out_scale / tensor
    else
      output.mul_(p.out_scale / scale.value);
  }
  return {output, rounds};
}

}  // namespace stoxbar
