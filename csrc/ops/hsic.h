#pragma once
// Shared declarations of the HSIC ops: option parsing used by the composite
// ops (csrc/ops/hsic.cpp) and the device kernels (cpu/, cuda/).
//
// The device kernels are internal ops with CPU and CUDA implementations:
//   _kernel_from_gram(gram, kind, a, b)         K from G = Z Zᵀ, one pass
//   _gaussian_weighted(gram, modulator, scale)  A = M ∘ exp(−scale·d²) and its row sums, one pass
//   _row_moments(k, l)                          row sums of K, L and K ∘ L, one pass
//   _centre(d, row_sums, total, estimator)      the centred matrix C(D), one pass
//   _spike_mm(a, spikes)                        aᵀ·spikes: cuBLAS on CUDA; on the CPU by lookup
//                                               tables when spikes are all 0 or 1, else ATen's GEMM
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/util/string_view.h>

#include "ops/hsic_math.h"

namespace pysnn {
namespace hsic {

KernelKind parse_kernel_kind(c10::string_view name);
Estimator parse_estimator(c10::string_view name);

// Checks an [m, m] float32/float64 input of an internal kernel on `device`.
void check_kernel_input(const at::Tensor& t, const char* op, const char* name, c10::DeviceType device);

}  // namespace hsic
}  // namespace pysnn
