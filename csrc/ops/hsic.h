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

// Argument checks of the internal kernels, one per op, called by its CPU and
// its CUDA implementation alike, so both refuse the same input with the same
// message (a kernel must never read a tensor from another device). `device`
// is the type the implementation runs on; every tensor must be on one device.
void check_kernel_from_gram(const at::Tensor& gram, c10::DeviceType device);
void check_gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator, c10::DeviceType device);
void check_row_moments(const at::Tensor& k, const at::Tensor& l, c10::DeviceType device);
void check_centre(const at::Tensor& d, const at::Tensor& row_sums, const at::Tensor& total, c10::DeviceType device);
void check_spike_mm(const at::Tensor& a, const at::Tensor& spikes, c10::DeviceType device);

}  // namespace hsic
}  // namespace pysnn
