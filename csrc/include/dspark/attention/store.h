// SPDX-License-Identifier: Apache-2.0
// Layer: include/. Float -> bf16/f16 stores with round-to-nearest-even, identical on host and
// device (plain integer/float arithmetic, no intrinsics), used to write attention outputs.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"

namespace dspark {

/// float -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN.
DSPARK_HOST_DEVICE uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// float -> IEEE binary16 bits, round to nearest even, overflow to inf, subnormals exact
/// (F. Giesen's float_to_half_fast3_rtne).
DSPARK_HOST_DEVICE uint16_t float_to_half_bits(float f) {
  uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) return uint16_t(sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (u < 0x38800000u) {  // below 2^-14: the float add aligns the mantissa and rounds it
    const float a = bits_to_float(u) + 0.5f;
    return uint16_t(sign | (float_to_bits(a) - 0x3f000000u));
  }
  const uint32_t mant_odd = (u >> 13) & 1u;
  u += 0xc8000fffu + mant_odd;  // rebias the exponent (15 - 127) and round
  return uint16_t(sign | (u >> 13));
}

DSPARK_HOST_DEVICE void store_float(float* p, int64_t i, float x) { p[i] = x; }
DSPARK_HOST_DEVICE void store_float(Half* p, int64_t i, float x) {
  p[i].bits = float_to_half_bits(x);
}
DSPARK_HOST_DEVICE void store_float(BFloat16* p, int64_t i, float x) {
  p[i].bits = float_to_bf16_bits(x);
}

}  // namespace dspark
