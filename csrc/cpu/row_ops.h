// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. Vectorisable whole-row loops used by the CPU backends (compiled once per ISA).
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "dspark/dtype.h"
#include "dspark/math.h"
#include "dspark/verify/sampling.h"

// Per-ISA copies: this header is only included by the ISA-variant TUs (see CMakeLists.txt).
namespace dspark::cpu::DSPARK_CPU_ISA_NS {

constexpr int32_t kChunk = 2048;  // L1-sized chunk for the max / argmax scan

/// Maximum of a row and the lowest index where it occurs (NaNs are skipped).
template <typename T>
inline void row_max_argmax(const T* x, int32_t n, float& max_out, int32_t& arg_out) {
  float m = kNegInf;
  int32_t arg = 0;
  for (int32_t c0 = 0; c0 < n; c0 += kChunk) {
    const int32_t c1 = std::min(n, c0 + kChunk);
    float cm = kNegInf;
#pragma omp simd reduction(max : cm)
    for (int32_t v = c0; v < c1; ++v) cm = std::max(cm, load_float(x, v));
    if (cm > m) {
      m = cm;
      for (int32_t v = c0; v < c1; ++v)
        if (load_float(x, v) == cm) {
          arg = v;
          break;
        }
    }
  }
  max_out = m;
  arg_out = arg;
}

/// Sum over [lo, hi) of f(v); f must be a simple inlinable expression for vectorisation.
template <typename F>
inline float range_sum(int32_t lo, int32_t hi, F&& f) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int32_t v = lo; v < hi; ++v) s += f(v);
  return s;
}

/// Sum over the whole row in chunks (pairwise across chunks keeps float error small).
template <typename F>
inline double row_sum(int32_t n, F&& f) {
  double s = 0.0;
  for (int32_t c0 = 0; c0 < n; c0 += kChunk) s += range_sum(c0, std::min(n, c0 + kChunk), f);
  return s;
}

/// Largest t with count(w >= t) >= k (the k-th largest value), 1 <= k <= n. Destroys `w`.
inline float top_k_threshold(std::vector<float>& w, int64_t k) {
  std::nth_element(w.begin(), w.begin() + (k - 1), w.end(), std::greater<float>());
  return w[k - 1];
}

/// Largest t with sum(w[w >= t]) >= target (tie-inclusive top-p cut). Destroys `w[0, n)`.
/// Expected O(n): three-way quickselect on mass.
inline float top_p_threshold(float* w, int64_t n, double target) {
  double above = 0.0;
  int64_t lo = 0, hi = n;
  while (hi > lo) {
    const float a = w[lo], b = w[lo + (hi - lo) / 2], c = w[hi - 1];
    const float pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));  // median of 3
    // Partition [lo, hi) into  > pivot | == pivot | < pivot.
    int64_t gt = lo, i = lo, lt = hi;
    double gt_sum = 0.0, eq_sum = 0.0;
    while (i < lt) {
      const float x = w[i];
      if (x > pivot) {
        gt_sum += x;
        std::swap(w[gt++], w[i++]);
      } else if (x < pivot) {
        std::swap(w[i], w[--lt]);
      } else {
        eq_sum += x;
        ++i;
      }
    }
    if (above + gt_sum >= target && gt > lo) {
      hi = gt;
    } else if (above + gt_sum + eq_sum >= target) {
      return pivot;
    } else {
      above += gt_sum + eq_sum;
      lo = lt;
    }
  }
  return 0.0f;  // rounding left the target out of reach: keep everything
}

/// Two-level exponential race (docs/verify_batch.md section 1, principle 5): the block of
/// kRaceBlock tokens with the largest mass / E_b, then the token with the largest weight / E_v
/// inside it (lowest index on ties). block_mass(lo, hi) and weight(v) may be unnormalised. Returns
/// -1 when no block has mass.
template <typename BlockMass, typename Weight>
int32_t race_sample(int32_t V, uint64_t seed, uint64_t offset, int32_t node, BlockMass&& block_mass,
                    Weight&& weight) {
  float best_key = 0.0f, key;
  int32_t best_block = -1;
  for (int32_t b = 0, lo = 0; lo < V; ++b, lo += kRaceBlock) {
    if (race_better(block_mass(lo, std::min(V, lo + kRaceBlock)),
                    block_exponential(seed, offset, node, b), best_key, key)) {
      best_key = key;
      best_block = b;
    }
  }
  if (best_block < 0) return -1;
  const int32_t lo = best_block * kRaceBlock, hi = std::min(V, lo + kRaceBlock);
  int32_t best = lo;
  best_key = 0.0f;
  float e[4];
  for (int32_t v = lo; v < hi; ++v) {
    if ((v & 3) == 0 || v == lo) token_exponentials(seed, offset, node, uint32_t(v) >> 2, e);
    if (race_better(weight(v), e[v & 3], best_key, key)) {
      best_key = key;
      best = v;
    }
  }
  return best;
}

}  // namespace dspark::cpu::DSPARK_CPU_ISA_NS
