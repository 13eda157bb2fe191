#pragma once
// Marks per-element math that both the CPU kernels (plain C++) and the CUDA
// kernels (nvcc) compile, so the CPU tests exercise the math the GPU runs.
#if defined(__CUDACC__)
#define PYSNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PYSNN_HOST_DEVICE inline
#endif

// Compiles a CPU loop for the baseline ISA, AVX2 and AVX-512 (neither implies
// FMA, so results are identical to the baseline's); the loader picks the best
// one the CPU has.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__CUDACC__)
#define PYSNN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PYSNN_CPU_CLONES
#endif
