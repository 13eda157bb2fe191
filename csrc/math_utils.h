#pragma once
// Elementary functions written without branches or library calls, so GCC
// vectorises the CPU loops that use them (glibc's expf is only vectorised
// under -ffast-math, which would also reorder the LIF arithmetic). The CUDA
// kernels run the same code.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "macros.h"

namespace pysnn {
namespace math {

PYSNN_HOST_DEVICE float int_bits_to_float(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// a * b + c rounded once. Exact everywhere, so results do not depend on
// which CPU clone or GPU computed them; one instruction where the CPU clone
// has FMA and on the GPU.
PYSNN_HOST_DEVICE float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// e^x for float, within 2 ulp of expf on [-87.3, 88.3] (clamped outside, so
// never inf or NaN for finite x): x = n·ln2 + r, |r| <= ln2/2, then a degree-7
// polynomial for e^r (Cephes' expf coefficients, Horner's rule in FMAs)
// scaled by 2^n.
PYSNN_HOST_DEVICE float exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = fma(x, kLog2e, kRound) - kRound;
  const float r = fma(-n, kLn2Lo, fma(-n, kLn2Hi, x));
  float p = 1.9875691500e-4f;
  p = fma(p, r, 1.3981999507e-3f);
  p = fma(p, r, 8.3334519073e-3f);
  p = fma(p, r, 4.1665795894e-2f);
  p = fma(p, r, 1.6666665459e-1f);
  p = fma(p, r, 5.0000001201e-1f);
  p = fma(p * r, r, r + 1.0f);
  return p * int_bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

PYSNN_HOST_DEVICE double exp(double x) { return std::exp(x); }

}  // namespace math
}  // namespace pysnn
