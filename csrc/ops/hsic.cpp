// Schemas of the kernel-matrix and HSIC ops (docs/hsic.md), and their
// device-independent implementations: GEMMs through ATen (cuBLAS, or the CPU
// BLAS), the elementwise and reduction work in the fused internal kernels of
// cpu/ and cuda/, reached through the dispatcher. One product has a CPU kernel
// of its own: the three-factor update's δᵀ·pre when pre is binary spikes
// (_spike_mm, lookup tables instead of a GEMM). Half and bfloat16 inputs are
// computed in float32; results are float32 for them.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/linalg_inv.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

namespace pysnn {
namespace hsic {

KernelKind parse_kernel_kind(c10::string_view name) {
  if (name == "gaussian") return KernelKind::kGaussian;
  if (name == "laplacian") return KernelKind::kLaplacian;
  if (name == "cosine") return KernelKind::kCosine;
  if (name == "sigmoid") return KernelKind::kSigmoid;
  if (name == "linear") return KernelKind::kLinear;
  TORCH_CHECK_VALUE(false, "kernel_matrix: kind must be one of 'gaussian', 'laplacian', 'cosine', "
                    "'sigmoid', 'linear', got '", std::string(name), "'");
}

Estimator parse_estimator(c10::string_view name) {
  if (name == "approx") return Estimator::kApprox;
  if (name == "biased") return Estimator::kBiased;
  if (name == "unbiased") return Estimator::kUnbiased;
  TORCH_CHECK_VALUE(false, "hsic: estimator must be one of 'approx', 'biased', 'unbiased', got '",
                    std::string(name), "'");
}

namespace {

// An [m, m] float32/float64 matrix on `device`.
void check_square(const at::Tensor& t, const char* op, const char* name, c10::DeviceType device) {
  TORCH_CHECK(t.device().type() == device, op, ": ", name, " must be on ", device, ", got ", t.device());
  TORCH_CHECK(t.dim() == 2 && t.size(0) == t.size(1), op, ": ", name, " must be square, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& first, const char* op, const char* name) {
  TORCH_CHECK(t.device() == first.device(), op, ": ", name, " must be on ", first.device(), " like the first input, got ",
              t.device());
}

}  // namespace

void check_kernel_from_gram(const at::Tensor& gram, c10::DeviceType device) {
  check_square(gram, "_kernel_from_gram", "gram", device);
}

void check_gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator, c10::DeviceType device) {
  check_square(gram, "_gaussian_weighted", "gram", device);
  check_square(modulator, "_gaussian_weighted", "modulator", device);
  check_same_device(modulator, gram, "_gaussian_weighted", "modulator");
  TORCH_CHECK(modulator.sizes() == gram.sizes() && modulator.scalar_type() == gram.scalar_type(),
              "_gaussian_weighted: modulator must match gram, got ", modulator.sizes(), " ", modulator.scalar_type(),
              " and ", gram.sizes(), " ", gram.scalar_type());
}

void check_row_moments(const at::Tensor& k, const at::Tensor& l, c10::DeviceType device) {
  check_square(k, "_row_moments", "k", device);
  check_square(l, "_row_moments", "l", device);
  check_same_device(l, k, "_row_moments", "l");
  TORCH_CHECK(k.sizes() == l.sizes() && k.scalar_type() == l.scalar_type(), "_row_moments: k and l must match, got ",
              k.sizes(), " ", k.scalar_type(), " and ", l.sizes(), " ", l.scalar_type());
}

void check_centre(const at::Tensor& d, const at::Tensor& row_sums, const at::Tensor& total, c10::DeviceType device) {
  check_square(d, "_centre", "d", device);
  check_same_device(row_sums, d, "_centre", "row_sums");
  check_same_device(total, d, "_centre", "total");
  TORCH_CHECK(row_sums.numel() == d.size(0) && total.numel() == 1,
              "_centre: row_sums must be [m], total a scalar, got ", row_sums.sizes(), " and ", total.sizes());
}

void check_spike_mm(const at::Tensor& a, const at::Tensor& spikes, c10::DeviceType device) {
  TORCH_CHECK(a.device().type() == device, "_spike_mm: a must be on ", device, ", got ", a.device());
  check_same_device(spikes, a, "_spike_mm", "spikes");
  TORCH_CHECK(a.dim() == 2 && spikes.dim() == 2 && a.size(0) == spikes.size(0),
              "_spike_mm: a [K, N] and spikes [K, C] must share K, got ", a.sizes(), " and ", spikes.sizes());
  TORCH_CHECK(a.scalar_type() == spikes.scalar_type() &&
                  (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble),
              "_spike_mm: a and spikes must both be float32 or both float64, got ", a.scalar_type(), " and ",
              spikes.scalar_type());
}

namespace {

// ---- argument checks ------------------------------------------------------

void check_floating(const char* op, const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor, got ", t.scalar_type());
}

void check_same(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                const char* ref_name) {
  check_floating(op, t, name);
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
                   t.scalar_type(), " but ", ref_name, " has ", ref.scalar_type());
}

void check_batch(const char* op, const at::Tensor& t, const char* name, int64_t dim, int64_t m) {
  TORCH_CHECK_VALUE(t.dim() > dim && t.size(dim) == m, op, ": ", name, " must have batch size ", m,
                    " in dim ", dim, ", got shape ", t.sizes());
}

int64_t check_square(const char* op, const at::Tensor& k, const char* name) {
  check_floating(op, k, name);
  TORCH_CHECK_VALUE(k.dim() == 2 && k.size(0) == k.size(1), op, ": ", name,
                    " must be a square [m, m] matrix, got shape ", k.sizes());
  TORCH_CHECK_VALUE(k.size(0) >= 2, op, ": HSIC needs at least 2 samples, got m = ", k.size(0));
  return k.size(0);
}

void check_sigma(const char* op, double sigma) {
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0.0, op, ": sigma must be finite and > 0, got ",
                    sigma);
}

void check_finite(const char* op, double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value), op, ": ", name, " must be finite, got ", value);
}

bool scale_by_dim(const char* op, c10::string_view scaling) {
  if (scaling == "none") return false;
  if (scaling == "dim") return true;
  TORCH_CHECK_VALUE(false, op, ": sigma_scaling must be 'none' or 'dim', got '",
                    std::string(scaling), "'");
}

void check_estimator_size(Estimator estimator, int64_t m) {
  TORCH_CHECK_VALUE(estimator != Estimator::kUnbiased || m >= 4,
                    "hsic: the unbiased estimator needs at least 4 samples, got m = ", m);
}

// ---- helpers ----------------------------------------------------------------

// float32 for half/bfloat16 inputs, the input dtype otherwise.
at::Tensor to_compute(const at::Tensor& t) {
  return at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t;
}

// [m, ...] -> contiguous [m, d] in the compute dtype.
at::Tensor rows_of(const at::Tensor& z) { return to_compute(z).reshape({z.size(0), -1}).contiguous(); }

// The `a` of kernel_value: 1/(2σ²) gaussian, 1/σ laplacian, with σ² scaled by
// the feature count d ("dim" scaling; σ√d for laplacian).
double kernel_scale(KernelKind kind, double sigma, bool by_dim, int64_t d) {
  const double dim = by_dim ? static_cast<double>(d) : 1.0;
  return kind == KernelKind::kLaplacian ? 1.0 / (sigma * std::sqrt(dim))
                                        : 1.0 / (2.0 * sigma * sigma * dim);
}

// Z Zᵀ into `out`, as a symmetric rank-k update built from ATen GEMMs: split
// the rows in halves A, B; A Aᵀ and B Bᵀ recursively, A Bᵀ once and mirrored.
// From m = 256 and d = 512 on this is 5-25 % faster than one GEMM (3/4 of its
// flops per level); below, the extra calls and the mirror copy cost more.
constexpr int64_t kSplitRows = 256, kSplitFeatures = 512;

void gram_into(const at::Tensor& rows, at::Tensor out) {
  const int64_t m = rows.size(0);
  if (m < kSplitRows || rows.size(1) < kSplitFeatures) {
    at::mm_out(out, rows, rows.t());
    return;
  }
  const int64_t h = m / 2;
  const at::Tensor top = rows.narrow(0, 0, h), bottom = rows.narrow(0, h, m - h);
  gram_into(top, out.narrow(0, 0, h).narrow(1, 0, h));
  gram_into(bottom, out.narrow(0, h, m - h).narrow(1, h, m - h));
  at::Tensor upper = out.narrow(0, 0, h).narrow(1, h, m - h);
  at::mm_out(upper, top, bottom.t());
  out.narrow(0, h, m - h).narrow(1, 0, h).copy_(upper.t());
}

at::Tensor gram_of(const at::Tensor& rows) {
  at::Tensor out = at::empty({rows.size(0), rows.size(0)}, rows.options());
  gram_into(rows, out);
  return out;
}

template <typename Signature>
c10::TypedOperatorHandle<Signature> internal_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// diag(S·1) − S: with it Σ_j S_ij (z_i − z_j) is one GEMM and no pass over [m, d].
at::Tensor laplacian(const at::Tensor& s) {
  at::Tensor out = -s;
  out.diagonal().add_(s.sum(1));
  return out;
}

// S·Z for S [m, m] and Z [m, d]. With many features the product is written in
// blocks of 2048 columns, which stay in cache: 17 % faster at m = 256, d = 16384.
constexpr int64_t kColumnBlock = 2048;

at::Tensor small_by_wide(const at::Tensor& s, const at::Tensor& rows) {
  const int64_t d = rows.size(1);
  if (d <= 2 * kColumnBlock) return at::mm(s, rows);
  at::Tensor out = at::empty({s.size(0), d}, rows.options());
  for (int64_t j = 0; j < d; j += kColumnBlock) {
    const int64_t width = std::min(kColumnBlock, d - j);
    at::Tensor block = out.narrow(1, j, width);
    at::mm_out(block, s, rows.narrow(1, j, width));
  }
  return out;
}

// aᵀ · spikes: on the CPU by lookup tables when spikes is binary (cpu/spike_mm_kernel.cpp).
at::Tensor spike_mm(const at::Tensor& a, const at::Tensor& spikes) {
  static const auto op = internal_op<at::Tensor(const at::Tensor&, const at::Tensor&)>("pysnn::_spike_mm");
  return op.call(a, spikes);
}

at::Tensor kernel_from_gram(const at::Tensor& gram, c10::string_view kind, double a, double b) {
  static const auto op = internal_op<at::Tensor(const at::Tensor&, c10::string_view, double, double)>(
      "pysnn::_kernel_from_gram");
  return op.call(gram, kind, a, b);
}

std::tuple<at::Tensor, at::Tensor> gaussian_weighted(const at::Tensor& gram, const at::Tensor& modulator,
                                                     double scale) {
  static const auto op =
      internal_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double)>(
          "pysnn::_gaussian_weighted");
  return op.call(gram, modulator, scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> row_moments(const at::Tensor& k, const at::Tensor& l) {
  static const auto op = internal_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&)>("pysnn::_row_moments");
  return op.call(k, l);
}

// C(D): the matrix with HSIC = Σ C(K) ∘ L (hsic_math.h, centred_entry).
at::Tensor centre(const at::Tensor& d, Estimator estimator, c10::string_view estimator_name) {
  static const auto op = internal_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                c10::string_view)>("pysnn::_centre");
  at::Tensor rows = d.sum(1);
  if (estimator == Estimator::kUnbiased) rows = rows - d.diagonal();
  const at::Tensor total = rows.sum();
  return op.call(d, rows, total, estimator_name);
}

// ---- ops --------------------------------------------------------------------

at::Tensor kernel_matrix(const at::Tensor& z, c10::string_view kind_name, double sigma,
                         c10::string_view sigma_scaling, double c1, double c0) {
  check_floating("kernel_matrix", z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2,
                    "kernel_matrix: z must be [m, ...] with m >= 2 samples, got shape ", z.sizes());
  const KernelKind kind = parse_kernel_kind(kind_name);
  check_sigma("kernel_matrix", sigma);
  check_finite("kernel_matrix", c1, "c1");
  check_finite("kernel_matrix", c0, "c0");
  const bool by_dim = scale_by_dim("kernel_matrix", sigma_scaling);
  const at::Tensor rows = rows_of(z);
  const at::Tensor gram = gram_of(rows);
  if (kind == KernelKind::kLinear) return gram;
  const double a = kind == KernelKind::kSigmoid ? c1 : kernel_scale(kind, sigma, by_dim, rows.size(1));
  return kernel_from_gram(gram, kind_name, a, c0);
}

at::Tensor kernel_matrix_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& k,
                                  c10::string_view kind_name, double sigma,
                                  c10::string_view sigma_scaling, double c1, double c0) {
  const KernelKind kind = parse_kernel_kind(kind_name);
  const at::Tensor rows = rows_of(z);
  const at::Tensor g = to_compute(grad);
  const double a = kernel_scale(kind, sigma, scale_by_dim("kernel_matrix", sigma_scaling), rows.size(1));
  at::Tensor grad_rows;
  switch (kind) {
    case KernelKind::kLinear:
    case KernelKind::kSigmoid: {
      // K = f(G): dL/dZ = (W + Wᵀ) Z with W = dL/dK ∘ f'(G).
      const at::Tensor w = kind == KernelKind::kLinear ? g : g * (1 - k * k) * c1;
      grad_rows = at::mm(w + w.t(), rows);
      break;
    }
    case KernelKind::kGaussian:
    case KernelKind::kLaplacian: {
      // K = f(d²): dL/dz_i = 2 Σ_j S_ij (z_i − z_j), S = W + Wᵀ, W = dL/dK ∘ f'(d²);
      // f' is 0 on the diagonal (K_ii = 1) and at d = 0 for laplacian.
      at::Tensor w;
      if (kind == KernelKind::kGaussian) {
        w = g * k * (-a);
      } else {
        const at::Tensor norms = rows.square().sum(1);
        const at::Tensor dist = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * gram_of(rows)).clamp_min(0).sqrt();
        const at::Tensor positive = dist > 0;
        w = at::where(positive, g * k * (-a) / (2 * at::where(positive, dist, at::ones_like(dist))),
                      at::zeros_like(dist));
      }
      w.fill_diagonal_(0);
      grad_rows = at::mm(laplacian(2 * (w + w.t())), rows);
      break;
    }
    case KernelKind::kCosine: {
      // K_ij = z_i·z_j / (s_i s_j): dL/dz_i = Σ_j P_ij z_j − (Σ_j Q_ij) z_i / s_i²,
      // P = (W + Wᵀ)/(s_i s_j), Q = (W + Wᵀ) ∘ K, W = dL/dK off the diagonal;
      // rows with s = 0 (K = 0 by definition) get no gradient.
      const at::Tensor norms = rows.norm(2, 1);
      const at::Tensor inv = at::where(norms > 0, norms.reciprocal(), at::zeros_like(norms));
      at::Tensor w = g.clone();
      w.fill_diagonal_(0);
      const at::Tensor s = w + w.t();
      const at::Tensor p = s * inv.unsqueeze(1) * inv.unsqueeze(0);
      const at::Tensor q = (s * k).sum(1, /*keepdim=*/true) * (inv * inv).unsqueeze(1);
      grad_rows = at::mm(p, rows) - q * rows;
      break;
    }
  }
  return grad_rows.reshape(z.sizes()).to(z.scalar_type());
}

at::Tensor hsic(const at::Tensor& k_, const at::Tensor& l_, c10::string_view estimator_name) {
  const int64_t m = check_square("hsic", k_, "k");
  check_same("hsic", l_, "l", k_, "k");
  TORCH_CHECK_VALUE(l_.sizes() == k_.sizes(), "hsic: k and l must have the same shape, got ",
                    k_.sizes(), " and ", l_.sizes());
  const Estimator estimator = parse_estimator(estimator_name);
  check_estimator_size(estimator, m);
  const at::Tensor k = to_compute(k_).contiguous();
  const at::Tensor l = to_compute(l_).contiguous();
  auto [row_k, row_l, row_kl] = row_moments(k, l);
  const double n = static_cast<double>(m);
  switch (estimator) {
    case Estimator::kApprox:
      return row_kl.sum() / (n * n) - row_k.sum() * row_l.sum() / (n * n * n * n);
    case Estimator::kBiased:
      return (row_kl.sum() - 2.0 / n * at::dot(row_k, row_l) + row_k.sum() * row_l.sum() / (n * n)) / (n * n);
    case Estimator::kUnbiased:
    default: {
      const at::Tensor dk = k.diagonal(), dl = l.diagonal();
      const at::Tensor rk = row_k - dk, rl = row_l - dl;
      const at::Tensor trace = row_kl.sum() - at::dot(dk, dl);
      return (trace + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * at::dot(rk, rl)) /
             (n * (n - 3));
    }
  }
}

// Gradient on symmetric matrices: dHSIC/dK = C(L), dHSIC/dL = C(K).
std::tuple<at::Tensor, at::Tensor> hsic_backward(const at::Tensor& grad, const at::Tensor& k,
                                                 const at::Tensor& l, c10::string_view estimator_name) {
  const Estimator estimator = parse_estimator(estimator_name);
  const at::Tensor g = to_compute(grad);
  return {(centre(to_compute(l).contiguous(), estimator, estimator_name) * g).to(k.scalar_type()),
          (centre(to_compute(k).contiguous(), estimator, estimator_name) * g).to(l.scalar_type())};
}

at::Tensor hsic_modulator(const at::Tensor& kx, const at::Tensor& ky, double beta,
                          c10::string_view estimator_name) {
  const int64_t m = check_square("hsic_modulator", kx, "kx");
  check_same("hsic_modulator", ky, "ky", kx, "kx");
  TORCH_CHECK_VALUE(ky.sizes() == kx.sizes(), "hsic_modulator: kx and ky must both be [m, m] with the "
                    "same batch size, got ", kx.sizes(), " and ", ky.sizes());
  check_finite("hsic_modulator", beta, "beta");
  const Estimator estimator = parse_estimator(estimator_name);
  check_estimator_size(estimator, m);
  const at::Tensor d = at::add(to_compute(kx), to_compute(ky), -beta).contiguous();
  return centre(d, estimator, estimator_name);
}

// kx, ky and kz: [m, m] on one device, one dtype; beta finite. Returns m.
int64_t check_normalised_args(const char* op, const at::Tensor& kx, const at::Tensor& ky, const at::Tensor& kz,
                              double beta) {
  const int64_t m = check_square(op, kx, "kx");
  check_same(op, ky, "ky", kx, "kx");
  check_same(op, kz, "kz", kx, "kx");
  TORCH_CHECK_VALUE(ky.sizes() == kx.sizes() && kz.sizes() == kx.sizes(), op,
                    ": kx, ky and kz must all be [m, m] with the same m, got ", kx.sizes(), ", ", ky.sizes(),
                    " and ", kz.sizes());
  check_finite(op, beta, "beta");
  return m;
}

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
  const auto centred = [&](const at::Tensor& k) { return centre(to_compute(k).contiguous(), estimator, estimator_name); };
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

void check_modulator(const char* op, const at::Tensor& modulator, const at::Tensor& z, const char* z_name) {
  check_floating(op, modulator, "modulator");
  TORCH_CHECK(modulator.device() == z.device(), op, ": modulator is on ", modulator.device(), " but ",
              z_name, " is on ", z.device());
  TORCH_CHECK_VALUE(modulator.dim() == 2 && modulator.size(0) == modulator.size(1), op,
                    ": modulator must be a square [m, m] matrix, got shape ", modulator.sizes());
  TORCH_CHECK_VALUE(modulator.size(0) == z.size(0), op, ": modulator is for batch size ",
                    modulator.size(0), " but ", z_name, " has batch size ", z.size(0));
}

std::tuple<at::Tensor, at::Tensor> hsic_loss(const at::Tensor& z, const at::Tensor& modulator,
                                             double sigma, c10::string_view sigma_scaling) {
  check_floating("hsic_loss", z, "z");
  TORCH_CHECK_VALUE(z.dim() >= 1 && z.size(0) >= 2,
                    "hsic_loss: HSIC needs at least 2 samples; z has shape ", z.sizes());
  check_modulator("hsic_loss", modulator, z, "z");
  check_sigma("hsic_loss", sigma);
  const bool by_dim = scale_by_dim("hsic_loss", sigma_scaling);
  const at::Tensor rows = rows_of(z);
  const at::Tensor m = to_compute(modulator).to(rows.scalar_type()).contiguous();
  auto [weighted, row_sums] =
      gaussian_weighted(gram_of(rows), m, kernel_scale(KernelKind::kGaussian, sigma, by_dim, rows.size(1)));
  return {row_sums.sum(), weighted};
}

// dL/dZ = −(2/σ²)(diag(S·1) − S) Z with S the symmetric part of A = M ∘ Kz.
// The scalar factors and the diagonal go into the small [m, m] matrix, so
// the [m, d] work is one GEMM.
at::Tensor hsic_loss_backward(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& weighted,
                              double sigma, c10::string_view sigma_scaling) {
  const at::Tensor rows = rows_of(z);
  const double a = kernel_scale(KernelKind::kGaussian, sigma, scale_by_dim("hsic_loss", sigma_scaling),
                                rows.size(1));
  const at::Tensor s = (weighted + weighted.t()) * (to_compute(grad) * (-2 * a));
  return small_by_wide(laplacian(s), rows).reshape(z.sizes()).to(z.scalar_type());
}

void check_three_factor(const char* op, const at::Tensor& post_grad, const at::Tensor& rates,
                        const at::Tensor& modulator) {
  check_floating(op, post_grad, "post_grad");
  check_same(op, rates, "rates", post_grad, "post_grad");
  TORCH_CHECK_VALUE(post_grad.dim() == 3, op, ": post_grad must be [T, m, n_out], got shape ",
                    post_grad.sizes());
  TORCH_CHECK_VALUE(post_grad.size(0) >= 1, op, ": post_grad has T = 0 time steps");
  TORCH_CHECK_VALUE(rates.dim() == 2, op, ": rates must be [m, n_out], got shape ", rates.sizes());
  TORCH_CHECK_VALUE(rates.size(0) >= 2, op, ": HSIC needs at least 2 samples, got m = ", rates.size(0));
  check_batch(op, post_grad, "post_grad", 1, rates.size(0));
  TORCH_CHECK_VALUE(post_grad.size(2) == rates.size(1), op, ": post_grad has ", post_grad.size(2),
                    " neurons but rates has ", rates.size(1));
  check_modulator(op, modulator, rates, "rates");
}

// G = dL/drates by the closed form, and the loss.
std::tuple<at::Tensor, at::Tensor> rates_gradient(const at::Tensor& rates, const at::Tensor& modulator,
                                                  double sigma, c10::string_view sigma_scaling) {
  auto [loss, weighted] = hsic_loss(rates, modulator, sigma, sigma_scaling);
  return {hsic_loss_backward(at::ones({}, loss.options()), rates, weighted, sigma, sigma_scaling), loss};
}

// δ[t] = G ⊙ post_grad[t] / T.
std::tuple<at::Tensor, at::Tensor> post_signal(const at::Tensor& post_grad, const at::Tensor& rates,
                                               const at::Tensor& modulator, double sigma,
                                               c10::string_view sigma_scaling) {
  auto [grad_rates, loss] = rates_gradient(rates, modulator, sigma, sigma_scaling);
  const at::Tensor scaled = to_compute(grad_rates) / static_cast<double>(post_grad.size(0));
  return {to_compute(post_grad) * scaled.unsqueeze(0), loss};
}

std::tuple<at::Tensor, at::Tensor> hsic_post_signal(const at::Tensor& post_grad, const at::Tensor& rates,
                                                    const at::Tensor& modulator, double sigma,
                                                    c10::string_view sigma_scaling) {
  check_three_factor("hsic_post_signal", post_grad, rates, modulator);
  return post_signal(post_grad, rates, modulator, sigma, sigma_scaling);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hsic_update(const at::Tensor& pre, const at::Tensor& post_grad,
                                                           const at::Tensor& rates, const at::Tensor& modulator,
                                                           double sigma, c10::string_view sigma_scaling) {
  check_three_factor("hsic_update", post_grad, rates, modulator);
  check_same("hsic_update", pre, "pre", post_grad, "post_grad");
  TORCH_CHECK_VALUE(pre.dim() == 3, "hsic_update: pre must be [T, m, n_in], got shape ", pre.sizes());
  TORCH_CHECK_VALUE(pre.size(0) == post_grad.size(0), "hsic_update: pre has T = ", pre.size(0),
                    " time steps but post_grad has T = ", post_grad.size(0));
  check_batch("hsic_update", pre, "pre", 1, rates.size(0));
  if (pre.stride(0) == 0) {
    // The same input at every step (direct coding, pre expanded over T):
    // Σ_t δ[t]ᵀ pre[0] = (G/T ⊙ Σ_t post_grad[t])ᵀ pre[0], a T-times smaller GEMM.
    auto [grad_rates, loss] = rates_gradient(rates, modulator, sigma, sigma_scaling);
    const at::Tensor delta_sum =
        to_compute(post_grad).sum(0) * (to_compute(grad_rates) / static_cast<double>(post_grad.size(0)));
    return {at::mm(delta_sum.t(), to_compute(pre.select(0, 0))), delta_sum.sum(0), loss};
  }
  auto [delta, loss] = post_signal(post_grad, rates, modulator, sigma, sigma_scaling);
  const int64_t steps_by_batch = pre.size(0) * pre.size(1);
  const at::Tensor delta_rows = delta.reshape({steps_by_batch, delta.size(2)});
  const at::Tensor pre_rows = to_compute(pre).reshape({steps_by_batch, pre.size(2)});
  return {spike_mm(delta_rows, pre_rows), delta_rows.sum(0), loss};
}

}  // namespace
}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  m.def("kernel_matrix(Tensor z, str kind, float sigma, str sigma_scaling, float c1, float c0) -> Tensor");
  m.def("kernel_matrix_backward(Tensor grad, Tensor z, Tensor k, str kind, float sigma, "
        "str sigma_scaling, float c1, float c0) -> Tensor");
  m.def("hsic(Tensor k, Tensor l, str estimator) -> Tensor");
  m.def("hsic_backward(Tensor grad, Tensor k, Tensor l, str estimator) -> (Tensor grad_k, Tensor grad_l)");
  m.def("hsic_modulator(Tensor kx, Tensor ky, float beta, str estimator) -> Tensor");
  m.def("hsic_modulator_cka(Tensor kx, Tensor ky, Tensor kz, float beta, str estimator) -> Tensor");
  m.def("hsic_modulator_cca(Tensor kx, Tensor ky, Tensor kz, float beta) -> Tensor");
  // loss = Σ M ∘ Kz; weighted = M ∘ Kz, saved for the closed-form backward.
  m.def("hsic_loss(Tensor z, Tensor modulator, float sigma, str sigma_scaling) -> (Tensor loss, Tensor weighted)");
  m.def("hsic_loss_backward(Tensor grad, Tensor z, Tensor weighted, float sigma, str sigma_scaling) -> Tensor");
  m.def("hsic_post_signal(Tensor post_grad, Tensor rates, Tensor modulator, float sigma, "
        "str sigma_scaling) -> (Tensor delta, Tensor loss)");
  m.def("hsic_update(Tensor pre, Tensor post_grad, Tensor rates, Tensor modulator, float sigma, "
        "str sigma_scaling) -> (Tensor grad_weight, Tensor grad_bias, Tensor loss)");
  // Internal fused kernels (cpu/hsic_kernel.cpp, cuda/hsic_kernel.cu).
  m.def("_kernel_from_gram(Tensor gram, str kind, float a, float b) -> Tensor");
  m.def("_gaussian_weighted(Tensor gram, Tensor modulator, float scale) -> (Tensor weighted, Tensor row_sums)");
  m.def("_row_moments(Tensor k, Tensor l) -> (Tensor row_k, Tensor row_l, Tensor row_kl)");
  m.def("_centre(Tensor d, Tensor row_sums, Tensor total, str estimator) -> Tensor");
  m.def("_spike_mm(Tensor a, Tensor spikes) -> Tensor");
}

// One implementation for every device: the device-specific work is in the
// internal kernels above.
TORCH_LIBRARY_IMPL(pysnn, CompositeExplicitAutograd, m) {
  m.impl("kernel_matrix", &pysnn::hsic::kernel_matrix);
  m.impl("kernel_matrix_backward", &pysnn::hsic::kernel_matrix_backward);
  m.impl("hsic", &pysnn::hsic::hsic);
  m.impl("hsic_backward", &pysnn::hsic::hsic_backward);
  m.impl("hsic_modulator", &pysnn::hsic::hsic_modulator);
  m.impl("hsic_modulator_cka", &pysnn::hsic::hsic_modulator_cka);
  m.impl("hsic_modulator_cca", &pysnn::hsic::hsic_modulator_cca);
  m.impl("hsic_loss", &pysnn::hsic::hsic_loss);
  m.impl("hsic_loss_backward", &pysnn::hsic::hsic_loss_backward);
  m.impl("hsic_post_signal", &pysnn::hsic::hsic_post_signal);
  m.impl("hsic_update", &pysnn::hsic::hsic_update);
}
