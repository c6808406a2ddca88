// SPDX-License-Identifier: Apache-2.0
// Layer: include/. The DSpark sequential draft step (docs/algorithms.md section 2.4):
// x_k ~ softmax((U_k + B(x_{k-1})) / T) with the vanilla Markov bias B(x) = W2 . W1[x], plus the
// confidence head c_k = sigmoid(w . [h_k ; W1[x_{k-1}]] + b). Shared by the CPU and CUDA backends.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"
#include "dspark/math.h"

namespace dspark {

/// Inputs and outputs of one fused draft step over a batch (pointers on one device).
struct DraftStepParams {
  const void* base_logits = nullptr;  // U [R, G, V]
  DType base_dtype = DType::kFloat32;
  int64_t base_stride_r = 0, base_stride_g = 0;
  const void* w1 = nullptr;  // [V, r] (nn.Embedding weight)
  const void* w2 = nullptr;  // [V, r] (nn.Linear(r, V) weight: row v is the bias direction of v)
  DType w_dtype = DType::kFloat32;
  const void* anchors = nullptr;  // [R] int32 or int64
  bool anchors_int64 = false;
  const float* temperature = nullptr;  // [R] or nullptr (greedy)
  const int64_t* seed = nullptr;       // [R]
  const int64_t* offset = nullptr;     // [R]
  const void* hidden = nullptr;        // [R, G, d] or nullptr (no confidence head)
  DType hidden_dtype = DType::kFloat32;
  int64_t hidden_stride_r = 0, hidden_stride_g = 0;
  const float* conf_weight = nullptr;  // [d + r] float32
  float conf_bias = 0.0f;
  int32_t num_requests = 0, steps = 0, vocab_size = 0, rank = 0, hidden_size = 0;
  int32_t candidates = 0;  // 0: exact (bias for every token); K > 0: top-K of U_k only
  // outputs
  int32_t* tokens = nullptr;       // [R, G]
  float* draft_logits = nullptr;   // [R, G, V]: the logits actually sampled from, (U + B) / T
  float* confidence = nullptr;     // [R, G] or nullptr
  int64_t* next_offset = nullptr;  // [R]
};

/// Philox "node" of draft position k: negative, so it never collides with verify's nodes (>= -1)
/// even when the caller reuses a (seed, offset) pair.
DSPARK_HOST_DEVICE int32_t draft_race_node(int32_t k) { return -2 - k; }

/// Dot product of two rank-r rows (float accumulation in index order).
template <typename T>
DSPARK_HOST_DEVICE float row_dot(const T* a, const T* b, int32_t r) {
  float s = 0.0f;
  for (int32_t j = 0; j < r; ++j) s += load_float(a, j) * load_float(b, j);
  return s;
}

/// c_k = sigmoid(w[:d] . h_k + w[d:] . W1[x_{k-1}] + b).
template <typename TH, typename TW>
DSPARK_HOST_DEVICE float confidence_value(const TH* h, const TW* w1_row, const float* w, float b,
                                          int32_t d, int32_t r) {
  float s = b;
  for (int32_t j = 0; j < d; ++j) s += w[j] * load_float(h, j);
  for (int32_t j = 0; j < r; ++j) s += w[d + j] * load_float(w1_row, j);
  return 1.0f / (1.0f + dexp(-s));
}

}  // namespace dspark
