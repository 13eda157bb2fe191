// CPU kernels of the LIF op fused with a 2×2 max pool: parallel over pooled
// rows. A pooled row's window covers two neighbouring input rows, which are
// contiguous, so a block of pooled rows is one contiguous block of neurons:
// the time loop runs inside it as in the plain LIF kernels, and each step's
// spikes are pooled from a block-sized buffer while still in cache.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "macros.h"
#include "ops/lif_pool.h"
#include "tensor_utils.h"

namespace pysnn {
namespace lif {
namespace {

// Neurons per block: the forward keeps their membranes, the backward their T
// stashed surrogates and reaching gradients, so the block shrinks as T grows
// (at most kStashBytes per thread), never below one pooled row.
constexpr int64_t kBlock = 8192;
constexpr int64_t kStashBytes = int64_t(1) << 21;

int64_t rows_per_block(const PoolGeometry& g, int64_t bytes_per_neuron_step) {
  const int64_t row = 2 * g.W;
  const int64_t by_stash = kStashBytes / std::max<int64_t>(1, g.T * bytes_per_neuron_step * row);
  return std::max<int64_t>(1, std::min(kBlock / row, by_stash));
}

template <typename scalar_t>
PYSNN_CPU_CLONES void pool_forward_rows(const scalar_t* x, int64_t x_step, const scalar_t* u0, scalar_t* pooled,
                                        scalar_t* state, const PoolGeometry& g, int64_t row_begin, int64_t row_end,
                                        double decay_, double threshold_) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(decay_);
  const opmath_t threshold = static_cast<opmath_t>(threshold_);
  const int64_t W = g.W, half = g.W / 2;
  const int64_t block_rows = rows_per_block(g, 0);
  std::vector<opmath_t> v(static_cast<size_t>(block_rows * 2 * W)), spk(v.size());
  for (int64_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
    const int64_t rows = std::min(block_rows, row_end - r0);
    const int64_t first = r0 * 2 * W, len = rows * 2 * W;
    for (int64_t i = 0; i < len; ++i)
      v[i] = u0 ? static_cast<opmath_t>(u0[first + i]) : opmath_t(0);
    for (int64_t t = 0; t < g.T; ++t) {
      const scalar_t* xt = x + t * x_step + first;
      for (int64_t i = 0; i < len; ++i) {
        const opmath_t u = charge(v[i], static_cast<opmath_t>(xt[i]), decay);
        const opmath_t s = fire(u, threshold);
        v[i] = soft_reset(u, s, threshold);
        spk[i] = s;
      }
      scalar_t* out = pooled + t * g.Q + r0 * half;
      for (int64_t row = 0; row < rows; ++row) {
        const opmath_t* top = spk.data() + row * 2 * W;
        const opmath_t* bottom = top + W;
        for (int64_t j = 0; j < half; ++j)
          out[row * half + j] = static_cast<scalar_t>(
              std::max(std::max(top[2 * j], top[2 * j + 1]), std::max(bottom[2 * j], bottom[2 * j + 1])));
      }
    }
    for (int64_t i = 0; i < len; ++i)
      state[first + i] = static_cast<scalar_t>(v[i]);
  }
}

// Recomputes a block's membranes at every step as the forward did, stashing
// what the reverse sweep needs: stash_for_sweep of the membrane, and the
// pooled gradient at the neuron of each window it reaches (its first
// maximum; 0 at the others); then sweeps the steps in reverse. Each pass is
// one contiguous loop over the block, so the compiler vectorises the
// elementwise ones. kSummed (x holds one step, repeated): dL/dx[t] is summed
// over t, each term rounded to the storage type as lif_backward_input would
// store it.
template <Surrogate kind, GradMode mode, bool kSummed, typename scalar_t>
PYSNN_CPU_CLONES void pool_backward_rows(const scalar_t* grad_pooled, int64_t grad_step, const scalar_t* grad_state,
                                         const scalar_t* x, int64_t x_step, const scalar_t* u0, scalar_t* grad_x,
                                         scalar_t* grad_u0, const PoolGeometry& g, int64_t row_begin, int64_t row_end,
                                         const Options& opt) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(opt.decay);
  const opmath_t threshold = static_cast<opmath_t>(opt.threshold);
  const opmath_t alpha = static_cast<opmath_t>(opt.alpha);
  const int64_t T = g.T, W = g.W, half = g.W / 2;
  const int64_t block_rows = rows_per_block(g, sizeof(scalar_t) + sizeof(opmath_t));
  const size_t block = static_cast<size_t>(block_rows * 2 * W);
  std::vector<opmath_t> v(block), spk(block), carry(block), total(block);
  std::vector<scalar_t> stash(block * static_cast<size_t>(T));
  std::vector<opmath_t> reaching(block * static_cast<size_t>(T));
  for (int64_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
    const int64_t rows = std::min(block_rows, row_end - r0);
    const int64_t first = r0 * 2 * W, len = rows * 2 * W;
    for (int64_t i = 0; i < len; ++i)
      v[i] = u0 ? static_cast<opmath_t>(u0[first + i]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* xt = x + t * x_step + first;
      scalar_t* st = stash.data() + t * len;
      for (int64_t i = 0; i < len; ++i) {
        const opmath_t u = charge(v[i], static_cast<opmath_t>(xt[i]), decay);
        const opmath_t s = fire(u, threshold);
        v[i] = soft_reset(u, s, threshold);
        st[i] = stash_for_sweep<kind, scalar_t>(u, threshold, alpha);
        spk[i] = s;
      }
      const scalar_t* gp = grad_pooled + t * grad_step + r0 * half;
      opmath_t* rt = reaching.data() + t * len;
      for (int64_t row = 0; row < rows; ++row) {
        const opmath_t* top = spk.data() + row * 2 * W;
        const opmath_t* bottom = top + W;
        opmath_t* reach_top = rt + row * 2 * W;
        opmath_t* reach_bottom = reach_top + W;
        for (int64_t j = 0; j < half; ++j) {
          opmath_t factor[4];
          first_max_factors(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1], factor);
          const opmath_t grad = static_cast<opmath_t>(gp[row * half + j]);  // (selected, so inf or NaN stay put)
          reach_top[2 * j] = factor[0] > opmath_t(0) ? grad : opmath_t(0);
          reach_top[2 * j + 1] = factor[1] > opmath_t(0) ? grad : opmath_t(0);
          reach_bottom[2 * j] = factor[2] > opmath_t(0) ? grad : opmath_t(0);
          reach_bottom[2 * j + 1] = factor[3] > opmath_t(0) ? grad : opmath_t(0);
        }
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      carry[i] = grad_state ? static_cast<opmath_t>(grad_state[first + i]) : opmath_t(0);
      total[i] = 0;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* st = stash.data() + t * len;
      const opmath_t* rt = reaching.data() + t * len;
      scalar_t* gx = grad_x + (kSummed ? 0 : t * g.N) + first;
      for (int64_t i = 0; i < len; ++i) {
        const opmath_t sg = surrogate_from_stash<kind>(st[i], threshold, alpha);
        const opmath_t gu = backward_step<mode>(rt[i], opmath_t(0), sg, carry[i], decay, threshold);
        if constexpr (kSummed) {
          total[i] += static_cast<opmath_t>(static_cast<scalar_t>(gu));
        } else {
          gx[i] = static_cast<scalar_t>(gu);
        }
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      if constexpr (kSummed) grad_x[first + i] = static_cast<scalar_t>(total[i]);
      if (grad_u0) grad_u0[first + i] = static_cast<scalar_t>(carry[i]);
    }
  }
}

// Pooled rows per thread at least: about kBlock / 2 neurons.
int64_t row_grain(const PoolGeometry& g) { return std::max<int64_t>(1, kBlock / (4 * g.W)); }

std::tuple<at::Tensor, at::Tensor> lif_pool_forward_cpu(const at::Tensor& x_, int64_t steps, double decay,
                                                        double threshold, c10::string_view surrogate, double alpha,
                                                        c10::string_view grad_mode,
                                                        const c10::optional<at::Tensor>& u0_) {
  check_pool_forward_args("lif_pool_forward_cpu", c10::DeviceType::CPU, x_, steps, decay, threshold, surrogate, alpha,
                          grad_mode, u0_);
  auto [x, x_step, u0, g, pooled, state] = prepare_pool_forward(x_, steps, u0_);
  if (g.N == 0) return {pooled, state};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_pool_forward_cpu", [&] {
    const scalar_t* u0_data = optional_data<scalar_t>(u0);
    at::parallel_for(0, g.planes * g.H / 2, row_grain(g), [&](int64_t begin, int64_t end) {
      pool_forward_rows<scalar_t>(x.const_data_ptr<scalar_t>(), x_step, u0_data, pooled.data_ptr<scalar_t>(),
                                  state.data_ptr<scalar_t>(), g, begin, end, decay, threshold);
    });
  });
  return {pooled, state};
}

std::tuple<at::Tensor, at::Tensor> pool_backward_cpu(const char* op, const at::Tensor& grad_pooled_,
                                                     const c10::optional<at::Tensor>& grad_state_, const at::Tensor& x_,
                                                     const c10::optional<at::Tensor>& u0_, double decay,
                                                     double threshold, c10::string_view surrogate, double alpha,
                                                     c10::string_view grad_mode, bool over_x) {
  const Options opt = check_pool_backward_args(op, c10::DeviceType::CPU, grad_pooled_, grad_state_, x_, u0_, decay,
                                               threshold, surrogate, alpha, grad_mode);
  auto [x, x_step, grad_pooled, grad_step, grad_state, u0, g, grad_x, grad_u0] =
      prepare_pool_backward(grad_pooled_, grad_state_, x_, u0_, over_x);
  if (g.N == 0) return {grad_x, grad_u0};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_pool_backward", [&] {
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        at::parallel_for(0, g.planes * g.H / 2, row_grain(g), [&](int64_t begin, int64_t end) {
          const auto rows = [&](auto summed) {
            pool_backward_rows<decltype(kind)::value, decltype(mode)::value, decltype(summed)::value, scalar_t>(
                grad_pooled.const_data_ptr<scalar_t>(), grad_step, optional_data<scalar_t>(grad_state),
                x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), grad_x.data_ptr<scalar_t>(),
                data_or_null<scalar_t>(grad_u0), g, begin, end, opt);
          };
          if (x_step == 0) {
            rows(std::true_type{});
          } else {
            rows(std::false_type{});
          }
        });
      });
    });
  });
  return {grad_x, grad_u0};
}

std::tuple<at::Tensor, at::Tensor> lif_pool_backward_cpu(const at::Tensor& grad_pooled,
                                                         const c10::optional<at::Tensor>& grad_state,
                                                         const at::Tensor& x, const c10::optional<at::Tensor>& u0,
                                                         double decay, double threshold, c10::string_view surrogate,
                                                         double alpha, c10::string_view grad_mode) {
  return pool_backward_cpu("lif_pool_backward_cpu", grad_pooled, grad_state, x, u0, decay, threshold, surrogate, alpha,
                           grad_mode, false);
}

at::Tensor lif_pool_backward_over_input_cpu(const at::Tensor& grad_pooled, const c10::optional<at::Tensor>& grad_state,
                                            const at::Tensor& x, const c10::optional<at::Tensor>& u0, double decay,
                                            double threshold, c10::string_view surrogate, double alpha,
                                            c10::string_view grad_mode) {
  return std::get<1>(pool_backward_cpu("lif_pool_backward_over_input_cpu", grad_pooled, grad_state, x, u0, decay,
                                       threshold, surrogate, alpha, grad_mode, true));
}

}  // namespace
}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CPU, m) {
  m.impl("lif_pool_forward", &pysnn::lif::lif_pool_forward_cpu);
  m.impl("lif_pool_backward", &pysnn::lif::lif_pool_backward_cpu);
  m.impl("lif_pool_backward_over_input", &pysnn::lif::lif_pool_backward_over_input_cpu);
}
