#pragma once
// Declarations shared by the backends of the LIF op fused with a 2×2,
// stride-2 max pool of its spikes (ops/lif_pool.cpp).
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include "ops/lif.h"

namespace pysnn {
namespace lif {

Options check_pool_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, int64_t steps,
                                double decay, double threshold, c10::string_view surrogate, double alpha,
                                c10::string_view grad_mode, const c10::optional<at::Tensor>& u0);
Options check_pool_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_pooled,
                                 const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                 const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                 c10::string_view surrogate, double alpha, c10::string_view grad_mode);

// The neurons as `planes` maps of H × W (H, W even); x[t] is at
// x + t * x_step (x_step = 0: one step repeated, S = 1). N = planes · H · W
// neurons, Q = N / 4 pooled outputs (windows) per step.
struct PoolGeometry {
  int64_t T, planes, H, W, N, Q;
};

struct PoolForwardCall {
  at::Tensor x;
  int64_t x_step;
  c10::optional<at::Tensor> u0;
  PoolGeometry g;
  at::Tensor pooled, state;  // [T, ..., H/2, W/2], [..., H, W]
};
PoolForwardCall prepare_pool_forward(const at::Tensor& x, int64_t steps, const c10::optional<at::Tensor>& u0);

struct PoolBackwardCall {
  at::Tensor x;
  int64_t x_step;
  at::Tensor grad_pooled;  // step t at grad_pooled + t * grad_step (0: the same at every step)
  int64_t grad_step;
  c10::optional<at::Tensor> grad_state, u0;
  PoolGeometry g;
  at::Tensor grad_x, grad_u0;  // as x (summed over the steps when S = 1; x itself if over_x), as u0
};
PoolBackwardCall prepare_pool_backward(const at::Tensor& grad_pooled, const c10::optional<at::Tensor>& grad_state,
                                       const at::Tensor& x, const c10::optional<at::Tensor>& u0, bool over_x);

// Which of a 2×2 window's neurons (top left, top right, bottom left, bottom
// right: spikes a, b, c, d, each 0 or 1) its max pool's gradient reaches, as
// 0/1 factors: the first that spiked in row-major order, or the first when
// none did, as max_pool2d's. Arithmetic rather than branches: spikes are
// data the branch predictor cannot guess.
template <typename T>
PYSNN_HOST_DEVICE void first_max_factors(T a, T b, T c, T d, T factor[4]) {
  const T none_before_b = T(1) - a;
  const T none_before_c = none_before_b * (T(1) - b);
  const T none_before_d = none_before_c * (T(1) - c);
  factor[0] = a + none_before_d * (T(1) - d);
  factor[1] = none_before_b * b;
  factor[2] = none_before_c * c;
  factor[3] = none_before_d * d;
}

}  // namespace lif
}  // namespace pysnn
