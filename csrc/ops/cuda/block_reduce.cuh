#pragma once
// Sum over a thread block: warp shuffles, then one warp over the warp sums.

namespace pysnn {
namespace cuda {

constexpr int kWarpSize = 32;

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// The block's sum, valid in thread 0. `shared` holds blockDim.x / 32 values;
// the call ends with a barrier so `shared` can be reused at once.
template <typename T>
__device__ __forceinline__ T block_sum(T value, T* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  value = threadIdx.x < blockDim.x / kWarpSize ? shared[lane] : T(0);
  if (warp == 0) value = warp_sum(value);
  __syncthreads();
  return value;
}

}  // namespace cuda
}  // namespace pysnn
