#pragma once
// Launch constants and the grid-stride loop every pysnn CUDA kernel uses.
#include <algorithm>
#include <cstdint>

namespace pysnn {
namespace cuda {

// Threads per block of every kernel (block_sum's shared arrays are sized by it).
constexpr int kThreads = 256;

// Blocks for n independent elements, one per thread, capped: the kernels
// stride over the rest (PYSNN_CUDA_1D_KERNEL_LOOP).
inline int64_t num_blocks(int64_t n) { return std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20); }

}  // namespace cuda
}  // namespace pysnn

// for (i = this thread's first element; i < n; i += all threads of the grid)
#define PYSNN_CUDA_1D_KERNEL_LOOP(i, n)                                                  \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
