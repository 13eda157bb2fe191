// Schemas of the LIF op fused with a 2×2, stride-2 max pool of its spikes
// (a spiking conv block's neuron and pooling). x is [S, ..., H, W] with S =
// steps (a sequence) or S = 1 (one step repeated at every step: direct
// coding). Only the pooled spikes [steps, ..., H/2, W/2] leave the kernel;
// the backward recomputes each window's membranes and first spike from x,
// so neither the full-size spikes nor their gradient is ever allocated.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/lif_pool.h"

#include "memory/cpu_block_cache.h"
#include "tensor_utils.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

namespace pysnn {
namespace lif {
namespace {

void check_pool_input(const at::Tensor& x, int64_t steps) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "lif_max_pool2d: x must be a floating-point tensor, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() >= 3, "lif_max_pool2d: x must be [S, ..., H, W] with at least 3 dims, got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(steps >= 1, "lif_max_pool2d: steps must be >= 1, got ", steps);
  TORCH_CHECK_VALUE(x.size(0) == steps || x.size(0) == 1,
                    "lif_max_pool2d: x must hold 1 step (repeated) or steps = ", steps, " steps, got ", x.size(0));
  TORCH_CHECK_VALUE(x.size(-1) % 2 == 0 && x.size(-2) % 2 == 0,
                    "lif_max_pool2d: H and W must be even for a 2x2 pool, got shape ", x.sizes());
}

std::vector<int64_t> pooled_shape(int64_t steps, c10::IntArrayRef x_shape) {
  std::vector<int64_t> sizes{steps};
  sizes.insert(sizes.end(), x_shape.begin() + 1, x_shape.end());
  sizes[sizes.size() - 1] /= 2;
  sizes[sizes.size() - 2] /= 2;
  return sizes;
}

PoolGeometry geometry(const at::Tensor& x, int64_t steps) {
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t N = x.numel() / x.size(0);
  return {steps, H * W == 0 ? 0 : N / (H * W), H, W, N, N / 4};
}

}  // namespace

Options check_pool_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, int64_t steps,
                                double decay, double threshold, c10::string_view surrogate, double alpha,
                                c10::string_view grad_mode, const c10::optional<at::Tensor>& u0) {
  check_pool_input(x, steps);
  check_device(op, device, x, "x");
  if (u0.has_value()) check_like(*u0, x, x.sizes().slice(1), "u0", "x[0]");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

Options check_pool_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_pooled,
                                 const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                 const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                 c10::string_view surrogate, double alpha, c10::string_view grad_mode) {
  check_time_first(grad_pooled, "grad_pooled");
  check_pool_input(x, grad_pooled.size(0));
  check_device(op, device, x, "x");
  check_like(grad_pooled, x, pooled_shape(grad_pooled.size(0), x.sizes()), "grad_pooled", "x");
  if (grad_state.has_value()) check_like(*grad_state, x, x.sizes().slice(1), "grad_state", "x[0]");
  if (u0.has_value()) check_like(*u0, x, x.sizes().slice(1), "u0", "x[0]");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

PoolForwardCall prepare_pool_forward(const at::Tensor& x, int64_t steps, const c10::optional<at::Tensor>& u0) {
  const at::Tensor rows = x.contiguous();
  const PoolGeometry g = geometry(x, steps);
  return {rows,
          x.size(0) == 1 ? 0 : g.N,
          optional_contiguous(u0),
          g,
          empty_output(pooled_shape(steps, x.sizes()), rows.options()),
          empty_output(x.sizes().slice(1), rows.options())};
}

PoolBackwardCall prepare_pool_backward(const at::Tensor& grad_pooled, const c10::optional<at::Tensor>& grad_state,
                                       const at::Tensor& x, const c10::optional<at::Tensor>& u0, bool over_x) {
  // Over x, each neuron's dL/dx is written after the kernel's last read of
  // its x (per block on the CPU, per window on CUDA), so x may be the output.
  TORCH_CHECK_VALUE(!over_x || x.is_contiguous(), "lif_pool_backward_over_input: x must be contiguous");
  const at::Tensor rows = x.contiguous();
  const PoolGeometry g = geometry(x, grad_pooled.size(0));
  // A loss on the rates (the mean over T) sends the same gradient to every
  // step, as a stride-0 expand: read its one step T times, never copied.
  const at::Tensor first_step = grad_pooled.select(0, 0);
  const bool repeated = grad_pooled.size(0) > 1 && grad_pooled.stride(0) == 0 && first_step.is_contiguous();
  return {rows,
          x.size(0) == 1 ? 0 : g.N,
          repeated ? first_step : grad_pooled.contiguous(),
          repeated ? 0 : g.Q,
          optional_contiguous(grad_state),
          optional_contiguous(u0),
          g,
          over_x ? rows : empty_output(x.sizes(), rows.options()),
          empty_output(grad_shape_if(u0, x.sizes().slice(1)), rows.options())};
}

}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // The LIF over x ([S, ..., H, W], S = steps or 1 repeated) and a 2×2,
  // stride-2 max pool of its spikes: pooled [steps, ..., H/2, W/2] and state
  // [..., H, W] (post-reset membrane after the last step).
  m.def(
      "lif_pool_forward(Tensor x, int steps, float decay, float threshold, str surrogate, float alpha, "
      "str grad_mode, Tensor? u0) -> (Tensor pooled, Tensor state)");
  // dL/dx (as x; summed over the steps when x holds one repeated step) and
  // dL/du0 (empty when u0 is None).
  m.def(
      "lif_pool_backward(Tensor grad_pooled, Tensor? grad_state, Tensor x, Tensor? u0, float decay, "
      "float threshold, str surrogate, float alpha, str grad_mode) -> (Tensor grad_x, Tensor grad_u0)");
  // lif_pool_backward with dL/dx written over x (contiguous), which the
  // caller no longer needs: no second x-sized buffer. Returns dL/du0.
  m.def(
      "lif_pool_backward_over_input(Tensor grad_pooled, Tensor? grad_state, Tensor(a!) x, Tensor? u0, float decay, "
      "float threshold, str surrogate, float alpha, str grad_mode) -> Tensor grad_u0");
}
