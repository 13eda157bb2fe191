// _spike_mm(a, spikes): aᵀ·spikes, the three-factor update's δᵀ·pre; by lookup
// tables on the CPU when spikes are all 0 or 1 (cpu/spike_mm_kernel.cpp),
// cuBLAS on CUDA (cuda/hsic_kernel.cu).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pysnn {
namespace hsic {

void check_spike_mm(const at::Tensor& a, const at::Tensor& spikes, c10::DeviceType device) {
  TORCH_CHECK(a.device().type() == device, "_spike_mm: a must be on ", device, ", got ", a.device());
  check_same_device(spikes, a, "_spike_mm", "spikes");
  TORCH_CHECK(a.dim() == 2 && spikes.dim() == 2 && a.size(0) == spikes.size(0),
              "_spike_mm: a [K, N] and spikes [K, C] must share K, got ", a.sizes(), " and ", spikes.sizes());
  TORCH_CHECK(
      a.scalar_type() == spikes.scalar_type() && (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble),
      "_spike_mm: a and spikes must both be float32 or both float64, got ", a.scalar_type(), " and ",
      spikes.scalar_type());
}

at::Tensor spike_mm(const at::Tensor& a, const at::Tensor& spikes) {
  static const auto op = internal_op<at::Tensor(const at::Tensor&, const at::Tensor&)>("pysnn::_spike_mm");
  return op.call(a, spikes);
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) { m.def("_spike_mm(Tensor a, Tensor spikes) -> Tensor"); }
