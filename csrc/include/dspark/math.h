// SPDX-License-Identifier: Apache-2.0
// Layer: include/. exp and log written with plain arithmetic so that (1) GCC vectorises loops that
// call them and (2) the CPU and CUDA backends compute bit-identical values (both are built without
// floating-point contraction: -ffp-contract=off / --fmad=false). Max error about 2 ulp.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"
#include "dspark/macros.h"

namespace dspark {

constexpr float kNegInf = -__builtin_huge_valf();
constexpr float kInf = __builtin_huge_valf();

/// Branch-free select on raw bits: mask is all ones (take a) or all zeros (take b).
DSPARK_HOST_DEVICE float select_bits(uint32_t mask, float a, float b) {
  return bits_to_float((float_to_bits(a) & mask) | (float_to_bits(b) & ~mask));
}

/// All-ones when cond holds (vectorises to a compare, unlike a ?: on floats that GCC may branch
/// on).
DSPARK_HOST_DEVICE uint32_t mask_if(bool cond) { return 0u - uint32_t(cond); }

/// exp(x) for finite or infinite x; NaN propagates. Underflows to 0 below -87.3.
/// Written without branches or ?: on floats so that GCC vectorises loops over it in any context.
DSPARK_HOST_DEVICE float dexp(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.72283f;
  // Clamp with max/min patterns (maxss/minss; NaN becomes kLo here and is restored below).
  float xc = kLo < x ? x : kLo;
  xc = xc < kHi ? xc : kHi;
  // Round x*log2(e) to the nearest integer with the 1.5*2^23 trick (no rint call: vectorisable).
  const float kShift = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  // Cody-Waite reduction with a two-part ln 2.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Minimax polynomial on [-ln2/2, ln2/2] (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = int32_t(float_to_bits(t) - float_to_bits(kShift)) + 127;  // n + 127, >= 1 here
  e = e > 1 ? e : 1;
  float y = p * bits_to_float(uint32_t(e) << 23);
  y = select_bits(mask_if(x < kLo), 0.0f, y);
  y = select_bits(mask_if(x > kHi), kInf, y);
  return select_bits(mask_if(x != x), x, y);
}

/// Natural log for x > 0 (log(0) = -inf, negative or NaN -> NaN, +inf -> +inf).
DSPARK_HOST_DEVICE float dlog(float x) {
  if (!(x > 0.0f)) return x == 0.0f ? kNegInf : bits_to_float(0x7fc00000u);
  if (x == kInf) return kInf;
  uint32_t u = float_to_bits(x);
  int32_t e = 0;
  if (u < 0x00800000u) {  // subnormal: scale up by 2^25
    x *= 33554432.0f;
    u = float_to_bits(x);
    e = -25;
  }
  e += int32_t(u >> 23) - 127;
  float m = bits_to_float((u & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m *= 0.5f;
    e += 1;
  }
  // log(m) for m in [sqrt(1/2), sqrt(2)] via s = (m-1)/(m+1): log m = 2 atanh(s).
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 0.2222222222f;
  p = p * s2 + 0.2857142857f;
  p = p * s2 + 0.4f;
  p = p * s2 + 0.6666666667f;
  p = p * s2 + 2.0f;
  const float fe = float(e);
  return fe * 0.693359375f + (s * p + fe * -2.12194440e-4f);
}

}  // namespace dspark
