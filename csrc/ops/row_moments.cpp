// _row_moments(k, l): the row sums of K, L and K ∘ L in one pass
// (cpu/hsic_kernel.cpp, cuda/hsic_kernel.cu).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

void check_row_moments(const at::Tensor& k, const at::Tensor& l, c10::DeviceType device) {
  check_square_on(k, "_row_moments", "k", device);
  check_square_on(l, "_row_moments", "l", device);
  check_same_device(l, k, "_row_moments", "l");
  TORCH_CHECK(k.sizes() == l.sizes() && k.scalar_type() == l.scalar_type(), "_row_moments: k and l must match, got ",
              k.sizes(), " ", k.scalar_type(), " and ", l.sizes(), " ", l.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> row_moments(const at::Tensor& k, const at::Tensor& l) {
  static const auto op =
      internal_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>(
          "pysnn::_row_moments");
  return op.call(k, l);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("_row_moments(Tensor k, Tensor l) -> (Tensor row_k, Tensor row_l, Tensor row_kl)");
}
