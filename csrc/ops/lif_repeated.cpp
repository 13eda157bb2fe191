// Schemas of the LIF ops for an input that repeats at every step (direct
// coding): x is one step [...], the neuron runs for `steps` steps. The
// backward returns the input gradient summed over the steps, [...], so no
// [T, ...] buffer is allocated for it (the CPU kernel keeps the recomputed
// membrane of one block of neurons at a time).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/lif.h"

#include "memory/cpu_block_cache.h"
#include "tensor_utils.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

namespace pysnn {
namespace lif {
namespace {

void check_step_input(const at::Tensor& x) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "lif: x must be a floating-point tensor, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() >= 1, "lif: x of a repeated input must have at least 1 dim, got a scalar");
}

std::vector<int64_t> with_steps(int64_t steps, c10::IntArrayRef shape) {
  std::vector<int64_t> sizes{steps};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  return sizes;
}

}  // namespace

Options check_repeated_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, int64_t steps,
                                    double decay, double threshold, c10::string_view surrogate, double alpha,
                                    c10::string_view grad_mode, const c10::optional<at::Tensor>& u0) {
  check_step_input(x);
  check_device(op, device, x, "x");
  TORCH_CHECK_VALUE(steps >= 1, "lif: steps must be >= 1, got ", steps);
  if (u0.has_value()) check_like(*u0, x, x.sizes(), "u0", "x");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

Options check_repeated_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                                     const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                     const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                     c10::string_view surrogate, double alpha, c10::string_view grad_mode) {
  check_step_input(x);
  check_device(op, device, x, "x");
  check_time_first(grad_spikes, "grad_spikes");
  check_like(grad_spikes, x, with_steps(grad_spikes.size(0), x.sizes()), "grad_spikes", "x");
  if (grad_state.has_value()) check_like(*grad_state, x, x.sizes(), "grad_state", "x");
  if (u0.has_value()) check_like(*u0, x, x.sizes(), "u0", "x");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

RepeatedForwardCall prepare_repeated_forward(const at::Tensor& x, int64_t steps, const c10::optional<at::Tensor>& u0) {
  const at::Tensor rows = x.contiguous();
  return {rows,
          optional_contiguous(u0),
          steps,
          x.numel(),
          empty_output(with_steps(steps, x.sizes()), rows.options()),
          empty_output(x.sizes(), rows.options())};
}

RepeatedBackwardCall prepare_repeated_backward(const at::Tensor& grad_spikes,
                                               const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                               const c10::optional<at::Tensor>& u0) {
  const at::Tensor rows = x.contiguous();
  return {rows,
          grad_spikes.contiguous(),
          optional_contiguous(grad_state),
          optional_contiguous(u0),
          grad_spikes.size(0),
          x.numel(),
          empty_output(x.sizes(), rows.options()),
          empty_output(grad_shape_if(u0, x.sizes()), rows.options())};
}

}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // lif_forward of x repeated at each of `steps` steps: spikes [steps, ...],
  // state [...] (post-reset membrane after the last step). No membrane output:
  // the backward recomputes it from x.
  m.def(
      "lif_repeated_forward(Tensor x, int steps, float decay, float threshold, str surrogate, float alpha, "
      "str grad_mode, Tensor? u0) -> (Tensor spikes, Tensor state)");
  // dL/dx summed over the steps ([...], as x) and dL/du0 [...] (empty when u0 is None).
  m.def(
      "lif_repeated_backward(Tensor grad_spikes, Tensor? grad_state, Tensor x, Tensor? u0, float decay, "
      "float threshold, str surrogate, float alpha, str grad_mode) -> (Tensor grad_x, Tensor grad_u0)");
}
