// hsic_modulator(kx, ky, beta, estimator): the per-batch modulator
// M = C(Kx − β·Ky) of the HSIC bottleneck HSIC(X, Z) − β·HSIC(Z, Y), whose
// gradient with respect to Kz it is.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/ops/add.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

at::Tensor hsic_modulator(const at::Tensor& kx, const at::Tensor& ky, double beta, c10::string_view estimator_name) {
  const int64_t m = check_square("hsic_modulator", kx, "kx");
  check_same("hsic_modulator", ky, "ky", kx, "kx");
  TORCH_CHECK_VALUE(ky.sizes() == kx.sizes(),
                    "hsic_modulator: kx and ky must both be [m, m] with the "
                    "same batch size, got ",
                    kx.sizes(), " and ", ky.sizes());
  check_finite("hsic_modulator", beta, "beta");
  const Estimator estimator = parse_estimator(estimator_name);
  check_estimator_size(estimator, m);
  const at::Tensor d = at::add(to_compute(kx), to_compute(ky), -beta).contiguous();
  return centre(d, estimator, estimator_name);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) { m.def("hsic_modulator(Tensor kx, Tensor ky, float beta, str estimator) -> Tensor"); }

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) { m.impl("hsic_modulator", &pysnn::hsic::hsic_modulator); }
