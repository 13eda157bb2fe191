#pragma once
// Marks per-element math that both the CPU kernels (plain C++) and the CUDA
// kernels (nvcc) compile, so the CPU tests exercise the math the GPU runs.
#if defined(__CUDACC__)
#define PYSNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PYSNN_HOST_DEVICE inline
#endif
