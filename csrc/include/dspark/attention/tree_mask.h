// SPDX-License-Identifier: Apache-2.0
// Layer: include/ (header-only, host + device). Visibility rules of verification attention and the
// online-softmax algebra, shared by the CPU and CUDA backends.
//
// Request r has qo_len queries at cache slots [prefix, kv_len) with prefix = kv_len - qo_len.
// Query i sees every prefix slot and the query slots of itself and its ancestors (parents[i] < i,
// -1 = no parent among the queries); with no parents it is causal (j <= i). Logical positions
// are pos(prefix slot k) = k and pos(query j) = prefix + depth(j), so a sliding window compares
// depths inside the tree (docs/verify_batch.md section 5: positions = prefix_len + depth).
#pragma once
#include <cstdint>

#include "dspark/macros.h"
#include "dspark/math.h"

namespace dspark::attn {

/// True when local query j is i or an ancestor of i. `parents` is the request's local array
/// (nullptr = causal). Walks up from i; an invalid link (parents[a] >= a) ends the walk, so a bad
/// tree can never index out of range (the host validates trees before launch).
DSPARK_HOST_DEVICE bool is_ancestor_or_self(const int32_t* parents, int32_t i, int32_t j) {
  if (parents == nullptr) return j <= i;
  int32_t a = i;
  while (a > j) {
    const int32_t p = parents[a];
    a = p < a ? p : -1;
  }
  return a == j;
}

/// Depth of local query i: 0 when it has no parent among the queries (causal: i).
DSPARK_HOST_DEVICE int32_t tree_depth(const int32_t* parents, int32_t i) {
  if (parents == nullptr) return i;
  int32_t d = 0;
  for (int32_t a = i; a >= 0; ++d) {
    const int32_t p = parents[a];
    if (p < 0 || p >= a) break;
    a = p;
  }
  return d;
}

/// Number of 32-bit mask words for requests of up to `max_qo_len` queries.
DSPARK_HOST_DEVICE int32_t mask_words(int32_t max_qo_len) { return (max_qo_len + 31) / 32; }

/// Ancestor bitmask of query i (bit j of word j / 32 set when j is visible), built from the rows
/// of its parent: `words` holds n rows of `w` words and rows < i are already filled.
DSPARK_HOST_DEVICE void ancestor_words_row(const int32_t* parents, int32_t i, int32_t w,
                                           uint32_t* words) {
  uint32_t* row = words + int64_t(i) * w;
  const int32_t p = parents == nullptr ? i - 1 : parents[i];
  for (int32_t k = 0; k < w; ++k) row[k] = (p >= 0 && p < i) ? words[int64_t(p) * w + k] : 0u;
  row[i >> 5] |= 1u << (i & 31);
}

/// Whether a bitmask row has bit j.
DSPARK_HOST_DEVICE bool mask_bit(const uint32_t* row, int32_t j) {
  return (row[j >> 5] >> (j & 31)) & 1u;
}

/// First prefix slot a query at logical position `pos_q` may see under the window (0 = all).
DSPARK_HOST_DEVICE int32_t window_first_slot(int32_t pos_q, int32_t window_left) {
  return window_left < 0 ? 0 : (pos_q - window_left > 0 ? pos_q - window_left : 0);
}

/// tanh via dexp (vectorisable, identical on host and device): 1 - 2 / (e^{2y} + 1).
DSPARK_HOST_DEVICE float dtanh(float y) { return 1.0f - 2.0f / (dexp(2.0f * y) + 1.0f); }

/// Gemma's logit soft-cap: cap * tanh(x / cap); cap <= 0 disables it.
DSPARK_HOST_DEVICE float soft_cap(float x, float cap) {
  return cap > 0.0f ? cap * dtanh(x / cap) : x;
}

/// Running state of an online softmax (FlashAttention): max m and sum l of e^{x - m}.
struct SoftmaxState {
  float m = kNegInf;
  float l = 0.0f;
};

/// Factor that rescales the old accumulator when the running max moves from m_old to m_new.
DSPARK_HOST_DEVICE float rescale_factor(float m_old, float m_new) {
  return m_old == kNegInf ? 0.0f : dexp(m_old - m_new);
}

/// log-sum-exp of a finished state (-inf when nothing was visible).
DSPARK_HOST_DEVICE float state_lse(const SoftmaxState& s) {
  return s.l > 0.0f ? s.m + dlog(s.l) : kNegInf;
}

/// Weight of a partial result with log-sum-exp `lse_part` inside the merged `lse_total`
/// (split-KV combine: out = sum_i w_i * out_i, w_i = e^{lse_i - lse_total}).
DSPARK_HOST_DEVICE float merge_weight(float lse_part, float lse_total) {
  return lse_part == kNegInf ? 0.0f : dexp(lse_part - lse_total);
}

}  // namespace dspark::attn
