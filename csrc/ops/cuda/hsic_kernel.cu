// CUDA kernels of the HSIC ops' elementwise and reduction work (see
// csrc/ops/hsic.h): one pass over an [m, m] matrix each; the row reductions
// use one block per row.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/cuda_helpers.h"
#include "ops/hsic_common.h"

namespace pysnn {
namespace hsic {
namespace {

template <KernelKind kind, typename T>
__global__ void kernel_from_gram_kernel(const T* __restrict__ gram, T* __restrict__ out, int64_t m, T a, T b) {
  PYSNN_CUDA_1D_KERNEL_LOOP(idx, m * m) {
    const int64_t i = idx / m, j = idx % m;
    out[idx] = kernel_value<kind>(gram[i * m + i], gram[j * m + j], gram[idx], i == j, a, b);
  }
}

template <typename T>
__global__ void gaussian_weighted_kernel(const T* __restrict__ gram, const T* __restrict__ modulator,
                                         T* __restrict__ weighted, T* __restrict__ row_sums, int64_t m, T scale) {
  __shared__ T shared[cuda::kThreads / cuda::kWarpSize];
  const int64_t i = blockIdx.x;
  const T norm_i = gram[i * m + i];
  T sum = 0;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    const int64_t idx = i * m + j;
    const T value = gaussian_weighted_entry(modulator[idx], norm_i, gram[j * m + j], gram[idx], i == j, scale);
    weighted[idx] = value;
    sum += value;
  }
  sum = cuda::block_sum(sum, shared);
  if (threadIdx.x == 0) row_sums[i] = sum;
}

template <typename T>
__global__ void row_moments_kernel(const T* __restrict__ k, const T* __restrict__ l, T* __restrict__ row_k,
                                   T* __restrict__ row_l, T* __restrict__ row_kl, int64_t m) {
  __shared__ T shared[cuda::kThreads / cuda::kWarpSize];
  const int64_t i = blockIdx.x;
  T sk = 0, sl = 0, skl = 0;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    const T kv = k[i * m + j], lv = l[i * m + j];
    sk += kv;
    sl += lv;
    skl += kv * lv;
  }
  sk = cuda::block_sum(sk, shared);
  sl = cuda::block_sum(sl, shared);
  skl = cuda::block_sum(skl, shared);
  if (threadIdx.x == 0) {
    row_k[i] = sk;
    row_l[i] = sl;
    row_kl[i] = skl;
  }
}

template <Estimator estimator, typename T>
__global__ void centre_kernel(const T* __restrict__ d, const T* __restrict__ row_sums, const T* __restrict__ total,
                              T* __restrict__ out, int64_t m) {
  const T size = static_cast<T>(m);
  const T sum = *total;
  PYSNN_CUDA_1D_KERNEL_LOOP(idx, m * m) {
    const int64_t i = idx / m, j = idx % m;
    out[idx] = centred_entry<estimator>(d[idx], row_sums[i], row_sums[j], sum, i == j, size);
  }
}

at::Tensor kernel_from_gram_cuda(const at::Tensor& gram_, c10::string_view kind_name, double a, double b) {
  check_kernel_from_gram(gram_, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard device_guard(gram_.device());
  const at::Tensor gram = gram_.contiguous();
  const int64_t m = gram.size(0);
  at::Tensor out = at::empty_like(gram);
  if (m == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "_kernel_from_gram_cuda", [&] {
    dispatch_kernel_kind(parse_kernel_kind(kind_name), [&](auto kind) {
      kernel_from_gram_kernel<decltype(kind)::value, scalar_t><<<cuda::num_blocks(m * m), cuda::kThreads, 0, stream>>>(
          gram.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), m, static_cast<scalar_t>(a),
          static_cast<scalar_t>(b));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gaussian_weighted_cuda(const at::Tensor& gram_, const at::Tensor& modulator_,
                                                          double scale) {
  check_gaussian_weighted(gram_, modulator_, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard device_guard(gram_.device());
  const at::Tensor gram = gram_.contiguous(), modulator = modulator_.contiguous();
  const int64_t m = gram.size(0);
  at::Tensor weighted = at::empty_like(gram);
  at::Tensor row_sums = at::empty({m}, gram.options());
  if (m == 0) return {weighted, row_sums};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "_gaussian_weighted_cuda", [&] {
    gaussian_weighted_kernel<scalar_t><<<m, cuda::kThreads, 0, stream>>>(
        gram.const_data_ptr<scalar_t>(), modulator.const_data_ptr<scalar_t>(), weighted.data_ptr<scalar_t>(),
        row_sums.data_ptr<scalar_t>(), m, static_cast<scalar_t>(scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {weighted, row_sums};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> row_moments_cuda(const at::Tensor& k_, const at::Tensor& l_) {
  check_row_moments(k_, l_, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard device_guard(k_.device());
  const at::Tensor k = k_.contiguous(), l = l_.contiguous();
  const int64_t m = k.size(0);
  at::Tensor row_k = at::empty({m}, k.options()), row_l = at::empty({m}, k.options()),
             row_kl = at::empty({m}, k.options());
  if (m == 0) return {row_k, row_l, row_kl};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "_row_moments_cuda", [&] {
    row_moments_kernel<scalar_t><<<m, cuda::kThreads, 0, stream>>>(
        k.const_data_ptr<scalar_t>(), l.const_data_ptr<scalar_t>(), row_k.data_ptr<scalar_t>(),
        row_l.data_ptr<scalar_t>(), row_kl.data_ptr<scalar_t>(), m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {row_k, row_l, row_kl};
}

at::Tensor centre_cuda(const at::Tensor& d_, const at::Tensor& row_sums_, const at::Tensor& total_,
                       c10::string_view estimator_name) {
  check_centre(d_, row_sums_, total_, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard device_guard(d_.device());
  const at::Tensor d = d_.contiguous();
  const int64_t m = d.size(0);
  const at::Tensor row_sums = row_sums_.to(d.scalar_type()).contiguous();
  const at::Tensor total = total_.to(d.scalar_type()).contiguous();
  at::Tensor out = at::empty_like(d);
  if (m == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "_centre_cuda", [&] {
    dispatch_estimator(parse_estimator(estimator_name), [&](auto estimator) {
      centre_kernel<decltype(estimator)::value, scalar_t><<<cuda::num_blocks(m * m), cuda::kThreads, 0, stream>>>(
          d.const_data_ptr<scalar_t>(), row_sums.const_data_ptr<scalar_t>(), total.const_data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), m);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

// On tensor cores the dense GEMM wins: one cuBLAS call on the current stream.
at::Tensor spike_mm_cuda(const at::Tensor& a, const at::Tensor& spikes) {
  check_spike_mm(a, spikes, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard device_guard(a.device());
  return at::mm(a.t(), spikes);
}

}  // namespace
}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CUDA, m) {
  m.impl("_spike_mm", &pysnn::hsic::spike_mm_cuda);
  m.impl("_kernel_from_gram", &pysnn::hsic::kernel_from_gram_cuda);
  m.impl("_gaussian_weighted", &pysnn::hsic::gaussian_weighted_cuda);
  m.impl("_row_moments", &pysnn::hsic::row_moments_cuda);
  m.impl("_centre", &pysnn::hsic::centre_cuda);
}
