#pragma once
// Shared declarations of the LIF ops: argument checks used by every backend,
// and helpers that turn runtime options into template parameters.
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
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

// Checks shared by every LIF op's argument validation: the options (parsed),
// a floating-point time-first tensor, a tensor shaped and typed like another,
// and a tensor on the kernel's device. Errors start with "lif: ".
Options check_options(double decay, double threshold, c10::string_view surrogate, double alpha,
                      c10::string_view grad_mode);
void check_time_first(const at::Tensor& t, const char* name);
void check_like(const at::Tensor& t, const at::Tensor& ref, c10::IntArrayRef shape, const char* name,
                const char* ref_name);
void check_device(const char* op, c10::DeviceType device, const at::Tensor& t, const char* name);

// Validate the arguments of `lif_forward` / `lif_backward` /
// `lif_backward_input` for a kernel on `device` and parse the option strings.
// Errors name the offending argument; `op` names the kernel.
Options check_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, double decay, double threshold,
                           c10::string_view surrogate, double alpha, c10::string_view grad_mode,
                           const c10::optional<at::Tensor>& u0);

Options check_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                            const c10::optional<at::Tensor>& grad_membrane, const c10::optional<at::Tensor>& grad_state,
                            const at::Tensor& membrane, double decay, double threshold, c10::string_view surrogate,
                            double alpha, c10::string_view grad_mode);

// `lif_backward_input`: the backward that recomputes the membrane from x
// instead of reading a saved one.
Options check_backward_input_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                                  const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                  const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                  c10::string_view surrogate, double alpha, c10::string_view grad_mode);

// The inputs of each kernel made contiguous and its outputs allocated
// (empty_output: the CPU block cache on the CPU, at::empty elsewhere), the
// same on every backend. N = 0 means nothing to launch.
struct ForwardCall {
  at::Tensor x;  // time_rows(x).data
  int64_t x_step;
  c10::optional<at::Tensor> u0;
  int64_t T, N;
  at::Tensor spikes, membrane, state;  // membrane is empty unless saved
};
ForwardCall prepare_forward(const at::Tensor& x, const c10::optional<at::Tensor>& u0, bool save_membrane);

struct BackwardCall {
  at::Tensor membrane, grad_spikes;
  c10::optional<at::Tensor> grad_membrane, grad_state;
  int64_t T, N;
  at::Tensor grad_x, grad_u0;
};
BackwardCall prepare_backward(const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_membrane,
                              const c10::optional<at::Tensor>& grad_state, const at::Tensor& membrane);

struct BackwardInputCall {
  at::Tensor x;  // time_rows(x).data
  int64_t x_step;
  at::Tensor grad_spikes;
  c10::optional<at::Tensor> grad_state, u0;
  int64_t T, N;
  at::Tensor grad_x, grad_u0;
};
BackwardInputCall prepare_backward_input(const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_state,
                                         const at::Tensor& x, const c10::optional<at::Tensor>& u0);

// `lif_repeated_forward` / `lif_repeated_backward` (ops/lif_repeated.cpp):
// x is one step's input [...], driven for `steps` steps.
Options check_repeated_forward_args(const char* op, c10::DeviceType device, const at::Tensor& x, int64_t steps,
                                    double decay, double threshold, c10::string_view surrogate, double alpha,
                                    c10::string_view grad_mode, const c10::optional<at::Tensor>& u0);
Options check_repeated_backward_args(const char* op, c10::DeviceType device, const at::Tensor& grad_spikes,
                                     const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                     const c10::optional<at::Tensor>& u0, double decay, double threshold,
                                     c10::string_view surrogate, double alpha, c10::string_view grad_mode);

// The repeated ops' inputs made contiguous and outputs allocated: spikes
// [T, ...] and state [...] (forward); grad_x and grad_u0, both [...] (backward).
struct RepeatedForwardCall {
  at::Tensor x;
  c10::optional<at::Tensor> u0;
  int64_t T, N;
  at::Tensor spikes, state;
};
RepeatedForwardCall prepare_repeated_forward(const at::Tensor& x, int64_t steps, const c10::optional<at::Tensor>& u0);

struct RepeatedBackwardCall {
  at::Tensor x, grad_spikes;
  c10::optional<at::Tensor> grad_state, u0;
  int64_t T, N;
  at::Tensor grad_x, grad_u0;
};
RepeatedBackwardCall prepare_repeated_backward(const at::Tensor& grad_spikes,
                                               const c10::optional<at::Tensor>& grad_state, const at::Tensor& x,
                                               const c10::optional<at::Tensor>& u0);

// x as T rows of N values for the kernels: contiguous (`step` = N), or, for
// the same input at every step (direct coding: a stride-0 expand over time),
// one contiguous row read T times (`step` = 0), never materialised.
struct TimeRows {
  at::Tensor data;
  int64_t step;
};
TimeRows time_rows(const at::Tensor& x);

// Calls f(std::integral_constant<Surrogate, kind>{}) for the runtime `kind`.
template <typename F>
void dispatch_surrogate(Surrogate kind, F&& f) {
  dispatch_value<Surrogate::kSigmoid, Surrogate::kAtan, Surrogate::kExponential, Surrogate::kRectangular>(kind, f);
}

// Calls f(std::integral_constant<GradMode, mode>{}) for the runtime `mode`.
template <typename F>
void dispatch_grad_mode(GradMode mode, F&& f) {
  dispatch_value<GradMode::kBptt, GradMode::kDetachReset, GradMode::kTimeLocal>(mode, f);
}

}  // namespace lif
}  // namespace pysnn
