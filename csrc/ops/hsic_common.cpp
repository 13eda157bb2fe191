// The shared part of the HSIC ops (hsic_common.h): parsing, argument checks
// and ATen helpers. No schema here: each op declares its own in its file.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "ops/hsic_common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <string>

namespace pysnn {
namespace hsic {

KernelKind parse_kernel_kind(c10::string_view name) {
  if (name == "gaussian") return KernelKind::kGaussian;
  if (name == "laplacian") return KernelKind::kLaplacian;
  if (name == "cosine") return KernelKind::kCosine;
  if (name == "sigmoid") return KernelKind::kSigmoid;
  if (name == "linear") return KernelKind::kLinear;
  TORCH_CHECK_VALUE(false,
                    "kernel_matrix: kind must be one of 'gaussian', 'laplacian', 'cosine', "
                    "'sigmoid', 'linear', got '",
                    std::string(name), "'");
}

Estimator parse_estimator(c10::string_view name) {
  if (name == "approx") return Estimator::kApprox;
  if (name == "biased") return Estimator::kBiased;
  if (name == "unbiased") return Estimator::kUnbiased;
  TORCH_CHECK_VALUE(false, "hsic: estimator must be one of 'approx', 'biased', 'unbiased', got '", std::string(name),
                    "'");
}

// An [m, m] float32/float64 matrix on `device`.
void check_square_on(const at::Tensor& t, const char* op, const char* name, c10::DeviceType device) {
  TORCH_CHECK(t.device().type() == device, op, ": ", name, " must be on ", device, ", got ", t.device());
  TORCH_CHECK(t.dim() == 2 && t.size(0) == t.size(1), op, ": ", name, " must be square, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& first, const char* op, const char* name) {
  TORCH_CHECK(t.device() == first.device(), op, ": ", name, " must be on ", first.device(),
              " like the first input, got ", t.device());
}

void check_floating(const char* op, const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be a floating-point tensor, got ",
                   t.scalar_type());
}

void check_same(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_floating(op, t, name);
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name, " is on ",
              ref.device());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(), " but ",
                   ref_name, " has ", ref.scalar_type());
}

void check_batch(const char* op, const at::Tensor& t, const char* name, int64_t dim, int64_t m) {
  TORCH_CHECK_VALUE(t.dim() > dim && t.size(dim) == m, op, ": ", name, " must have batch size ", m, " in dim ", dim,
                    ", got shape ", t.sizes());
}

int64_t check_square(const char* op, const at::Tensor& k, const char* name) {
  check_floating(op, k, name);
  TORCH_CHECK_VALUE(k.dim() == 2 && k.size(0) == k.size(1), op, ": ", name,
                    " must be a square [m, m] matrix, got shape ", k.sizes());
  TORCH_CHECK_VALUE(k.size(0) >= 2, op, ": HSIC needs at least 2 samples, got m = ", k.size(0));
  return k.size(0);
}

void check_sigma(const char* op, double sigma) {
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0.0, op, ": sigma must be finite and > 0, got ", sigma);
}

void check_finite(const char* op, double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value), op, ": ", name, " must be finite, got ", value);
}

bool scale_by_dim(const char* op, c10::string_view scaling) {
  if (scaling == "none") return false;
  if (scaling == "dim") return true;
  TORCH_CHECK_VALUE(false, op, ": sigma_scaling must be 'none' or 'dim', got '", std::string(scaling), "'");
}

void check_estimator_size(Estimator estimator, int64_t m) {
  TORCH_CHECK_VALUE(estimator != Estimator::kUnbiased || m >= 4,
                    "hsic: the unbiased estimator needs at least 4 samples, got m = ", m);
}

void check_modulator(const char* op, const at::Tensor& modulator, const at::Tensor& z, const char* z_name) {
  check_floating(op, modulator, "modulator");
  TORCH_CHECK(modulator.device() == z.device(), op, ": modulator is on ", modulator.device(), " but ", z_name,
              " is on ", z.device());
  TORCH_CHECK_VALUE(modulator.dim() == 2 && modulator.size(0) == modulator.size(1), op,
                    ": modulator must be a square [m, m] matrix, got shape ", modulator.sizes());
  TORCH_CHECK_VALUE(modulator.size(0) == z.size(0), op, ": modulator is for batch size ", modulator.size(0), " but ",
                    z_name, " has batch size ", z.size(0));
}

// ---- helpers

at::Tensor to_compute(const at::Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t; }

at::Tensor rows_of(const at::Tensor& z) { return to_compute(z).reshape({z.size(0), -1}).contiguous(); }

double kernel_scale(KernelKind kind, double sigma, bool by_dim, int64_t d) {
  const double dim = by_dim ? static_cast<double>(d) : 1.0;
  return kind == KernelKind::kLaplacian ? 1.0 / (sigma * std::sqrt(dim)) : 1.0 / (2.0 * sigma * sigma * dim);
}

namespace {

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

}  // namespace

at::Tensor gram_of(const at::Tensor& rows) {
  at::Tensor out = at::empty({rows.size(0), rows.size(0)}, rows.options());
  gram_into(rows, out);
  return out;
}

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

void small_by_wide_over(const at::Tensor& s, const at::Tensor& rows) {
  // S·Z's column block j needs only Z's column block j: each is formed as
  // small_by_wide forms it, then copied over Z's.
  const int64_t d = rows.size(1);
  if (d <= 2 * kColumnBlock) {
    rows.copy_(at::mm(s, rows));
    return;
  }
  at::Tensor block = at::empty({s.size(0), kColumnBlock}, rows.options());
  for (int64_t j = 0; j < d; j += kColumnBlock) {
    const int64_t width = std::min(kColumnBlock, d - j);
    at::Tensor out = block.narrow(1, 0, width);
    at::mm_out(out, s, rows.narrow(1, j, width));
    rows.narrow(1, j, width).copy_(out);
  }
}

}  // namespace hsic
}  // namespace pysnn
