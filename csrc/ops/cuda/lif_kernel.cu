// CUDA kernels of the multi-step LIF ops: one thread per neuron walks all T
// steps (forward) or sweeps them in reverse (backward), state in float32
// registers for half/bfloat16 inputs.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "ops/cuda/cuda_helpers.h"
#include "ops/lif.h"
#include "tensor_utils.h"

namespace pysnn {
namespace lif {
namespace {

// x[t] of neuron i is x[t * x_step + i] (x_step = 0: the same row at every step).
template <typename scalar_t, bool kSaveMembrane>
__global__ void lif_forward_kernel(const scalar_t* __restrict__ x, int64_t x_step, const scalar_t* __restrict__ u0,
                                   scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                   scalar_t* __restrict__ state, int64_t T, int64_t N, at::opmath_type<scalar_t> decay,
                                   at::opmath_type<scalar_t> threshold) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(i, N) {
    opmath_t v = u0 ? static_cast<opmath_t>(u0[i]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t k = t * N + i;
      const opmath_t u = charge(v, static_cast<opmath_t>(x[t * x_step + i]), decay);
      const opmath_t s = fire(u, threshold);
      v = soft_reset(u, s, threshold);
      spikes[k] = static_cast<scalar_t>(s);
      if constexpr (kSaveMembrane) membrane[k] = static_cast<scalar_t>(u);
    }
    state[i] = static_cast<scalar_t>(v);
  }
}

template <Surrogate kind, GradMode mode, typename scalar_t>
__global__ void lif_backward_kernel(const scalar_t* __restrict__ grad_spikes,
                                    const scalar_t* __restrict__ grad_membrane, const scalar_t* __restrict__ grad_state,
                                    const scalar_t* __restrict__ membrane, scalar_t* __restrict__ grad_x,
                                    scalar_t* __restrict__ grad_u0, int64_t T, int64_t N,
                                    at::opmath_type<scalar_t> decay, at::opmath_type<scalar_t> threshold,
                                    at::opmath_type<scalar_t> alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(i, N) {
    opmath_t carry = grad_state ? static_cast<opmath_t>(grad_state[i]) : opmath_t(0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t k = t * N + i;
      const opmath_t sg = surrogate_grad<kind>(static_cast<opmath_t>(membrane[k]) - threshold, alpha);
      const opmath_t gm = grad_membrane ? static_cast<opmath_t>(grad_membrane[k]) : opmath_t(0);
      grad_x[k] = static_cast<scalar_t>(
          backward_step<mode>(static_cast<opmath_t>(grad_spikes[k]), gm, sg, carry, decay, threshold));
    }
    if (grad_u0) grad_u0[i] = static_cast<scalar_t>(carry);
  }
}

// Recomputes each neuron's membrane from x, stashing what the reverse sweep
// needs from it in grad_x (stash_for_sweep, as the CPU kernel does), then
// sweeps grad_x backward in place: no saved membrane.
template <Surrogate kind, GradMode mode, typename scalar_t>
__global__ void lif_backward_input_kernel(const scalar_t* __restrict__ grad_spikes,
                                          const scalar_t* __restrict__ grad_state, const scalar_t* __restrict__ x,
                                          int64_t x_step, const scalar_t* __restrict__ u0, scalar_t* grad_x,
                                          scalar_t* __restrict__ grad_u0, int64_t T, int64_t N,
                                          at::opmath_type<scalar_t> decay, at::opmath_type<scalar_t> threshold,
                                          at::opmath_type<scalar_t> alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(i, N) {
    opmath_t v = u0 ? static_cast<opmath_t>(u0[i]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      const opmath_t u = charge(v, static_cast<opmath_t>(x[t * x_step + i]), decay);
      v = soft_reset(u, fire(u, threshold), threshold);
      grad_x[t * N + i] = stash_for_sweep<kind, scalar_t>(u, threshold, alpha);
    }
    opmath_t carry = grad_state ? static_cast<opmath_t>(grad_state[i]) : opmath_t(0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t k = t * N + i;
      const opmath_t sg = surrogate_from_stash<kind>(grad_x[k], threshold, alpha);
      grad_x[k] = static_cast<scalar_t>(
          backward_step<mode>(static_cast<opmath_t>(grad_spikes[k]), opmath_t(0), sg, carry, decay, threshold));
    }
    if (grad_u0) grad_u0[i] = static_cast<scalar_t>(carry);
  }
}

// lif_backward_input_kernel for an input repeated at every step (x_step = 0),
// summing dL/dx[t] over t into grad_x [N]. The recomputed membrane goes to
// `stash` (T × N, allocated by the caller and freed on return).
template <Surrogate kind, GradMode mode, typename scalar_t>
__global__ void lif_repeated_backward_kernel(const scalar_t* __restrict__ grad_spikes,
                                             const scalar_t* __restrict__ grad_state, const scalar_t* __restrict__ x,
                                             const scalar_t* __restrict__ u0, scalar_t* stash,
                                             scalar_t* __restrict__ grad_x, scalar_t* __restrict__ grad_u0, int64_t T,
                                             int64_t N, at::opmath_type<scalar_t> decay,
                                             at::opmath_type<scalar_t> threshold, at::opmath_type<scalar_t> alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  PYSNN_CUDA_1D_KERNEL_LOOP(i, N) {
    const opmath_t xi = static_cast<opmath_t>(x[i]);
    opmath_t v = u0 ? static_cast<opmath_t>(u0[i]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      const opmath_t u = charge(v, xi, decay);
      v = soft_reset(u, fire(u, threshold), threshold);
      stash[t * N + i] = stash_for_sweep<kind, scalar_t>(u, threshold, alpha);
    }
    opmath_t carry = grad_state ? static_cast<opmath_t>(grad_state[i]) : opmath_t(0);
    opmath_t total = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t k = t * N + i;
      const opmath_t sg = surrogate_from_stash<kind>(stash[k], threshold, alpha);
      total += static_cast<opmath_t>(static_cast<scalar_t>(
          backward_step<mode>(static_cast<opmath_t>(grad_spikes[k]), opmath_t(0), sg, carry, decay, threshold)));
    }
    grad_x[i] = static_cast<scalar_t>(total);
    if (grad_u0) grad_u0[i] = static_cast<scalar_t>(carry);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_forward_cuda(const at::Tensor& x_, double decay, double threshold,
                                                                c10::string_view surrogate, double alpha,
                                                                c10::string_view grad_mode,
                                                                const c10::optional<at::Tensor>& u0_,
                                                                bool save_membrane) {
  check_forward_args("lif_forward_cuda", c10::DeviceType::CUDA, x_, decay, threshold, surrogate, alpha, grad_mode, u0_);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, x_step, u0, T, N, spikes, membrane, state] = prepare_forward(x_, u0_, save_membrane);
  if (N == 0) return {spikes, membrane, state};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_forward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto kernel = save_membrane ? lif_forward_kernel<scalar_t, true> : lif_forward_kernel<scalar_t, false>;
    kernel<<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), spikes.data_ptr<scalar_t>(),
        save_membrane ? membrane.data_ptr<scalar_t>() : nullptr, state.data_ptr<scalar_t>(), T, N,
        static_cast<opmath_t>(decay), static_cast<opmath_t>(threshold));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {spikes, membrane, state};
}

std::tuple<at::Tensor, at::Tensor> lif_backward_cuda(const at::Tensor& grad_spikes_,
                                                     const c10::optional<at::Tensor>& grad_membrane_,
                                                     const c10::optional<at::Tensor>& grad_state_,
                                                     const at::Tensor& membrane_, double decay, double threshold,
                                                     c10::string_view surrogate, double alpha,
                                                     c10::string_view grad_mode) {
  const Options opt = check_backward_args("lif_backward_cuda", c10::DeviceType::CUDA, grad_spikes_, grad_membrane_,
                                          grad_state_, membrane_, decay, threshold, surrogate, alpha, grad_mode);
  const c10::cuda::CUDAGuard device_guard(membrane_.device());
  auto [membrane, grad_spikes, grad_membrane, grad_state, T, N, grad_x, grad_u0] =
      prepare_backward(grad_spikes_, grad_membrane_, grad_state_, membrane_);
  if (N == 0) return {grad_x, grad_u0};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, membrane.scalar_type(), "lif_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        lif_backward_kernel<decltype(kind)::value, decltype(mode)::value, scalar_t>
            <<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
                grad_spikes.const_data_ptr<scalar_t>(), optional_data<scalar_t>(grad_membrane),
                optional_data<scalar_t>(grad_state), membrane.const_data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
                grad_u0.data_ptr<scalar_t>(), T, N, static_cast<opmath_t>(opt.decay),
                static_cast<opmath_t>(opt.threshold), static_cast<opmath_t>(opt.alpha));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {grad_x, grad_u0};
}

std::tuple<at::Tensor, at::Tensor> lif_backward_input_cuda(const at::Tensor& grad_spikes_,
                                                           const c10::optional<at::Tensor>& grad_state_,
                                                           const at::Tensor& x_, const c10::optional<at::Tensor>& u0_,
                                                           double decay, double threshold, c10::string_view surrogate,
                                                           double alpha, c10::string_view grad_mode) {
  const Options opt = check_backward_input_args("lif_backward_input_cuda", c10::DeviceType::CUDA, grad_spikes_,
                                                grad_state_, x_, u0_, decay, threshold, surrogate, alpha, grad_mode);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, x_step, grad_spikes, grad_state, u0, T, N, grad_x, grad_u0] =
      prepare_backward_input(grad_spikes_, grad_state_, x_, u0_);
  if (N == 0) return {grad_x, grad_u0};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_backward_input_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        lif_backward_input_kernel<decltype(kind)::value, decltype(mode)::value, scalar_t>
            <<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
                grad_spikes.const_data_ptr<scalar_t>(), optional_data<scalar_t>(grad_state),
                x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), grad_x.data_ptr<scalar_t>(),
                data_or_null<scalar_t>(grad_u0), T, N, static_cast<opmath_t>(opt.decay),
                static_cast<opmath_t>(opt.threshold), static_cast<opmath_t>(opt.alpha));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {grad_x, grad_u0};
}

std::tuple<at::Tensor, at::Tensor> lif_repeated_forward_cuda(const at::Tensor& x_, int64_t steps, double decay,
                                                             double threshold, c10::string_view surrogate, double alpha,
                                                             c10::string_view grad_mode,
                                                             const c10::optional<at::Tensor>& u0_) {
  check_repeated_forward_args("lif_repeated_forward_cuda", c10::DeviceType::CUDA, x_, steps, decay, threshold,
                              surrogate, alpha, grad_mode, u0_);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, u0, T, N, spikes, state] = prepare_repeated_forward(x_, steps, u0_);
  if (N == 0) return {spikes, state};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_repeated_forward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    lif_forward_kernel<scalar_t, false><<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), /*x_step=*/0, optional_data<scalar_t>(u0), spikes.data_ptr<scalar_t>(), nullptr,
        state.data_ptr<scalar_t>(), T, N, static_cast<opmath_t>(decay), static_cast<opmath_t>(threshold));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {spikes, state};
}

std::tuple<at::Tensor, at::Tensor> lif_repeated_backward_cuda(const at::Tensor& grad_spikes_,
                                                              const c10::optional<at::Tensor>& grad_state_,
                                                              const at::Tensor& x_,
                                                              const c10::optional<at::Tensor>& u0_, double decay,
                                                              double threshold, c10::string_view surrogate,
                                                              double alpha, c10::string_view grad_mode) {
  const Options opt = check_repeated_backward_args("lif_repeated_backward_cuda", c10::DeviceType::CUDA, grad_spikes_,
                                                   grad_state_, x_, u0_, decay, threshold, surrogate, alpha, grad_mode);
  const c10::cuda::CUDAGuard device_guard(x_.device());
  auto [x, grad_spikes, grad_state, u0, T, N, grad_x, grad_u0] =
      prepare_repeated_backward(grad_spikes_, grad_state_, x_, u0_);
  if (N == 0) return {grad_x, grad_u0};

  const at::Tensor stash = at::empty({T, N}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_repeated_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        lif_repeated_backward_kernel<decltype(kind)::value, decltype(mode)::value, scalar_t>
            <<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
                grad_spikes.const_data_ptr<scalar_t>(), optional_data<scalar_t>(grad_state),
                x.const_data_ptr<scalar_t>(), optional_data<scalar_t>(u0), stash.data_ptr<scalar_t>(),
                grad_x.data_ptr<scalar_t>(), data_or_null<scalar_t>(grad_u0), T, N, static_cast<opmath_t>(opt.decay),
                static_cast<opmath_t>(opt.threshold), static_cast<opmath_t>(opt.alpha));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {grad_x, grad_u0};
}

}  // namespace
}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CUDA, m) {
  m.impl("lif_backward_input", &pysnn::lif::lif_backward_input_cuda);
  m.impl("lif_forward", &pysnn::lif::lif_forward_cuda);
  m.impl("lif_backward", &pysnn::lif::lif_backward_cuda);
  m.impl("lif_repeated_forward", &pysnn::lif::lif_repeated_forward_cuda);
  m.impl("lif_repeated_backward", &pysnn::lif::lif_repeated_backward_cuda);
}
