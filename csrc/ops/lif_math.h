#pragma once
// Per-element math of the multi-step LIF neuron with soft reset (docs/neuron.md),
// shared by the CPU and CUDA kernels.
//
//   u[t] = decay * v[t-1] + x[t]          v[t-1] = u[t-1] - threshold * s[t-1]
//   s[t] = (u[t] >= threshold)
//
// `v` is the post-reset membrane carried between steps; `u0` is v[0].
#include <cmath>
#include <type_traits>

#include "macros.h"
#include "math_utils.h"

namespace pysnn {
namespace lif {

enum class Surrogate : int { kSigmoid = 0, kAtan = 1, kExponential = 2, kRectangular = 3 };
enum class GradMode : int { kBptt = 0, kDetachReset = 1, kTimeLocal = 2 };

// Products and sums rounded separately (no FMA contraction on the GPU), so the
// spikes equal those of the eager PyTorch reference bit for bit.
PYSNN_HOST_DEVICE float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PYSNN_HOST_DEVICE double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

template <typename T>
PYSNN_HOST_DEVICE T charge(T v_prev, T x, T decay) {
  return mul(decay, v_prev) + x;
}

template <typename T>
PYSNN_HOST_DEVICE T fire(T u, T threshold) {
  return u >= threshold ? T(1) : T(0);
}

template <typename T>
PYSNN_HOST_DEVICE T soft_reset(T u, T spike, T threshold) {
  return u - mul(threshold, spike);
}

// Surrogate derivative of H(u - threshold), evaluated at d = u - threshold.
//   sigmoid      alpha * sg * (1 - sg),  sg = sigmoid(alpha * d)
//   atan         (alpha / 2) / (1 + (pi/2 * alpha * d)^2)
//   exponential  alpha * exp(-alpha * |d|)
//   rectangular  alpha / 2 on |d| <= 1 / alpha (width 2/alpha, area 1)
template <Surrogate kind, typename T>
PYSNN_HOST_DEVICE T surrogate_grad(T d, T alpha) {
  if constexpr (kind == Surrogate::kSigmoid) {
    const T sg = T(1) / (T(1) + math::exp(-alpha * d));
    return alpha * sg * (T(1) - sg);
  } else if constexpr (kind == Surrogate::kAtan) {
    const T z = T(1.5707963267948966) * alpha * d;
    return (alpha / T(2)) / (T(1) + z * z);
  } else if constexpr (kind == Surrogate::kExponential) {
    return alpha * math::exp(-alpha * std::fabs(d));
  } else {
    return std::fabs(d) <= T(1) / alpha ? alpha / T(2) : T(0);
  }
}

// The backward that recomputes the membrane writes, at every step, what its
// reverse sweep needs into grad_x, then reads it back. Where grad_x holds the
// opmath type itself (float, double) that is the surrogate derivative, so
// the exp and division happen in the pass that streams x in, not in the one
// that streams the output gradient (BENCHMARKS.md: 20 % off that backward);
// in half and bfloat16 it is the membrane rounded to the storage type, so
// both backward paths still round exactly as the saved membrane does.
template <Surrogate kind, typename scalar_t, typename opmath_t>
PYSNN_HOST_DEVICE scalar_t stash_for_sweep(opmath_t u, opmath_t threshold, opmath_t alpha) {
  if constexpr (std::is_same<scalar_t, opmath_t>::value) {
    return surrogate_grad<kind>(u - threshold, alpha);
  } else {
    return static_cast<scalar_t>(u);
  }
}

template <Surrogate kind, typename opmath_t, typename scalar_t>
PYSNN_HOST_DEVICE opmath_t surrogate_from_stash(scalar_t stashed, opmath_t threshold, opmath_t alpha) {
  if constexpr (std::is_same<scalar_t, opmath_t>::value) {
    return stashed;
  } else {
    return surrogate_grad<kind>(static_cast<opmath_t>(stashed) - threshold, alpha);
  }
}

// One step of the reverse sweep. On entry `carry` is the gradient reaching
// v[t] (= decay * dL/du[t+1], or dL/d(final state) at t = T-1); on exit it is
// the gradient reaching v[t-1]. Returns dL/du[t] = dL/dx[t].
//   bptt          ds = g_s - threshold * carry   (reset path kept)
//   detach_reset  ds = g_s                       (reset path dropped)
//   time_local    as bptt within the step, but nothing crosses to t-1
template <GradMode mode, typename T>
PYSNN_HOST_DEVICE T backward_step(T grad_spike, T grad_membrane, T surrogate, T& carry, T decay, T threshold) {
  const T grad_s = mode == GradMode::kDetachReset ? grad_spike : grad_spike - threshold * carry;
  const T grad_u = grad_s * surrogate + carry + grad_membrane;
  carry = mode == GradMode::kTimeLocal ? T(0) : decay * grad_u;
  return grad_u;
}

}  // namespace lif
}  // namespace pysnn
