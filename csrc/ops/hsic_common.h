#pragma once
// What the kernel-matrix and HSIC ops share (docs/hsic.md): option parsing,
// argument checks, the ATen helpers their composite implementations are
// built from (hsic_common.cpp), and the internal fused kernels, reached
// through the dispatcher (one file each: kernel_from_gram.cpp,
// gaussian_weighted.cpp, row_moments.cpp, centre.cpp, spike_mm.cpp; their
// CPU and CUDA implementations in cpu/ and cuda/).
//
// Half and bfloat16 inputs are computed in float32 (to_compute); the
// internal kernels take float32 and float64 only.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/DeviceType.h>
#include <c10/util/string_view.h>

#include <tuple>

#include "ops/hsic_math.h"

namespace pysnn {
namespace hsic {

KernelKind parse_kernel_kind(c10::string_view name);
Estimator parse_estimator(c10::string_view name);

// ---- argument checks of the public ops; errors name the op and the argument

void check_floating(const char* op, const at::Tensor& t, const char* name);
// t: floating, on ref's device, of ref's dtype.
void check_same(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name);
void check_batch(const char* op, const at::Tensor& t, const char* name, int64_t dim, int64_t m);
// A floating [m, m] matrix with m >= 2; returns m.
int64_t check_square(const char* op, const at::Tensor& k, const char* name);
void check_sigma(const char* op, double sigma);
void check_finite(const char* op, double value, const char* name);
// "none" → false, "dim" → true (σ² scaled by the feature count).
bool scale_by_dim(const char* op, c10::string_view scaling);
void check_estimator_size(Estimator estimator, int64_t m);
// modulator: floating [m, m] on z's device, m = z.size(0).
void check_modulator(const char* op, const at::Tensor& modulator, const at::Tensor& z, const char* z_name);

// ---- argument checks of the internal kernels, one per op, called by its CPU
// and its CUDA implementation alike, so both refuse the same input with the
// same message (a kernel must never read a tensor from another device).
// `device` is the type the implementation runs on.

void check_kernel_from_gram(const at::Tensor& gram, c10::DeviceType device);
void check_gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator, c10::DeviceType device);
void check_row_moments(const at::Tensor& k, const at::Tensor& l, c10::DeviceType device);
void check_centre(const at::Tensor& d, const at::Tensor& row_sums, const at::Tensor& total, c10::DeviceType device);
void check_spike_mm(const at::Tensor& a, const at::Tensor& spikes, c10::DeviceType device);
// An [m, m] float32/float64 matrix on `device`; t on first's device.
void check_square_on(const at::Tensor& t, const char* op, const char* name, c10::DeviceType device);
void check_same_device(const at::Tensor& t, const at::Tensor& first, const char* op, const char* name);

// ---- helpers

// float32 for half/bfloat16 inputs, the input dtype otherwise.
at::Tensor to_compute(const at::Tensor& t);
// [m, ...] -> contiguous [m, d] in the compute dtype.
at::Tensor rows_of(const at::Tensor& z);
// The `a` of kernel_value: 1/(2σ²) gaussian, 1/σ laplacian, with σ² scaled by
// the feature count d ("dim" scaling; σ√d for laplacian).
double kernel_scale(KernelKind kind, double sigma, bool by_dim, int64_t d);
// Z Zᵀ of rows [m, d].
at::Tensor gram_of(const at::Tensor& rows);
// diag(S·1) − S: with it Σ_j S_ij (z_i − z_j) is one GEMM and no pass over [m, d].
at::Tensor laplacian(const at::Tensor& s);
// S·Z for S [m, m] and Z [m, d].
at::Tensor small_by_wide(const at::Tensor& s, const at::Tensor& rows);
// small_by_wide written over rows (contiguous), with one [m, 2048] buffer.
void small_by_wide_over(const at::Tensor& s, const at::Tensor& rows);

template <typename Signature>
c10::TypedOperatorHandle<Signature> internal_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// ---- the internal kernels through the dispatcher

at::Tensor kernel_from_gram(const at::Tensor& gram, c10::string_view kind, double a, double b);
std::tuple<at::Tensor, at::Tensor> gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator, double scale);
std::tuple<at::Tensor, at::Tensor, at::Tensor> row_moments(const at::Tensor& k, const at::Tensor& l);
// C(D): the matrix with HSIC = Σ C(K) ∘ L (hsic_math.h, centred_entry).
at::Tensor centre(const at::Tensor& d, Estimator estimator, c10::string_view estimator_name);
// aᵀ · spikes: on the CPU by lookup tables when spikes is binary (cpu/spike_mm_kernel.cpp).
at::Tensor spike_mm(const at::Tensor& a, const at::Tensor& spikes);

// ---- the bottleneck term's forward and closed-form backward (hsic_loss.cpp),
// which the three-factor update (hsic_update.cpp) builds on

std::tuple<at::Tensor, at::Tensor> hsic_loss(const at::Tensor& z, const at::Tensor& modulator, double sigma,
                                             c10::string_view sigma_scaling);
at::Tensor hsic_loss_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& weighted, double sigma,
                              c10::string_view sigma_scaling);

}  // namespace hsic
}  // namespace pysnn
