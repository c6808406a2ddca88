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

#include "dspark/verify/sampling.h"

namespace dspark::cuda {

/// The two-level exponential race of verify_batch run by a whole CTA (every thread gets the
/// result): block_mass(lo, hi) must already be CTA-reduced, weight(v) is per element. Returns -1
/// when no block has mass.
template <int kThreads, typename BlockMass, typename Weight>
__device__ int32_t race_sample_cta(BlockReduce<kThreads>& red, int32_t V, uint64_t seed,
                                   uint64_t offset, int32_t node, BlockMass block_mass,
                                   Weight weight) {
  float best_key = 0.0f, key;
  int32_t best_block = -1;
  for (int32_t b = 0, lo = 0; lo < V; ++b, lo += kRaceBlock) {
    if (race_better(block_mass(lo, min(V, lo + kRaceBlock)),
                    block_exponential(seed, offset, node, b), best_key, key)) {
      best_key = key;
      best_block = b;
    }
  }
  if (best_block < 0) return -1;
  const int32_t lo = best_block * kRaceBlock, hi = min(V, lo + kRaceBlock);
  float tkey = 0.0f;
  int32_t tbest = 0x7fffffff;
  for (int32_t v = lo + threadIdx.x; v < hi; v += kThreads) {
    float e[4];
    token_exponentials(seed, offset, node, uint32_t(v) >> 2, e);
    if (race_better(weight(v), e[v & 3], tkey, key)) {
      tkey = key;
      tbest = v;
    }
  }
  red.argmax(tkey, tbest);
  return tbest == 0x7fffffff ? lo : tbest;
}

}  // namespace dspark::cuda
