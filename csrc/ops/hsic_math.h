#pragma once
// Per-element math of the kernel-matrix and HSIC ops (docs/hsic.md), shared by
// the CPU and CUDA kernels. Kernels are computed from the Gram matrix
// G = Z Zᵀ (one GEMM) and the squared norms n_i = G_ii:
//   ‖z_i − z_j‖² = max(n_i + n_j − 2 G_ij, 0), exactly 0 on the diagonal.
#include <cmath>

#include "dispatch_utils.h"
#include "macros.h"
#include "math_utils.h"

namespace pysnn {
namespace hsic {

enum class KernelKind : int { kGaussian = 0, kLaplacian = 1, kCosine = 2, kSigmoid = 3, kLinear = 4 };
enum class Estimator : int { kApprox = 0, kBiased = 1, kUnbiased = 2 };

template <typename T>
PYSNN_HOST_DEVICE T squared_distance(T norm_i, T norm_j, T gram_ij, bool diagonal) {
  if (diagonal) return T(0);
  const T d2 = norm_i + norm_j - T(2) * gram_ij;
  return d2 > T(0) ? d2 : T(0);
}

// Kernel value from the Gram entry. `a` is 1/(2σ²) (gaussian), 1/σ
// (laplacian) or c1 (sigmoid); `b` is c0 (sigmoid). The cosine of a zero
// vector is defined as 0 (a silent layer carries no similarity).
template <KernelKind kind, typename T>
PYSNN_HOST_DEVICE T kernel_value(T norm_i, T norm_j, T gram_ij, bool diagonal, T a, T b) {
  if constexpr (kind == KernelKind::kGaussian) {
    return diagonal ? T(1) : math::exp(-a * squared_distance(norm_i, norm_j, gram_ij, false));
  } else if constexpr (kind == KernelKind::kLaplacian) {
    return diagonal ? T(1) : math::exp(-a * std::sqrt(squared_distance(norm_i, norm_j, gram_ij, false)));
  } else if constexpr (kind == KernelKind::kCosine) {
    if (norm_i <= T(0) || norm_j <= T(0)) return T(0);
    return diagonal ? T(1) : gram_ij / (std::sqrt(norm_i) * std::sqrt(norm_j));
  } else if constexpr (kind == KernelKind::kSigmoid) {
    return std::tanh(a * gram_ij + b);
  } else {
    return gram_ij;
  }
}

// One term of L = Σ M ∘ Kz for the gaussian kernel: M_ij · exp(−scale · d²_ij).
template <typename T>
PYSNN_HOST_DEVICE T gaussian_weighted_entry(T modulator_ij, T norm_i, T norm_j, T gram_ij, bool diagonal, T scale) {
  return diagonal ? modulator_ij : modulator_ij * math::exp(-scale * squared_distance(norm_i, norm_j, gram_ij, false));
}

// Entry (i, j) of the matrix C(D) with HSIC = Σ C(K) ∘ L for symmetric D:
//   approx    (D_ij − S/m²) / m²
//   biased    (D_ij − r_i/m − r_j/m + S/m²) / m²             (H D H / m²)
//   unbiased  c·[D_ij + S̃/((m−1)(m−2)) − (r̃_i + r̃_j)/(m−2)], 0 on the diagonal,
//             c = 1/(m(m−3)), r̃ and S̃ the sums without the diagonal.
// `row_i`, `row_j`, `total` are the sums that the estimator uses.
template <Estimator estimator, typename T>
PYSNN_HOST_DEVICE T centred_entry(T d_ij, T row_i, T row_j, T total, bool diagonal, T m) {
  if constexpr (estimator == Estimator::kApprox) {
    return (d_ij - total / (m * m)) / (m * m);
  } else if constexpr (estimator == Estimator::kBiased) {
    return (d_ij - (row_i + row_j) / m + total / (m * m)) / (m * m);
  } else {
    if (diagonal) return T(0);
    return (d_ij + total / ((m - T(1)) * (m - T(2))) - (row_i + row_j) / (m - T(2))) / (m * (m - T(3)));
  }
}

// Calls f(std::integral_constant<KernelKind, kind>{}) for the runtime `kind`.
template <typename F>
void dispatch_kernel_kind(KernelKind kind, F&& f) {
  dispatch_value<KernelKind::kGaussian, KernelKind::kLaplacian, KernelKind::kCosine, KernelKind::kSigmoid,
                 KernelKind::kLinear>(kind, f);
}

// Calls f(std::integral_constant<Estimator, estimator>{}) for the runtime `estimator`.
template <typename F>
void dispatch_estimator(Estimator estimator, F&& f) {
  dispatch_value<Estimator::kApprox, Estimator::kBiased, Estimator::kUnbiased>(estimator, f);
}

}  // namespace hsic
}  // namespace pysnn
