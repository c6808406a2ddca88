// SPDX-License-Identifier: Apache-2.0
// Layer: include/. Philox4x32-10 (Salmon et al., SC'11), host+device, with a portable mulhi so the
// CPU and CUDA backends draw bit-identical numbers for the same (key, counter).
#pragma once
#include <cstdint>

#include "dspark/macros.h"

namespace dspark {

struct Philox4 {
  uint32_t v[4];
};

DSPARK_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

/// Philox4x32 with 10 rounds: 4 independent 32-bit words per (counter, key).
DSPARK_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                         uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, hi0, lo0);
    philox_mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

/// 24-bit uniform in [0, 1): exact in float, identical on every backend.
DSPARK_HOST_DEVICE float uniform_open1(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

/// 24-bit uniform in (0, 1): never 0 or 1, for logarithms.
DSPARK_HOST_DEVICE float uniform_open01(uint32_t x) {
  return (float(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

}  // namespace dspark
