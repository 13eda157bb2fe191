// kernel_matrix(z, kind, sigma, sigma_scaling, c1, c0): the [m, m] kernel
// matrix of a batch (gaussian, laplacian, cosine, sigmoid, linear), and its
// backward. Autograd: pysnn/ops/hsic.py.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

at::Tensor kernel_matrix(const at::Tensor& z, c10::string_view kind_name, double sigma, c10::string_view sigma_scaling,
                         double c1, double c0) {
  check_floating("kernel_matrix", z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2, "kernel_matrix: z must be [m, ...] with m >= 2 samples, got shape ",
                    z.sizes());
  const KernelKind kind = parse_kernel_kind(kind_name);
  check_sigma("kernel_matrix", sigma);
  check_finite("kernel_matrix", c1, "c1");
  check_finite("kernel_matrix", c0, "c0");
  const bool by_dim = scale_by_dim("kernel_matrix", sigma_scaling);
  const at::Tensor rows = rows_of(z);
  const at::Tensor gram = gram_of(rows);
  if (kind == KernelKind::kLinear) return gram;
  const double a = kind == KernelKind::kSigmoid ? c1 : kernel_scale(kind, sigma, by_dim, rows.size(1));
  return kernel_from_gram(gram, kind_name, a, c0);
}

at::Tensor kernel_matrix_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& k,
                                  c10::string_view kind_name, double sigma, c10::string_view sigma_scaling, double c1,
                                  double c0) {
  const KernelKind kind = parse_kernel_kind(kind_name);
  const at::Tensor rows = rows_of(z);
  const at::Tensor g = to_compute(grad);
  const double a = kernel_scale(kind, sigma, scale_by_dim("kernel_matrix", sigma_scaling), rows.size(1));
  at::Tensor grad_rows;
  switch (kind) {
    case KernelKind::kLinear:
    case KernelKind::kSigmoid: {
      // K = f(G): dL/dZ = (W + Wᵀ) Z with W = dL/dK ∘ f'(G).
      const at::Tensor w = kind == KernelKind::kLinear ? g : g * (1 - k * k) * c1;
      grad_rows = at::mm(w + w.t(), rows);
      break;
    }
    case KernelKind::kGaussian:
    case KernelKind::kLaplacian: {
      // K = f(d²): dL/dz_i = 2 Σ_j S_ij (z_i − z_j), S = W + Wᵀ, W = dL/dK ∘ f'(d²);
      // f' is 0 on the diagonal (K_ii = 1) and at d = 0 for laplacian.
      at::Tensor w;
      if (kind == KernelKind::kGaussian) {
        w = g * k * (-a);
      } else {
        const at::Tensor norms = rows.square().sum(1);
        const at::Tensor dist = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * gram_of(rows)).clamp_min(0).sqrt();
        const at::Tensor positive = dist > 0;
        w = at::where(positive, g * k * (-a) / (2 * at::where(positive, dist, at::ones_like(dist))),
                      at::zeros_like(dist));
      }
      w.fill_diagonal_(0);
      grad_rows = at::mm(laplacian(2 * (w + w.t())), rows);
      break;
    }
    case KernelKind::kCosine: {
      // K_ij = z_i·z_j / (s_i s_j): dL/dz_i = Σ_j P_ij z_j − (Σ_j Q_ij) z_i / s_i²,
      // P = (W + Wᵀ)/(s_i s_j), Q = (W + Wᵀ) ∘ K, W = dL/dK off the diagonal;
      // rows with s = 0 (K = 0 by definition) get no gradient.
      const at::Tensor norms = rows.norm(2, 1);
      const at::Tensor inv = at::where(norms > 0, norms.reciprocal(), at::zeros_like(norms));
      at::Tensor w = g.clone();
      w.fill_diagonal_(0);
      const at::Tensor s = w + w.t();
      const at::Tensor p = s * inv.unsqueeze(1) * inv.unsqueeze(0);
      const at::Tensor q = (s * k).sum(1, /*keepdim=*/true) * (inv * inv).unsqueeze(1);
      grad_rows = at::mm(p, rows) - q * rows;
      break;
    }
  }
  return grad_rows.reshape(z.sizes()).to(z.scalar_type());
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("kernel_matrix(Tensor z, str kind, float sigma, str sigma_scaling, float c1, float c0) -> Tensor");
  m.def(
      "kernel_matrix_backward(Tensor grad, Tensor z, Tensor k, str kind, float sigma, "
      "str sigma_scaling, float c1, float c0) -> Tensor");
}

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("kernel_matrix", &pysnn::hsic::kernel_matrix);
  m.impl("kernel_matrix_backward", &pysnn::hsic::kernel_matrix_backward);
}
