// hsic_loss(z, modulator, sigma, sigma_scaling): the bottleneck term
// Σ M ∘ Kz with a Gaussian Kz, and its closed-form backward. Autograd:
// autograd/hsic_autograd.cpp.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

namespace {

// The checks both forward ops make, naming the op that was called; returns
// whether σ scales with the feature dimension.
bool check_loss_args(const char* op, const at::Tensor& z, const at::Tensor& modulator, double sigma,
                     c10::string_view sigma_scaling) {
  check_floating(op, z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2, op, ": HSIC needs at least 2 samples; z has shape ", z.sizes());
  check_modulator(op, modulator, z, "z");
  check_sigma(op, sigma);
  return scale_by_dim(op, sigma_scaling);
}

// M ∘ Kz for the rows of z, and its row sums (their sum is the loss).
std::tuple<at::Tensor, at::Tensor> weighted_kernel(const at::Tensor& rows, const at::Tensor& modulator, double a) {
  const at::Tensor m = to_compute(modulator).to(rows.scalar_type()).contiguous();
  return gaussian_weighted(gram_of(rows), m, a);
}

// dL/dZ = −(2/σ²)(diag(S·1) − S) Z with S the symmetric part of A = M ∘ Kz:
// the [m, m] factor, scalars and diagonal folded in, so the [m, d] work is
// one GEMM. a = 1/σ², grad the upstream gradient.
at::Tensor gradient_factor(const at::Tensor& weighted, double a, const at::Tensor& grad) {
  return laplacian((weighted + weighted.t()) * (grad * (-2 * a)));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> hsic_loss(const at::Tensor& z, const at::Tensor& modulator, double sigma,
                                             c10::string_view sigma_scaling) {
  const bool by_dim = check_loss_args("hsic_loss", z, modulator, sigma, sigma_scaling);
  const at::Tensor rows = rows_of(z);
  auto [weighted, row_sums] =
      weighted_kernel(rows, modulator, kernel_scale(KernelKind::kGaussian, sigma, by_dim, rows.size(1)));
  return {row_sums.sum(), weighted};
}

at::Tensor hsic_loss_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& weighted, double sigma,
                              c10::string_view sigma_scaling) {
  const at::Tensor rows = rows_of(z);
  const double a = kernel_scale(KernelKind::kGaussian, sigma, scale_by_dim("hsic_loss", sigma_scaling), rows.size(1));
  return small_by_wide(gradient_factor(weighted, a, to_compute(grad)), rows).reshape(z.sizes()).to(z.scalar_type());
}

// hsic_loss, with dL/dz written over z (hsic_loss_backward's value for a
// unit gradient): for a caller that needs z no more, no z-sized output.
at::Tensor hsic_loss_grad_(const at::Tensor& z, const at::Tensor& modulator, double sigma,
                           c10::string_view sigma_scaling) {
  const bool by_dim = check_loss_args("hsic_loss_grad_", z, modulator, sigma, sigma_scaling);
  TORCH_CHECK_VALUE(z.is_contiguous() && !at::isReducedFloatingType(z.scalar_type()),
                    "hsic_loss_grad_: z must be a contiguous float32 or float64 tensor (it takes the gradient), got ",
                    z.scalar_type(), z.is_contiguous() ? "" : ", not contiguous");
  const at::Tensor rows = z.view({z.size(0), -1});
  const double a = kernel_scale(KernelKind::kGaussian, sigma, by_dim, rows.size(1));
  auto [weighted, row_sums] = weighted_kernel(rows, modulator, a);
  small_by_wide_over(gradient_factor(weighted, a, at::ones({}, weighted.options())), rows);
  return row_sums.sum();
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // loss = Σ M ∘ Kz; weighted = M ∘ Kz, saved for the closed-form backward.
  m.def("hsic_loss(Tensor z, Tensor modulator, float sigma, str sigma_scaling) -> (Tensor loss, Tensor weighted)");
  m.def("hsic_loss_backward(Tensor grad, Tensor z, Tensor weighted, float sigma, str sigma_scaling) -> Tensor");
  // loss, with dL/dz written over z (contiguous float32/float64).
  m.def("hsic_loss_grad_(Tensor(a!) z, Tensor modulator, float sigma, str sigma_scaling) -> Tensor loss");
}

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("hsic_loss", &pysnn::hsic::hsic_loss);
  m.impl("hsic_loss_backward", &pysnn::hsic::hsic_loss_backward);
  m.impl("hsic_loss_grad_", &pysnn::hsic::hsic_loss_grad_);
}
