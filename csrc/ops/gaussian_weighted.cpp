// _gaussian_weighted(gram, modulator, scale): A = M ∘ exp(−scale·d²) and its
// row sums in one pass (cpu/hsic_kernel.cpp, cuda/hsic_kernel.cu).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

void check_gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator, c10::DeviceType device) {
  check_square_on(gram, "_gaussian_weighted", "gram", device);
  check_square_on(modulator, "_gaussian_weighted", "modulator", device);
  check_same_device(modulator, gram, "_gaussian_weighted", "modulator");
  TORCH_CHECK(modulator.sizes() == gram.sizes() && modulator.scalar_type() == gram.scalar_type(),
              "_gaussian_weighted: modulator must match gram, got ", modulator.sizes(), " ", modulator.scalar_type(),
              " and ", gram.sizes(), " ", gram.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator,
                                                     double scale) {
  static const auto op = internal_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double)>(
      "pysnn::_gaussian_weighted");
  return op.call(gram, modulator, scale);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("_gaussian_weighted(Tensor gram, Tensor modulator, float scale) -> (Tensor weighted, Tensor row_sums)");
}
