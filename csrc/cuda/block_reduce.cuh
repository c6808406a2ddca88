// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CTA-wide reductions whose result every thread receives, summed in a fixed order
// (deterministic for a given launch shape). Shared by the verify and draft-step kernels.
#pragma once
#include <cstdint>

namespace dspark::cuda {

template <int kThreads>
struct BlockReduce {
  static constexpr int kWarps = kThreads / 32;
  float f[kWarps];
  int32_t i[kWarps];

  __device__ float sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) f[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < kWarps; ++w) t += f[w];
    return t;
  }

  /// Maximum value and the lowest index holding it.
  __device__ void argmax(float& v, int32_t& idx) {
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
      if (ov > v || (ov == v && oi < idx)) {
        v = ov;
        idx = oi;
      }
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
      f[threadIdx.x >> 5] = v;
      i[threadIdx.x >> 5] = idx;
    }
    __syncthreads();
    v = f[0];
    idx = i[0];
    for (int w = 1; w < kWarps; ++w)
      if (f[w] > v || (f[w] == v && i[w] < idx)) {
        v = f[w];
        idx = i[w];
      }
  }
};

}  // namespace dspark::cuda
