#pragma once
// Marks per-element math that both the CPU kernels (plain C++) and the CUDA
// kernels (nvcc) compile, so the CPU tests exercise the math the GPU runs.
#if defined(__CUDACC__)
#define PYSNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PYSNN_HOST_DEVICE inline
#endif

// Compiles a CPU loop for the baseline ISA, x86-64-v3 (AVX2 + FMA) and v4
// (AVX-512); the loader picks the best one the CPU has. Products and sums are
// never fused (-ffp-contract=off), so every clone rounds alike; the FMA is
// there for math::fma, which is exact in all of them (a libm call in the
// baseline clone). GCC before 12 cannot dispatch on x86-64 levels.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__CUDACC__) && __GNUC__ >= 12
#define PYSNN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__CUDACC__)
#define PYSNN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PYSNN_CPU_CLONES
#endif
