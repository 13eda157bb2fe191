// The modulators of the normalised bottleneck nHSIC(X, Z) − β·nHSIC(Z, Y):
// hsic_modulator_cka (centred-kernel alignment) and hsic_modulator_cca
// (Ma et al.'s normalised HSIC). Both need the layer's own Kz.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/linalg_inv.h>
#include <ATen/ops/mm.h>
#include <c10/util/Exception.h>
#include <torch/library.h>
#include <string>

namespace pysnn {
namespace hsic {

namespace {

// kx, ky and kz: [m, m] on one device, one dtype; beta finite. Returns m.
int64_t check_normalised_args(const char* op, const at::Tensor& kx, const at::Tensor& ky, const at::Tensor& kz,
                              double beta) {
  const int64_t m = check_square(op, kx, "kx");
  check_same(op, ky, "ky", kx, "kx");
  check_same(op, kz, "kz", kx, "kx");
  TORCH_CHECK_VALUE(ky.sizes() == kx.sizes() && kz.sizes() == kx.sizes(), op,
                    ": kx, ky and kz must all be [m, m] with the same m, got ", kx.sizes(), ", ", ky.sizes(), " and ",
                    kz.sizes());
  check_finite(op, beta, "beta");
  return m;
}

}  // namespace

// The modulator of the normalised bottleneck nHSIC(X, Z) − β·nHSIC(Z, Y) in
// CKA form, nHSIC(A, B) = ⟨Â, B̂⟩ with Â = C(A)/‖C(A)‖ (C: the estimator's
// centring). Its gradient with respect to Kz is
//   M = [X̂ − β·Ŷ − (c_xz − β·c_zy)·Ẑ] / ‖C(Kz)‖,   c_ab = ⟨Â, B̂⟩,
// which has no component along Ẑ: descent cannot inflate the layer's own
// similarity structure. A silent layer (C(Kz) = 0) gets M = 0.
at::Tensor hsic_modulator_cka(const at::Tensor& kx, const at::Tensor& ky, const at::Tensor& kz, double beta,
                              c10::string_view estimator_name) {
  const char* op = "hsic_modulator(normalize='cka')";
  const int64_t m = check_normalised_args(op, kx, ky, kz, beta);
  const Estimator estimator = parse_estimator(estimator_name);
  TORCH_CHECK_VALUE(estimator != Estimator::kUnbiased, op, ": needs the approx or biased estimator, got '",
                    std::string(estimator_name), "'");
  constexpr double kSilent = 1e-8;  // ‖C(Kz)‖ below this: a silent layer
  // centre() returns C(K)/m²: the unit matrices do not see the factor, ‖C(Kz)‖ does.
  const auto centred = [&](const at::Tensor& k) {
    return centre(to_compute(k).contiguous(), estimator, estimator_name);
  };
  const auto unit = [](const at::Tensor& c) { return c / c.norm().clamp_min(1e-30); };
  const at::Tensor z_centred = centred(kz);
  const at::Tensor x_hat = unit(centred(kx)), y_hat = unit(centred(ky)), z_hat = unit(z_centred);
  const at::Tensor z_norm = z_centred.norm() * static_cast<double>(m * m);
  const at::Tensor c_xz = (x_hat * z_hat).sum(), c_zy = (z_hat * y_hat).sum();
  const at::Tensor modulator = (x_hat - beta * y_hat - (c_xz - beta * c_zy) * z_hat) / z_norm.clamp_min(kSilent);
  return modulator * (z_norm > kSilent);
}

// The same for Ma et al.'s normalised HSIC (their hsic_normalized_cca):
// nHSIC(A, B) = tr(R_A R_B), R_K = K̃ (K̃ + εmI)⁻¹, K̃ = HKH, ε = 1e-5. With
// A_z = K̃z + εmI, dR_z = εm A_z⁻¹ dK̃z A_z⁻¹, so
//   M = H · εm A_z⁻¹ (R_X − β·R_Y)ᵀ A_z⁻¹ · H   (symmetrised).
at::Tensor hsic_modulator_cca(const at::Tensor& kx, const at::Tensor& ky, const at::Tensor& kz, double beta) {
  const char* op = "hsic_modulator(normalize='cca')";
  const int64_t m = check_normalised_args(op, kx, ky, kz, beta);
  constexpr double kEpsilon = 1e-5;  // Ma et al.'s
  const double ridge = kEpsilon * static_cast<double>(m);
  const at::Tensor eye = at::eye(m, to_compute(kx).options());
  const at::Tensor h = eye - 1.0 / static_cast<double>(m);
  const auto centred = [&](const at::Tensor& k) { return at::mm(at::mm(h, to_compute(k)), h); };
  const auto inverse = [&](const at::Tensor& kc) { return at::linalg_inv(kc + ridge * eye); };
  const at::Tensor kxc = centred(kx), kyc = centred(ky), kzc = centred(kz);
  const at::Tensor rx = at::mm(kxc, inverse(kxc)), ry = at::mm(kyc, inverse(kyc));
  const at::Tensor az_inv = inverse(kzc);
  const at::Tensor grad_centred = ridge * at::mm(at::mm(az_inv, (rx - beta * ry).t()), az_inv);
  const at::Tensor grad = at::mm(at::mm(h, grad_centred), h);
  return (grad + grad.t()) / 2;
}

}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("hsic_modulator_cka(Tensor kx, Tensor ky, Tensor kz, float beta, str estimator) -> Tensor");
  m.def("hsic_modulator_cca(Tensor kx, Tensor ky, Tensor kz, float beta) -> Tensor");
}

TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("hsic_modulator_cka", &pysnn::hsic::hsic_modulator_cka);
  m.impl("hsic_modulator_cca", &pysnn::hsic::hsic_modulator_cca);
}
