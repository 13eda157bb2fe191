// hsic(k, l, estimator): HSIC of two kernel matrices by the approx, biased
// or unbiased estimator, and its backward. Autograd: pysnn/ops/hsic.py.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/dot.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

at::Tensor hsic(const at::Tensor& k_, const at::Tensor& l_, c10::string_view estimator_name) {
  const int64_t m = check_square("hsic", k_, "k");
  check_same("hsic", l_, "l", k_, "k");
  TORCH_CHECK_VALUE(l_.sizes() == k_.sizes(), "hsic: k and l must have the same shape, got ", k_.sizes(), " and ",
                    l_.sizes());
  const Estimator estimator = parse_estimator(estimator_name);
  check_estimator_size(estimator, m);
  const at::Tensor k = to_compute(k_).contiguous();
  const at::Tensor l = to_compute(l_).contiguous();
  auto [row_k, row_l, row_kl] = row_moments(k, l);
  const double n = static_cast<double>(m);
  switch (estimator) {
    case Estimator::kApprox:
      return row_kl.sum() / (n * n) - row_k.sum() * row_l.sum() / (n * n * n * n);
    case Estimator::kBiased:
      return (row_kl.sum() - 2.0 / n * at::dot(row_k, row_l) + row_k.sum() * row_l.sum() / (n * n)) / (n * n);
    case Estimator::kUnbiased:
    default: {
      const at::Tensor dk = k.diagonal(), dl = l.diagonal();
      const at::Tensor rk = row_k - dk, rl = row_l - dl;
      const at::Tensor trace = row_kl.sum() - at::dot(dk, dl);
      return (trace + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * at::dot(rk, rl)) / (n * (n - 3));
    }
  }
}

// Gradient on symmetric matrices: dHSIC/dK = C(L), dHSIC/dL = C(K).
std::tuple<at::Tensor, at::Tensor> hsic_backward(const at::Tensor& grad, const at::Tensor& k, const at::Tensor& l,
                                                 c10::string_view estimator_name) {
  const Estimator estimator = parse_estimator(estimator_name);
  const at::Tensor g = to_compute(grad);
  return {(centre(to_compute(l).contiguous(), estimator, estimator_name) * g).to(k.scalar_type()),
          (centre(to_compute(k).contiguous(), estimator, estimator_name) * g).to(l.scalar_type())};
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("hsic(Tensor k, Tensor l, str estimator) -> Tensor");
  m.def("hsic_backward(Tensor grad, Tensor k, Tensor l, str estimator) -> (Tensor grad_k, Tensor grad_l)");
}

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("hsic", &pysnn::hsic::hsic);
  m.impl("hsic_backward", &pysnn::hsic::hsic_backward);
}
