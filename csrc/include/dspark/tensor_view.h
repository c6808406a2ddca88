// SPDX-License-Identifier: Apache-2.0
// Layer: include/. A borrowed, framework-free view of a tensor (filled from DLPack in bindings/).
#pragma once
#include <cstdint>

#include "dspark/dtype.h"

namespace dspark {

enum class DeviceType : int32_t { kCPU = 1, kCUDA = 2 };

constexpr int kMaxDims = 6;

/// Non-owning view: data pointer, dtype, device and shape/strides in elements.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  DeviceType device = DeviceType::kCPU;
  int32_t device_id = 0;
  int32_t ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t size(int i) const { return shape[i < 0 ? i + ndim : i]; }
  int64_t stride(int i) const { return strides[i < 0 ? i + ndim : i]; }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

}  // namespace dspark
