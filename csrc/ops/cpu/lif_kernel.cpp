// CPU kernels of the multi-step LIF ops: parallel over neurons, the time loop
// inside. Neurons are walked in blocks whose state stays in L1 while t
// advances, so each time step is a contiguous, vectorisable inner loop.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "macros.h"
#include "ops/lif.h"
#include "tensor_utils.h"

namespace pysnn {
namespace lif {
namespace {

// Neurons per block. Long rows keep the hardware prefetchers streaming: with
// 256-neuron blocks (1 KB per row, T rows N apart) the backward ran at 5.7 ms
// for T = 10, 2^20 neurons (rectangular surrogate); at 4096-32768 it takes
// 3.3-4.2 ms, flat. The per-block state (v, carry) lives on the stack.
constexpr int64_t kBlock = 8192;
// The least a thread gets: small layers (a batch of 64 × 1024 neurons) still
// split over the cores, in blocks shorter than kBlock.
constexpr int64_t kGrain = 4096;

// x[t] is row t of x: x + t * x_step (x_step = 0: the same row at every step).
template <typename scalar_t, bool kSaveMembrane>
PYSNN_CPU_CLONES void forward_range(const scalar_t* x, int64_t x_step, const scalar_t* u0, scalar_t* spikes,
                                    scalar_t* membrane, scalar_t* state, int64_t T, int64_t N, int64_t begin,
                                    int64_t end, double decay_, double threshold_) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(decay_);
  const opmath_t threshold = static_cast<opmath_t>(threshold_);
  opmath_t v[kBlock];
  for (int64_t first = begin; first < end; first += kBlock) {
    const int64_t len = std::min(kBlock, end - first);
    for (int64_t i = 0; i < len; ++i)
      v[i] = u0 ? static_cast<opmath_t>(u0[first + i]) : opmath_t(0);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t offset = t * N + first;
      const scalar_t* xt = x + t * x_step + first;
      for (int64_t i = 0; i < len; ++i) {
        const opmath_t u = charge(v[i], static_cast<opmath_t>(xt[i]), decay);
        const opmath_t s = fire(u, threshold);
        v[i] = soft_reset(u, s, threshold);
        spikes[offset + i] = static_cast<scalar_t>(s);
        if constexpr (kSaveMembrane) membrane[offset + i] = static_cast<scalar_t>(u);
      }
    }
    for (int64_t i = 0; i < len; ++i)
      state[first + i] = static_cast<scalar_t>(v[i]);
  }
}

// membrane == nullptr: grad_x already holds what recompute_for_sweep stashed
// there at every step, and is swept in place.
template <Surrogate kind, GradMode mode, typename scalar_t>
PYSNN_CPU_CLONES void backward_range(const scalar_t* grad_spikes, const scalar_t* grad_membrane,
                                     const scalar_t* grad_state, const scalar_t* membrane, scalar_t* grad_x,
                                     scalar_t* grad_u0, int64_t T, int64_t N, int64_t begin, int64_t end,
                                     const Options& opt) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(opt.decay);
  const opmath_t threshold = static_cast<opmath_t>(opt.threshold);
  const opmath_t alpha = static_cast<opmath_t>(opt.alpha);
  opmath_t carry[kBlock];
  for (int64_t first = begin; first < end; first += kBlock) {
    const int64_t len = std::min(kBlock, end - first);
    for (int64_t i = 0; i < len; ++i)
      carry[i] = grad_state ? static_cast<opmath_t>(grad_state[first + i]) : opmath_t(0);
    // The inner loop is instantiated with and without grad_membrane, and
    // reading the stash in grad_x itself (membrane == nullptr), so that
    // no version branches per element and the in-place one reads and writes
    // through one pointer (GCC then vectorises all three).
    const auto sweep = [&](auto has_grad_membrane, auto in_place) {
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t offset = t * N + first;
        for (int64_t i = 0; i < len; ++i) {
          opmath_t sg;
          if constexpr (decltype(in_place)::value) {
            sg = surrogate_from_stash<kind>(grad_x[offset + i], threshold, alpha);
          } else {
            sg = surrogate_grad<kind>(static_cast<opmath_t>(membrane[offset + i]) - threshold, alpha);
          }
          opmath_t gm = 0;
          if constexpr (decltype(has_grad_membrane)::value) gm = static_cast<opmath_t>(grad_membrane[offset + i]);
          grad_x[offset + i] = static_cast<scalar_t>(
              backward_step<mode>(static_cast<opmath_t>(grad_spikes[offset + i]), gm, sg, carry[i], decay, threshold));
        }
      }
    };
    if (membrane == nullptr) {
      sweep(std::false_type{}, std::true_type{});
    } else if (grad_membrane) {
      sweep(std::true_type{}, std::false_type{});
    } else {
      sweep(std::false_type{}, std::false_type{});
    }
    if (grad_u0) {
      for (int64_t i = 0; i < len; ++i)
        grad_u0[first + i] = static_cast<scalar_t>(carry[i]);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_forward_cpu(const at::Tensor& x_, double decay, double threshold,
                                                               c10::string_view surrogate, double alpha,
                                                               c10::string_view grad_mode,
                                                               const c10::optional<at::Tensor>& u0_,
                                                               bool save_membrane) {
  check_forward_args("lif_forward_cpu", c10::DeviceType::CPU, x_, decay, threshold, surrogate, alpha, grad_mode, u0_);
  auto [x, x_step, u0, T, N, spikes, membrane, state] = prepare_forward(x_, u0_, save_membrane);
  if (N == 0) return {spikes, membrane, state};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_forward_cpu", [&] {
    const scalar_t* u0_data = optional_data<scalar_t>(u0);
    at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
      if (save_membrane) {
        forward_range<scalar_t, true>(x.const_data_ptr<scalar_t>(), x_step, u0_data, spikes.data_ptr<scalar_t>(),
                                      membrane.data_ptr<scalar_t>(), state.data_ptr<scalar_t>(), T, N, begin, end,
                                      decay, threshold);
      } else {
        forward_range<scalar_t, false>(x.const_data_ptr<scalar_t>(), x_step, u0_data, spikes.data_ptr<scalar_t>(),
                                       nullptr, state.data_ptr<scalar_t>(), T, N, begin, end, decay, threshold);
      }
    });
  });
  return {spikes, membrane, state};
}

std::tuple<at::Tensor, at::Tensor> lif_backward_cpu(const at::Tensor& grad_spikes_,
                                                    const c10::optional<at::Tensor>& grad_membrane_,
                                                    const c10::optional<at::Tensor>& grad_state_,
                                                    const at::Tensor& membrane_, double decay, double threshold,
                                                    c10::string_view surrogate, double alpha,
                                                    c10::string_view grad_mode) {
  const Options opt = check_backward_args("lif_backward_cpu", c10::DeviceType::CPU, grad_spikes_, grad_membrane_,
                                          grad_state_, membrane_, decay, threshold, surrogate, alpha, grad_mode);
  auto [membrane, grad_spikes, grad_membrane, grad_state, T, N, grad_x, grad_u0] =
      prepare_backward(grad_spikes_, grad_membrane_, grad_state_, membrane_);
  if (N == 0) return {grad_x, grad_u0};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, membrane.scalar_type(), "lif_backward_cpu", [&] {
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
          backward_range<decltype(kind)::value, decltype(mode)::value, scalar_t>(
              grad_spikes.const_data_ptr<scalar_t>(), optional_data<scalar_t>(grad_membrane),
              optional_data<scalar_t>(grad_state), membrane.const_data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
              grad_u0.data_ptr<scalar_t>(), T, N, begin, end, opt);
        });
      });
    });
  });
  return {grad_x, grad_u0};
}

// Recomputes the pre-reset membrane of neurons [first, first + len) at every
// step exactly as the forward did, and stashes what the reverse sweep needs
// from it (stash_for_sweep) into the caller's grad_x.
template <Surrogate kind, typename scalar_t>
PYSNN_CPU_CLONES void recompute_for_sweep(const scalar_t* x, int64_t x_step, const scalar_t* u0, scalar_t* grad_x,
                                          int64_t T, int64_t N, int64_t first, int64_t len, const Options& opt) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(opt.decay);
  const opmath_t threshold = static_cast<opmath_t>(opt.threshold);
  const opmath_t alpha = static_cast<opmath_t>(opt.alpha);
  opmath_t v[kBlock];
  for (int64_t i = 0; i < len; ++i)
    v[i] = u0 ? static_cast<opmath_t>(u0[first + i]) : opmath_t(0);
  for (int64_t t = 0; t < T; ++t) {
    const scalar_t* xt = x + t * x_step + first;
    scalar_t* stash = grad_x + t * N + first;
    for (int64_t i = 0; i < len; ++i) {
      const opmath_t u = charge(v[i], static_cast<opmath_t>(xt[i]), decay);
      v[i] = soft_reset(u, fire(u, threshold), threshold);
      stash[i] = stash_for_sweep<kind, scalar_t>(u, threshold, alpha);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> lif_backward_input_cpu(const at::Tensor& grad_spikes_,
                                                          const c10::optional<at::Tensor>& grad_state_,
                                                          const at::Tensor& x_, const c10::optional<at::Tensor>& u0_,
                                                          double decay, double threshold, c10::string_view surrogate,
                                                          double alpha, c10::string_view grad_mode) {
  const Options opt = check_backward_input_args("lif_backward_input_cpu", c10::DeviceType::CPU, grad_spikes_,
                                                grad_state_, x_, u0_, decay, threshold, surrogate, alpha, grad_mode);
  auto [x, x_step, grad_spikes, grad_state, u0, T, N, grad_x, grad_u0] =
      prepare_backward_input(grad_spikes_, grad_state_, x_, u0_);
  if (N == 0) return {grad_x, grad_u0};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_backward_input_cpu", [&] {
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
          scalar_t* gx = grad_x.data_ptr<scalar_t>();
          // One block of neurons at a time: its T stashed rows are written and
          // read back while still in cache, then overwritten by the gradient.
          for (int64_t first = begin; first < end; first += kBlock) {
            const int64_t len = std::min(kBlock, end - first);
            recompute_for_sweep<decltype(kind)::value, scalar_t>(
                x.const_data_ptr<scalar_t>(), x_step, optional_data<scalar_t>(u0), gx, T, N, first, len, opt);
            backward_range<decltype(kind)::value, decltype(mode)::value, scalar_t>(
                grad_spikes.const_data_ptr<scalar_t>(), nullptr, optional_data<scalar_t>(grad_state), nullptr, gx,
                data_or_null<scalar_t>(grad_u0), T, N, first, first + len, opt);
          }
        });
      });
    });
  });
  return {grad_x, grad_u0};
}

std::tuple<at::Tensor, at::Tensor> lif_repeated_forward_cpu(const at::Tensor& x_, int64_t steps, double decay,
                                                            double threshold, c10::string_view surrogate, double alpha,
                                                            c10::string_view grad_mode,
                                                            const c10::optional<at::Tensor>& u0_) {
  check_repeated_forward_args("lif_repeated_forward_cpu", c10::DeviceType::CPU, x_, steps, decay, threshold, surrogate,
                              alpha, grad_mode, u0_);
  auto [x, u0, T, N, spikes, state] = prepare_repeated_forward(x_, steps, u0_);
  if (N == 0) return {spikes, state};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_repeated_forward_cpu", [&] {
    const scalar_t* u0_data = optional_data<scalar_t>(u0);
    at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
      forward_range<scalar_t, false>(x.const_data_ptr<scalar_t>(), /*x_step=*/0, u0_data, spikes.data_ptr<scalar_t>(),
                                     nullptr, state.data_ptr<scalar_t>(), T, N, begin, end, decay, threshold);
    });
  });
  return {spikes, state};
}

// The reverse sweep of neurons [first, first + len) whose recomputed membrane
// is in `stash` (T rows of len), summing dL/dx[t] over t into grad_x.
template <Surrogate kind, GradMode mode, typename scalar_t>
PYSNN_CPU_CLONES void summed_sweep(const scalar_t* grad_spikes, const scalar_t* grad_state, const scalar_t* stash,
                                   scalar_t* grad_x, scalar_t* grad_u0, int64_t T, int64_t N, int64_t first,
                                   int64_t len, const Options& opt) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t decay = static_cast<opmath_t>(opt.decay);
  const opmath_t threshold = static_cast<opmath_t>(opt.threshold);
  const opmath_t alpha = static_cast<opmath_t>(opt.alpha);
  opmath_t carry[kBlock];
  opmath_t total[kBlock];
  for (int64_t i = 0; i < len; ++i) {
    carry[i] = grad_state ? static_cast<opmath_t>(grad_state[first + i]) : opmath_t(0);
    total[i] = 0;
  }
  for (int64_t t = T - 1; t >= 0; --t) {
    const scalar_t* gs = grad_spikes + t * N + first;
    const scalar_t* st = stash + t * len;
    for (int64_t i = 0; i < len; ++i) {
      const opmath_t sg = surrogate_from_stash<kind>(st[i], threshold, alpha);
      // dL/dx[t] rounded to the storage type as lif_backward_input stores it,
      // so the sum equals that op's output summed over t in opmath.
      total[i] += static_cast<opmath_t>(static_cast<scalar_t>(
          backward_step<mode>(static_cast<opmath_t>(gs[i]), opmath_t(0), sg, carry[i], decay, threshold)));
    }
  }
  for (int64_t i = 0; i < len; ++i) {
    grad_x[first + i] = static_cast<scalar_t>(total[i]);
    if (grad_u0) grad_u0[first + i] = static_cast<scalar_t>(carry[i]);
  }
}

std::tuple<at::Tensor, at::Tensor> lif_repeated_backward_cpu(const at::Tensor& grad_spikes_,
                                                             const c10::optional<at::Tensor>& grad_state_,
                                                             const at::Tensor& x_, const c10::optional<at::Tensor>& u0_,
                                                             double decay, double threshold, c10::string_view surrogate,
                                                             double alpha, c10::string_view grad_mode) {
  const Options opt = check_repeated_backward_args("lif_repeated_backward_cpu", c10::DeviceType::CPU, grad_spikes_,
                                                   grad_state_, x_, u0_, decay, threshold, surrogate, alpha, grad_mode);
  auto [x, grad_spikes, grad_state, u0, T, N, grad_x, grad_u0] =
      prepare_repeated_backward(grad_spikes_, grad_state_, x_, u0_);
  if (N == 0) return {grad_x, grad_u0};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lif_repeated_backward_cpu", [&] {
    dispatch_surrogate(opt.surrogate, [&](auto kind) {
      dispatch_grad_mode(opt.grad_mode, [&](auto mode) {
        at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
          // This thread's T × block stash of the recomputed membrane, in place
          // of lif_backward_input's T × N input-gradient buffer.
          std::vector<scalar_t> stash(static_cast<size_t>(T * std::min(kBlock, end - begin)));
          const scalar_t* x_data = x.const_data_ptr<scalar_t>();
          const scalar_t* u0_data = optional_data<scalar_t>(u0);
          for (int64_t first = begin; first < end; first += kBlock) {
            const int64_t len = std::min(kBlock, end - first);
            recompute_for_sweep<decltype(kind)::value, scalar_t>(x_data + first, /*x_step=*/0,
                                                                 u0_data ? u0_data + first : nullptr, stash.data(), T,
                                                                 /*N=*/len, /*first=*/0, len, opt);
            summed_sweep<decltype(kind)::value, decltype(mode)::value, scalar_t>(
                grad_spikes.const_data_ptr<scalar_t>(), optional_data<scalar_t>(grad_state), stash.data(),
                grad_x.data_ptr<scalar_t>(), data_or_null<scalar_t>(grad_u0), T, N, first, len, opt);
          }
        });
      });
    });
  });
  return {grad_x, grad_u0};
}

}  // namespace
}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CPU, m) {
  m.impl("lif_forward", &pysnn::lif::lif_forward_cpu);
  m.impl("lif_backward", &pysnn::lif::lif_backward_cpu);
  m.impl("lif_backward_input", &pysnn::lif::lif_backward_input_cpu);
  m.impl("lif_repeated_forward", &pysnn::lif::lif_repeated_forward_cpu);
  m.impl("lif_repeated_backward", &pysnn::lif::lif_repeated_backward_cpu);
}
