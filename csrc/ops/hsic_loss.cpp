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

std::tuple<at::Tensor, at::Tensor> hsic_loss(const at::Tensor& z, const at::Tensor& modulator, double sigma,
                                             c10::string_view sigma_scaling) {
  check_floating("hsic_loss", z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2, "hsic_loss: HSIC needs at least 2 samples; z has shape ",
                    z.sizes());
  check_modulator("hsic_loss", modulator, z, "z");
  check_sigma("hsic_loss", sigma);
  const bool by_dim = scale_by_dim("hsic_loss", sigma_scaling);
  const at::Tensor rows = rows_of(z);
  const at::Tensor m = to_compute(modulator).to(rows.scalar_type()).contiguous();
  auto [weighted, row_sums] =
      gaussian_weighted(gram_of(rows), m, kernel_scale(KernelKind::kGaussian, sigma, by_dim, rows.size(1)));
  return {row_sums.sum(), weighted};
}

// dL/dZ = −(2/σ²)(diag(S·1) − S) Z with S the symmetric part of A = M ∘ Kz.
// The scalar factors and the diagonal go into the small [m, m] matrix, so
// the [m, d] work is one GEMM.
at::Tensor hsic_loss_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& weighted, double sigma,
                              c10::string_view sigma_scaling) {
  const at::Tensor rows = rows_of(z);
  const double a = kernel_scale(KernelKind::kGaussian, sigma, scale_by_dim("hsic_loss", sigma_scaling), rows.size(1));
  const at::Tensor s = (weighted + weighted.t()) * (to_compute(grad) * (-2 * a));
  return small_by_wide(laplacian(s), rows).reshape(z.sizes()).to(z.scalar_type());
}

// hsic_loss, with dL/dz written over z (hsic_loss_backward's value for a
// unit gradient): for a caller that needs z no more, no z-sized output.
at::Tensor hsic_loss_grad_(const at::Tensor& z, const at::Tensor& modulator, double sigma,
                           c10::string_view sigma_scaling) {
  check_floating("hsic_loss_grad_", z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2, "hsic_loss_grad_: HSIC needs at least 2 samples; z has shape ",
                    z.sizes());
  TORCH_CHECK_VALUE(z.is_contiguous() && !at::isReducedFloatingType(z.scalar_type()),
                    "hsic_loss_grad_: z must be a contiguous float32 or float64 tensor (it takes the gradient), got ",
                    z.scalar_type(), z.is_contiguous() ? "" : ", not contiguous");
  check_modulator("hsic_loss_grad_", modulator, z, "z");
  check_sigma("hsic_loss_grad_", sigma);
  const bool by_dim = scale_by_dim("hsic_loss_grad_", sigma_scaling);
  const at::Tensor rows = z.view({z.size(0), -1});
  const at::Tensor m = to_compute(modulator).to(rows.scalar_type()).contiguous();
  const double a = kernel_scale(KernelKind::kGaussian, sigma, by_dim, rows.size(1));
  auto [weighted, row_sums] = gaussian_weighted(gram_of(rows), m, a);
  const at::Tensor s = (weighted + weighted.t()) * (-2 * a);
  small_by_wide_over(laplacian(s), rows);
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
