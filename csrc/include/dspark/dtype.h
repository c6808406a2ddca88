// SPDX-License-Identifier: Apache-2.0
// Layer: include/. Element types and bit-exact float loads shared by the CPU and CUDA backends.
#pragma once
#include <cstdint>
#include <cstring>

#include "dspark/macros.h"

namespace dspark {

/// Element types that cross the binding. Values are stable (they appear in error messages).
/// kUnsupported marks a borrowed tensor of any other dtype, so the op's check can name it.
enum class DType : int32_t {
  kFloat32 = 0,
  kFloat16,
  kBFloat16,
  kInt32,
  kInt64,
  kUInt8,
  kBool,
  kFloat64,
  kUnsupported
};

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kUInt8:
      return "uint8";
    case DType::kBool:
      return "bool";
    case DType::kFloat64:
      return "float64";
    case DType::kUnsupported:
      return "unsupported (not float16/32/64, bfloat16, int32/64, uint8, bool)";
  }
  return "unknown";
}

/// Raw 16-bit storage types; the conversions below are exact and identical on host and device.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

DSPARK_HOST_DEVICE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

DSPARK_HOST_DEVICE uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

/// IEEE binary16 -> binary32, exact (normals, subnormals, inf, nan), branch-light for SIMD.
DSPARK_HOST_DEVICE float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  // Normal/subnormal: shift into place and rebias with a float multiply (2^112), which also
  // normalises subnormals exactly. Inf/NaN (exponent 31) is patched afterwards.
  const uint32_t scaled = float_to_bits(bits_to_float(em << 13) * 5.192296858534828e33f);  // 2^112
  const uint32_t special = (em << 13) | 0x7f800000u;
  const uint32_t mask = 0u - uint32_t(em >= 0x7c00u);  // branch-free select (vectorises)
  return bits_to_float(((special & mask) | (scaled & ~mask)) | sign);
}

/// Loads element i of a typed row as float.
DSPARK_HOST_DEVICE float load_float(const float* p, int64_t i) { return p[i]; }
DSPARK_HOST_DEVICE float load_float(const Half* p, int64_t i) { return half_to_float(p[i].bits); }
DSPARK_HOST_DEVICE float load_float(const BFloat16* p, int64_t i) {
  return bits_to_float(uint32_t(p[i].bits) << 16);
}

}  // namespace dspark

/// Dispatches a floating DType to a C++ type alias `T` (FlashAttention BOOL_SWITCH style).
#define DSPARK_DISPATCH_FLOAT(dtype, T, ...)                       \
  [&] {                                                            \
    switch (dtype) {                                               \
      case ::dspark::DType::kFloat32: {                            \
        using T = float;                                           \
        return __VA_ARGS__();                                      \
      }                                                            \
      case ::dspark::DType::kFloat16: {                            \
        using T = ::dspark::Half;                                  \
        return __VA_ARGS__();                                      \
      }                                                            \
      case ::dspark::DType::kBFloat16: {                           \
        using T = ::dspark::BFloat16;                              \
        return __VA_ARGS__();                                      \
      }                                                            \
      default:                                                     \
        throw std::invalid_argument("unsupported floating dtype"); \
    }                                                              \
  }()
