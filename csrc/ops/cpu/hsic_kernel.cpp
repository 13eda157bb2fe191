// CPU kernels of the HSIC ops' elementwise and reduction work: each is one
// pass over an [m, m] matrix, parallel over rows (see csrc/ops/hsic.h).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "macros.h"
#include "ops/hsic_common.h"

namespace pysnn {
namespace hsic {
namespace {

constexpr int64_t kRowGrain = 8;

// Rows [begin, end) of the kernel matrix from the Gram matrix.
template <KernelKind kind, typename scalar_t>
PYSNN_CPU_CLONES void kernel_rows(const scalar_t* g, int64_t m, int64_t begin, int64_t end, scalar_t a, scalar_t b,
                                  scalar_t* k) {
  for (int64_t i = begin; i < end; ++i) {
    const scalar_t norm_i = g[i * m + i];
    for (int64_t j = 0; j < m; ++j) {
      k[i * m + j] = kernel_value<kind>(norm_i, g[j * m + j], g[i * m + j], i == j, a, b);
    }
  }
}

at::Tensor kernel_from_gram_cpu(const at::Tensor& gram_, c10::string_view kind_name, double a_, double b_) {
  check_kernel_from_gram(gram_, c10::DeviceType::CPU);
  const at::Tensor gram = gram_.contiguous();
  const int64_t m = gram.size(0);
  at::Tensor out = at::empty_like(gram);
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "_kernel_from_gram_cpu", [&] {
    const scalar_t* g = gram.const_data_ptr<scalar_t>();
    scalar_t* k = out.data_ptr<scalar_t>();
    const scalar_t a = static_cast<scalar_t>(a_), b = static_cast<scalar_t>(b_);
    dispatch_kernel_kind(parse_kernel_kind(kind_name), [&](auto kind) {
      at::parallel_for(0, m, kRowGrain, [&](int64_t begin, int64_t end) {
        kernel_rows<decltype(kind)::value>(g, m, begin, end, a, b, k);
      });
    });
  });
  return out;
}

// Row i of A = M ∘ Kz off the diagonal, from the row of the Gram matrix and the
// squared norms; a straight, vectorisable loop (the diagonal is set after it).
template <typename scalar_t>
PYSNN_CPU_CLONES void gaussian_weighted_row(const scalar_t* modulator, const scalar_t* gram, const scalar_t* norms,
                                            scalar_t norm_i, scalar_t scale, int64_t m, scalar_t* out) {
  for (int64_t j = 0; j < m; ++j) {
    out[j] = gaussian_weighted_entry(modulator[j], norm_i, norms[j], gram[j], false, scale);
  }
}

// Σ_j row[j] with eight partial sums, so it vectorises.
template <typename scalar_t>
PYSNN_CPU_CLONES scalar_t row_sum(const scalar_t* row, int64_t m) {
  scalar_t partial[8] = {};
  int64_t j = 0;
  for (; j + 8 <= m; j += 8) {
    for (int q = 0; q < 8; ++q)
      partial[q] += row[j + q];
  }
  scalar_t sum = 0;
  for (; j < m; ++j)
    sum += row[j];
  for (int q = 0; q < 8; ++q)
    sum += partial[q];
  return sum;
}

std::tuple<at::Tensor, at::Tensor> gaussian_weighted_cpu(const at::Tensor& gram_, const at::Tensor& modulator_,
                                                         double scale_) {
  check_gaussian_weighted(gram_, modulator_, c10::DeviceType::CPU);
  const at::Tensor gram = gram_.contiguous(), modulator = modulator_.contiguous();
  const at::Tensor norms = gram.diagonal().contiguous();
  const int64_t m = gram.size(0);
  at::Tensor weighted = at::empty_like(gram);
  at::Tensor row_sums = at::empty({m}, gram.options());
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "_gaussian_weighted_cpu", [&] {
    const scalar_t* g = gram.const_data_ptr<scalar_t>();
    const scalar_t* mod = modulator.const_data_ptr<scalar_t>();
    const scalar_t* n = norms.const_data_ptr<scalar_t>();
    scalar_t* w = weighted.data_ptr<scalar_t>();
    scalar_t* rows = row_sums.data_ptr<scalar_t>();
    const scalar_t scale = static_cast<scalar_t>(scale_);
    at::parallel_for(0, m, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t* row = w + i * m;
        gaussian_weighted_row(mod + i * m, g + i * m, n, n[i], scale, m, row);
        row[i] = gaussian_weighted_entry(mod[i * m + i], n[i], n[i], g[i * m + i], true, scale);
        rows[i] = row_sum(row, m);
      }
    });
  });
  return {weighted, row_sums};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> row_moments_cpu(const at::Tensor& k_, const at::Tensor& l_) {
  check_row_moments(k_, l_, c10::DeviceType::CPU);
  const at::Tensor k = k_.contiguous(), l = l_.contiguous();
  const int64_t m = k.size(0);
  at::Tensor row_k = at::empty({m}, k.options()), row_l = at::empty({m}, k.options()),
             row_kl = at::empty({m}, k.options());
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "_row_moments_cpu", [&] {
    const scalar_t* kp = k.const_data_ptr<scalar_t>();
    const scalar_t* lp = l.const_data_ptr<scalar_t>();
    scalar_t *rk = row_k.data_ptr<scalar_t>(), *rl = row_l.data_ptr<scalar_t>(), *rkl = row_kl.data_ptr<scalar_t>();
    at::parallel_for(0, m, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t sk = 0, sl = 0, skl = 0;
        for (int64_t j = 0; j < m; ++j) {
          const scalar_t kv = kp[i * m + j], lv = lp[i * m + j];
          sk += kv;
          sl += lv;
          skl += kv * lv;
        }
        rk[i] = sk;
        rl[i] = sl;
        rkl[i] = skl;
      }
    });
  });
  return {row_k, row_l, row_kl};
}

at::Tensor centre_cpu(const at::Tensor& d_, const at::Tensor& row_sums_, const at::Tensor& total_,
                      c10::string_view estimator_name) {
  check_centre(d_, row_sums_, total_, c10::DeviceType::CPU);
  const at::Tensor d = d_.contiguous();
  const int64_t m = d.size(0);
  const at::Tensor row_sums = row_sums_.to(d.scalar_type()).contiguous();
  at::Tensor out = at::empty_like(d);
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "_centre_cpu", [&] {
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* rows = row_sums.const_data_ptr<scalar_t>();
    const scalar_t total = total_.item<scalar_t>();
    const scalar_t size = static_cast<scalar_t>(m);
    scalar_t* o = out.data_ptr<scalar_t>();
    dispatch_estimator(parse_estimator(estimator_name), [&](auto estimator) {
      at::parallel_for(0, m, kRowGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          for (int64_t j = 0; j < m; ++j) {
            o[i * m + j] =
                centred_entry<decltype(estimator)::value>(dp[i * m + j], rows[i], rows[j], total, i == j, size);
          }
        }
      });
    });
  });
  return out;
}

}  // namespace
}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CPU, m) {
  m.impl("_kernel_from_gram", &pysnn::hsic::kernel_from_gram_cpu);
  m.impl("_gaussian_weighted", &pysnn::hsic::gaussian_weighted_cpu);
  m.impl("_row_moments", &pysnn::hsic::row_moments_cpu);
  m.impl("_centre", &pysnn::hsic::centre_cpu);
}
