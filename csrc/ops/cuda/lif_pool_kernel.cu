// CUDA kernels of the LIF op fused with a 2×2 max pool: one thread per
// window walks its four neurons through all T steps (forward), or recomputes
// them into a stash and sweeps the steps in reverse (backward).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "ops/cuda/cuda_helpers.h"
#include "ops/lif_pool.h"
#include "tensor_utils.h"

namespace pysnn {
namespace lif {
namespace {

// The input offsets of window q's neurons in row-major order (first_max_factors' order).
__device__ __forceinline__ void window_neurons(int64_t q, int64_t W, int64_t n[4]) {
  const int64_t half = W / 2;
  const int64_t base = (q / half) * 2 * W + 2 * (q % half);
  n[0] = base;
  n[1] = base + 1;
  n[2] = base + W;
  n[3] = base + W + 1;
}

template <typename scalar_t>
__global__ void lif_pool_forward_kernel(const scalar_t* __restrict__ x, int64_t x_step, const scalar_t* __restrict__ u0,
                                        scalar_t* __restrict__ pooled, scalar_t* __restrict__ state, int64_t T,
                                        int64_t Q, int64_t W, at::opmath_type<scalar_t> decay,
                                        at::opmath_type<scalar_t> threshold) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(q, Q) {
    int64_t n[4];
    window_neurons(q, W, n);
    opmath_t v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k)
      v[k] = u0 ? static_cast<opmath_t>(u0[n[k]]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      opmath_t any = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const opmath_t u = charge(v[k], static_cast<opmath_t>(x[t * x_step + n[k]]), decay);
        const opmath_t s = fire(u, threshold);
        v[k] = soft_reset(u, s, threshold);
        any = s > any ? s : any;
      }
      pooled[t * Q + q] = static_cast<scalar_t>(any);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k)
      state[n[k]] = static_cast<scalar_t>(v[k]);
  }
}

// `stash` (T × N) takes each neuron's stash_for_sweep value, `winner` (T × Q)
// each window's first maximum. For a sequence (x_step = N) the stash is
// grad_x itself, swept in place as lif_backward_input_kernel does; for one
// repeated step (x_step = 0, dL/dx[t] summed over t) it is a transient
// buffer the caller allocates and frees on return, as is `winner`. grad_x
// may be x itself (lif_pool_backward_over_input): a thread writes only its
// own window's neurons, each after reading its x (hence x is not restrict).
template <Surrogate kind, GradMode mode, typename scalar_t>
__global__ void lif_pool_backward_kernel(const scalar_t* __restrict__ grad_pooled, int64_t grad_step,
                                         const scalar_t* __restrict__ grad_state, const scalar_t* x, int64_t x_step,
                                         const scalar_t* __restrict__ u0, scalar_t* stash, uint8_t* winner,
                                         scalar_t* grad_x, scalar_t* __restrict__ grad_u0, int64_t T, int64_t N,
                                         int64_t Q, int64_t W, at::opmath_type<scalar_t> decay,
                                         at::opmath_type<scalar_t> threshold, at::opmath_type<scalar_t> alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(q, Q) {
    int64_t n[4];
    window_neurons(q, W, n);
    opmath_t v[4], s[4];
#pragma unroll
    for (int k = 0; k < 4; ++k)
      v[k] = u0 ? static_cast<opmath_t>(u0[n[k]]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const opmath_t u = charge(v[k], static_cast<opmath_t>(x[t * x_step + n[k]]), decay);
        s[k] = fire(u, threshold);
        v[k] = soft_reset(u, s[k], threshold);
        stash[t * N + n[k]] = stash_for_sweep<kind, scalar_t>(u, threshold, alpha);
      }
      opmath_t factor[4];
      first_max_factors(s[0], s[1], s[2], s[3], factor);
      winner[t * Q + q] = static_cast<uint8_t>(factor[1] + 2 * factor[2] + 3 * factor[3]);
    }
    opmath_t carry[4], total[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      carry[k] = grad_state ? static_cast<opmath_t>(grad_state[n[k]]) : opmath_t(0);
      total[k] = 0;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const opmath_t g = static_cast<opmath_t>(grad_pooled[t * grad_step + q]);
      const int first = winner[t * Q + q];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const opmath_t sg = surrogate_from_stash<kind>(stash[t * N + n[k]], threshold, alpha);
        const opmath_t gu =
            backward_step<mode>(k == first ? g : opmath_t(0), opmath_t(0), sg, carry[k], decay, threshold);
        if (x_step == 0) {
          total[k] += static_cast<opmath_t>(static_cast<scalar_t>(gu));
        } else {
          grad_x[t * N + n[k]] = static_cast<scalar_t>(gu);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (x_step == 0) grad_x[n[k]] = static_cast<scalar_t>(total[k]);
      if (grad_u0) grad_u0[n[k]] = static_cast<scalar_t>(carry[k]);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> lif_pool_forward_cuda(const at::Tensor& x_, int64_t steps, double decay,
                                                         double threshold, c10::string_view surrogate, double alpha,
                                                         c10::string_view grad_mode,
                                                         const c10::optional<at::Tensor>& u0_) {
  check_pool_forward_args("lif_pool_forward_cuda", c10::DeviceType::CUDA, x_, steps, decay, threshold, surrogate, alpha,
                          grad_mode, u0_);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, x_step, u0, g, pooled, state] = prepare_pool_forward(x_, steps, u0_);
  if (g.N == 0) return {pooled, state};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_pool_forward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    lif_pool_forward_kernel<scalar_t><<<cuda::num_blocks(g.Q), cuda::kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), pooled.data_ptr<scalar_t>(),
        state.data_ptr<scalar_t>(), g.T, g.Q, g.W, static_cast<opmath_t>(decay), static_cast<opmath_t>(threshold));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {pooled, state};
}

std::tuple<at::Tensor, at::Tensor> pool_backward_cuda(const char* op, const at::Tensor& grad_pooled_,
                                                      const c10::optional<at::Tensor>& grad_state_,
                                                      const at::Tensor& x_, const c10::optional<at::Tensor>& u0_,
                                                      double decay, double threshold, c10::string_view surrogate,
                                                      double alpha, c10::string_view grad_mode, bool over_x) {
  const Options opt = check_pool_backward_args(op, c10::DeviceType::CUDA, grad_pooled_, grad_state_, x_, u0_, decay,
                                               threshold, surrogate, alpha, grad_mode);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, x_step, grad_pooled, grad_step, grad_state, u0, g, grad_x, grad_u0] =
      prepare_pool_backward(grad_pooled_, grad_state_, x_, u0_, over_x);
  if (g.N == 0) return {grad_x, grad_u0};

  const at::Tensor stash = x_step == 0 ? at::empty({g.T, g.N}, x.options()) : grad_x;
  const at::Tensor winner = at::empty({g.T, g.Q}, x.options().dtype(at::kByte));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_pool_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        lif_pool_backward_kernel<decltype(kind)::value, decltype(mode)::value, scalar_t>
            <<<cuda::num_blocks(g.Q), cuda::kThreads, 0, stream>>>(
                grad_pooled.const_data_ptr<scalar_t>(), grad_step, optional_data<scalar_t>(grad_state),
                x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), stash.data_ptr<scalar_t>(),
                winner.data_ptr<uint8_t>(), grad_x.data_ptr<scalar_t>(), data_or_null<scalar_t>(grad_u0), g.T, g.N, g.Q,
                g.W, static_cast<opmath_t>(opt.decay), static_cast<opmath_t>(opt.threshold),
                static_cast<opmath_t>(opt.alpha));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {grad_x, grad_u0};
}

std::tuple<at::Tensor, at::Tensor> lif_pool_backward_cuda(const at::Tensor& grad_pooled,
                                                          const c10::optional<at::Tensor>& grad_state,
                                                          const at::Tensor& x, const c10::optional<at::Tensor>& u0,
                                                          double decay, double threshold, c10::string_view surrogate,
                                                          double alpha, c10::string_view grad_mode) {
  return pool_backward_cuda("lif_pool_backward_cuda", grad_pooled, grad_state, x, u0, decay, threshold, surrogate,
                            alpha, grad_mode, false);
}

at::Tensor lif_pool_backward_over_input_cuda(const at::Tensor& grad_pooled, const c10::optional<at::Tensor>& grad_state,
                                             const at::Tensor& x, const c10::optional<at::Tensor>& u0, double decay,
                                             double threshold, c10::string_view surrogate, double alpha,
                                             c10::string_view grad_mode) {
  return std::get<1>(pool_backward_cuda("lif_pool_backward_over_input_cuda", grad_pooled, grad_state, x, u0, decay,
                                        threshold, surrogate, alpha, grad_mode, true));
}

}  // namespace
}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CUDA, m) {
  m.impl("lif_pool_forward", &pysnn::lif::lif_pool_forward_cuda);
  m.impl("lif_pool_backward", &pysnn::lif::lif_pool_backward_cuda);
  m.impl("lif_pool_backward_over_input", &pysnn::lif::lif_pool_backward_over_input_cuda);
}
