#pragma once
// Shared declarations of the LIF ops: argument checks used by every backend,
// and helpers that turn runtime options into template parameters.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include "dispatch_utils.h"
#include "ops/lif_math.h"

namespace pysnn {
namespace lif {

struct Options {
  double decay;
  double threshold;
  double alpha;
  Surrogate surrogate;
  GradMode grad_mode;
};

// Validate the arguments of `lif_forward` / `lif_backward` and parse the
// option strings. Errors name the offending argument.
Options check_forward_args(const at::Tensor& x, double decay, double threshold,
                           c10::string_view surrogate, double alpha,
                           c10::string_view grad_mode, const c10::optional<at::Tensor>& u0);

Options check_backward_args(const at::Tensor& grad_spikes,
                            const c10::optional<at::Tensor>& grad_membrane,
                            const c10::optional<at::Tensor>& grad_state,
                            const at::Tensor& membrane, double decay, double threshold,
                            c10::string_view surrogate, double alpha,
                            c10::string_view grad_mode);

// Calls f(std::integral_constant<Surrogate, kind>{}) for the runtime `kind`.
template <typename F>
void dispatch_surrogate(Surrogate kind, F&& f) {
  dispatch_value<Surrogate::kSigmoid, Surrogate::kAtan, Surrogate::kExponential, Surrogate::kRectangular>(
      kind, f);
}

// Calls f(std::integral_constant<GradMode, mode>{}) for the runtime `mode`.
template <typename F>
void dispatch_grad_mode(GradMode mode, F&& f) {
  dispatch_value<GradMode::kBptt, GradMode::kDetachReset, GradMode::kTimeLocal>(mode, f);
}

}  // namespace lif
}  // namespace pysnn
