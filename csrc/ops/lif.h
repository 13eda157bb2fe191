#pragma once
// Shared declarations of the LIF ops: argument checks used by every backend,
// and helpers that turn runtime options into template parameters.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <type_traits>

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

template <Surrogate kind>
using SurrogateTag = std::integral_constant<Surrogate, kind>;
template <GradMode mode>
using GradModeTag = std::integral_constant<GradMode, mode>;

// Calls f(SurrogateTag<kind>{}) for the runtime `kind`.
template <typename F>
void dispatch_surrogate(Surrogate kind, F&& f) {
  switch (kind) {
    case Surrogate::kSigmoid: return f(SurrogateTag<Surrogate::kSigmoid>{});
    case Surrogate::kAtan: return f(SurrogateTag<Surrogate::kAtan>{});
    case Surrogate::kExponential: return f(SurrogateTag<Surrogate::kExponential>{});
    case Surrogate::kRectangular: return f(SurrogateTag<Surrogate::kRectangular>{});
  }
}

// Calls f(GradModeTag<mode>{}) for the runtime `mode`.
template <typename F>
void dispatch_grad_mode(GradMode mode, F&& f) {
  switch (mode) {
    case GradMode::kBptt: return f(GradModeTag<GradMode::kBptt>{});
    case GradMode::kDetachReset: return f(GradModeTag<GradMode::kDetachReset>{});
    case GradMode::kTimeLocal: return f(GradModeTag<GradMode::kTimeLocal>{});
  }
}

}  // namespace lif
}  // namespace pysnn
