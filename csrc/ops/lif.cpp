// Schemas of the multi-step LIF ops and the argument checks every backend
// runs before launching a kernel.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/lif.h"

#include "memory/cpu_block_cache.h"
#include "tensor_utils.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cmath>
#include <string>

namespace pysnn {
namespace lif {
namespace {

Surrogate parse_surrogate(c10::string_view name) {
  if (name == "sigmoid") return Surrogate::kSigmoid;
  if (name == "atan") return Surrogate::kAtan;
  if (name == "exponential") return Surrogate::kExponential;
  if (name == "rectangular") return Surrogate::kRectangular;
  TORCH_CHECK_VALUE(false,
                    "lif: surrogate must be one of 'sigmoid', 'atan', 'exponential', "
                    "'rectangular', got '",
                    std::string(name), "'");
}

GradMode parse_grad_mode(c10::string_view name) {
  if (name == "bptt") return GradMode::kBptt;
  if (name == "detach_reset") return GradMode::kDetachReset;
  if (name == "time_local") return GradMode::kTimeLocal;
  TORCH_CHECK_VALUE(false,
                    "lif: grad_mode must be one of 'bptt', 'detach_reset', "
                    "'time_local', got '",
                    std::string(name), "'");
}

}  // namespace

Options check_options(double decay, double threshold, c10::string_view surrogate, double alpha,
                      c10::string_view grad_mode) {
  TORCH_CHECK_VALUE(std::isfinite(decay) && decay >= 0.0 && decay <= 1.0, "lif: decay must be in [0, 1], got ", decay);
  TORCH_CHECK_VALUE(std::isfinite(threshold) && threshold > 0.0, "lif: threshold must be finite and > 0, got ",
                    threshold);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha > 0.0, "lif: alpha must be finite and > 0, got ", alpha);
  return Options{decay, threshold, alpha, parse_surrogate(surrogate), parse_grad_mode(grad_mode)};
}

void check_time_first(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "lif: ", name, " must be a floating-point tensor, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() >= 2, "lif: ", name, " must be time-first [T, ...] with at least 2 dims, got shape ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.size(0) > 0, "lif: ", name, " has T = 0 time steps");
}

void check_like(const at::Tensor& t, const at::Tensor& ref, c10::IntArrayRef shape, const char* name,
                const char* ref_name) {
  TORCH_CHECK_VALUE(t.sizes() == shape, "lif: ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "lif: ", name, " must have the dtype of ", ref_name, " (",
                   ref.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "lif: ", name, " must be on the device of ", ref_name, " (", ref.device(),
              "), got ", t.device());
}

void check_device(const char* op, c10::DeviceType device, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().type() == device, op, ": ", name, " must be a ", c10::DeviceTypeName(device, true),
              " tensor, got one on ", t.device());
}

Options check_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, double decay, double threshold,
                           c10::string_view surrogate, double alpha, c10::string_view grad_mode,
                           const c10::optional<at::Tensor>& u0) {
  check_time_first(x, "x");
  check_device(op, device, x, "x");
  if (u0.has_value()) check_like(*u0, x, x.sizes().slice(1), "u0", "x");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

Options check_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                            const c10::optional<at::Tensor>& grad_membrane, const c10::optional<at::Tensor>& grad_state,
                            const at::Tensor& membrane, double decay, double threshold, c10::string_view surrogate,
                            double alpha, c10::string_view grad_mode) {
  check_time_first(membrane, "membrane");
  check_device(op, device, membrane, "membrane");
  check_like(grad_spikes, membrane, membrane.sizes(), "grad_spikes", "membrane");
  if (grad_membrane.has_value()) check_like(*grad_membrane, membrane, membrane.sizes(), "grad_membrane", "membrane");
  if (grad_state.has_value()) check_like(*grad_state, membrane, membrane.sizes().slice(1), "grad_state", "membrane");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

Options check_backward_input_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                                  const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                  const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                  c10::string_view surrogate, double alpha, c10::string_view grad_mode) {
  check_time_first(x, "x");
  check_device(op, device, x, "x");
  check_like(grad_spikes, x, x.sizes(), "grad_spikes", "x");
  if (grad_state.has_value()) check_like(*grad_state, x, x.sizes().slice(1), "grad_state", "x");
  if (u0.has_value()) check_like(*u0, x, x.sizes().slice(1), "u0", "x");
  return check_options(decay, threshold, surrogate, alpha, grad_mode);
}

TimeRows time_rows(const at::Tensor& x) {
  if (x.size(0) > 1 && x.stride(0) == 0) {
    const at::Tensor row = x.select(0, 0);
    if (row.is_contiguous()) return {row, 0};
  }
  return {x.contiguous(), x.numel() / x.size(0)};
}

ForwardCall prepare_forward(const at::Tensor& x, const c10::optional<at::Tensor>& u0, bool save_membrane) {
  const auto [rows, step] = time_rows(x);
  const int64_t T = x.size(0);
  return {rows,
          step,
          optional_contiguous(u0),
          T,
          x.numel() / T,
          empty_output(x.sizes(), rows.options()),
          empty_output(save_membrane ? x.sizes() : c10::IntArrayRef{0}, rows.options()),
          empty_output(x.sizes().slice(1), rows.options())};
}

BackwardCall prepare_backward(const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_membrane,
                              const c10::optional<at::Tensor>& grad_state, const at::Tensor& membrane) {
  const int64_t T = membrane.size(0);
  return {membrane.contiguous(),
          grad_spikes.contiguous(),
          optional_contiguous(grad_membrane),
          optional_contiguous(grad_state),
          T,
          membrane.numel() / T,
          empty_output(membrane.sizes(), membrane.options()),
          empty_output(membrane.sizes().slice(1), membrane.options())};
}

BackwardInputCall prepare_backward_input(const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_state,
                                         const at::Tensor& x, const c10::optional<at::Tensor>& u0) {
  const auto [rows, step] = time_rows(x);
  const int64_t T = x.size(0);
  return {rows,
          step,
          grad_spikes.contiguous(),
          optional_contiguous(grad_state),
          optional_contiguous(u0),
          T,
          x.numel() / T,
          empty_output(x.sizes(), rows.options()),
          empty_output(grad_shape_if(u0, x.sizes().slice(1)), rows.options())};
}

}  // namespace lif
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // spikes and membrane (pre-reset u[t], only when save_membrane, else empty)
  // are [T, ...] in x's dtype; state is the post-reset membrane after the last
  // step, [...], which continues the sequence when passed back as u0.
  m.def(
      "lif_forward(Tensor x, float decay, float threshold, str surrogate, float alpha, "
      "str grad_mode, Tensor? u0, bool save_membrane) -> (Tensor spikes, Tensor membrane, "
      "Tensor state)");
  // One reverse sweep per neuron: returns dL/dx [T, ...] and dL/du0 [...].
  m.def(
      "lif_backward(Tensor grad_spikes, Tensor? grad_membrane, Tensor? grad_state, "
      "Tensor membrane, float decay, float threshold, str surrogate, float alpha, "
      "str grad_mode) -> (Tensor grad_x, Tensor grad_u0)");
  // The same gradients without a saved membrane: each neuron's membrane is
  // recomputed from x (and u0) into grad_x, then swept backward in place. No
  // gradient of the membrane: when the membrane is an output, it is saved.
  // grad_u0 is empty when u0 is None.
  m.def(
      "lif_backward_input(Tensor grad_spikes, Tensor? grad_state, Tensor x, Tensor? u0, float decay, "
      "float threshold, str surrogate, float alpha, str grad_mode) -> (Tensor grad_x, Tensor grad_u0)");
}
