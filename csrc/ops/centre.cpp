// _centre(d, row_sums, total, estimator): the centred matrix C(D) in one pass
// (cpu/hsic_kernel.cpp, cuda/hsic_kernel.cu).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

void check_centre(const at::Tensor& d, const at::Tensor& row_sums, const at::Tensor& total, c10::DeviceType device) {
  check_square_on(d, "_centre", "d", device);
  check_same_device(row_sums, d, "_centre", "row_sums");
  check_same_device(total, d, "_centre", "total");
  TORCH_CHECK(row_sums.numel() == d.size(0) && total.numel() == 1,
              "_centre: row_sums must be [m], total a scalar, got ", row_sums.sizes(), " and ", total.sizes());
}

at::Tensor centre(const at::Tensor& d, Estimator estimator, c10::string_view estimator_name) {
  static const auto op =
      internal_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view)>(
          "pysnn::_centre");
  at::Tensor rows = d.sum(1);
  if (estimator == Estimator::kUnbiased) rows = rows - d.diagonal();
  const at::Tensor total = rows.sum();
  return op.call(d, rows, total, estimator_name);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) { m.def("_centre(Tensor d, Tensor row_sums, Tensor total, str estimator) -> Tensor"); }
