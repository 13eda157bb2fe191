// _kernel_from_gram(gram, kind, a, b): the kernel matrix K from the Gram
// matrix G = Z Zᵀ in one pass (cpu/hsic_kernel.cpp, cuda/hsic_kernel.cu).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

void check_kernel_from_gram(const at::Tensor& gram, c10::DeviceType device) {
  check_square_on(gram, "_kernel_from_gram", "gram", device);
}

at::Tensor kernel_from_gram(const at::Tensor& gram, c10::string_view kind, double a, double b) {
  static const auto op =
      internal_op<at::Tensor(const at::Tensor&, c10::string_view, double, double)>("pysnn::_kernel_from_gram");
  return op.call(gram, kind, a, b);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) { m.def("_kernel_from_gram(Tensor gram, str kind, float a, float b) -> Tensor"); }
