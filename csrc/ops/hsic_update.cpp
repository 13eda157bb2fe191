// The fused three-factor HSIC weight update: hsic_post_signal gives the
// post-synaptic signal δ[t] = G ⊙ post_grad[t] / T with G = d(Σ M ∘ Kz)/d rates
// in closed form; hsic_update also contracts it with the presynaptic spikes
// into the weight and bias gradients.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

namespace {

void check_three_factor(const char* op, const at::Tensor& post_grad, const at::Tensor& rates,
                        const at::Tensor& modulator, double sigma, c10::string_view sigma_scaling) {
  check_floating(op, post_grad, "post_grad");
  check_same(op, rates, "rates", post_grad, "post_grad");
  TORCH_CHECK_VALUE(post_grad.dim() == 3, op, ": post_grad must be [T, m, n_out], got shape ", post_grad.sizes());
  TORCH_CHECK_VALUE(post_grad.size(0) >= 1, op, ": post_grad has T = 0 time steps");
  TORCH_CHECK_VALUE(rates.dim() == 2, op, ": rates must be [m, n_out], got shape ", rates.sizes());
  TORCH_CHECK_VALUE(rates.size(0) >= 2, op, ": HSIC needs at least 2 samples, got m = ", rates.size(0));
  check_batch(op, post_grad, "post_grad", 1, rates.size(0));
  TORCH_CHECK_VALUE(post_grad.size(2) == rates.size(1), op, ": post_grad has ", post_grad.size(2),
                    " neurons but rates has ", rates.size(1));
  check_modulator(op, modulator, rates, "rates");
  // checked here too, so that the error names this op rather than hsic_loss
  check_sigma(op, sigma);
  scale_by_dim(op, sigma_scaling);
}

// G / T (G = dL/drates by the closed form, in the compute dtype, divided in
// place: no second rates-sized buffer), and the loss.
std::tuple<at::Tensor, at::Tensor> rates_gradient_per_step(const at::Tensor& rates, const at::Tensor& modulator,
                                                           double sigma, c10::string_view sigma_scaling,
                                                           int64_t steps) {
  auto [loss, weighted] = hsic_loss(rates, modulator, sigma, sigma_scaling);
  at::Tensor grad = to_compute(hsic_loss_backward(at::ones({}, loss.options()), rates, weighted, sigma, sigma_scaling));
  return {grad.div_(static_cast<double>(steps)), loss};
}

// δ[t] = G ⊙ post_grad[t] / T.
std::tuple<at::Tensor, at::Tensor> post_signal(const at::Tensor& post_grad, const at::Tensor& rates,
                                               const at::Tensor& modulator, double sigma,
                                               c10::string_view sigma_scaling) {
  auto [scaled, loss] = rates_gradient_per_step(rates, modulator, sigma, sigma_scaling, post_grad.size(0));
  return {to_compute(post_grad) * scaled.unsqueeze(0), loss};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> hsic_post_signal(const at::Tensor& post_grad, const at::Tensor& rates,
                                                    const at::Tensor& modulator, double sigma,
                                                    c10::string_view sigma_scaling) {
  check_three_factor("hsic_post_signal", post_grad, rates, modulator, sigma, sigma_scaling);
  return post_signal(post_grad, rates, modulator, sigma, sigma_scaling);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hsic_update(const at::Tensor& pre, const at::Tensor& post_grad,
                                                           const at::Tensor& rates, const at::Tensor& modulator,
                                                           double sigma, c10::string_view sigma_scaling) {
  check_three_factor("hsic_update", post_grad, rates, modulator, sigma, sigma_scaling);
  check_same("hsic_update", pre, "pre", post_grad, "post_grad");
  TORCH_CHECK_VALUE(pre.dim() == 3, "hsic_update: pre must be [T, m, n_in], got shape ", pre.sizes());
  TORCH_CHECK_VALUE(pre.size(0) == post_grad.size(0), "hsic_update: pre has T = ", pre.size(0),
                    " time steps but post_grad has T = ", post_grad.size(0));
  check_batch("hsic_update", pre, "pre", 1, rates.size(0));
  if (pre.stride(0) == 0) {
    // The same input at every step (direct coding, pre expanded over T):
    // Σ_t δ[t]ᵀ pre[0] = (G/T ⊙ Σ_t post_grad[t])ᵀ pre[0], a T-times smaller GEMM.
    auto [scaled, loss] = rates_gradient_per_step(rates, modulator, sigma, sigma_scaling, post_grad.size(0));
    const at::Tensor delta_sum = to_compute(post_grad).sum(0).mul_(scaled);
    return {at::mm(delta_sum.t(), to_compute(pre.select(0, 0))), delta_sum.sum(0), loss};
  }
  auto [delta, loss] = post_signal(post_grad, rates, modulator, sigma, sigma_scaling);
  const int64_t steps_by_batch = pre.size(0) * pre.size(1);
  const at::Tensor delta_rows = delta.reshape({steps_by_batch, delta.size(2)});
  const at::Tensor pre_rows = to_compute(pre).reshape({steps_by_batch, pre.size(2)});
  return {spike_mm(delta_rows, pre_rows), delta_rows.sum(0), loss};
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def(
      "hsic_post_signal(Tensor post_grad, Tensor rates, Tensor modulator, float sigma, "
      "str sigma_scaling) -> (Tensor delta, Tensor loss)");
  m.def(
      "hsic_update(Tensor pre, Tensor post_grad, Tensor rates, Tensor modulator, float sigma, "
      "str sigma_scaling) -> (Tensor grad_weight, Tensor grad_bias, Tensor loss)");
}

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("hsic_post_signal", &pysnn::hsic::hsic_post_signal);
  m.impl("hsic_update", &pysnn::hsic::hsic_update);
}
