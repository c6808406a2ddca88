// SPDX-License-Identifier: Apache-2.0
// Layer: include/. The POD handed to both verify backends (built once in ops/verify.cpp).
// Maths: docs/algorithms.md section 1; layout: docs/verify_batch.md section 2.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"

namespace dspark {

/// How the draft distribution q of a node is given.
enum class DraftQ : int32_t { kDeterministic = 0, kProbs = 1, kLogits = 2 };

/// How siblings were drawn from q (only matters for stochastic drafts in trees).
enum class DraftSampling : int32_t { kWithReplacement = 0, kWithoutReplacement = 1 };

/// Residual-sampling blocks: tokens are drawn by an exponential race over fixed blocks of this
/// many tokens (block chosen by its mass, then the token inside it). A property of the algorithm,
/// not a tile size: every backend draws the same token.
constexpr int32_t kRaceBlock = 1024;

/// Most rejected children a single node may see (the residual keeps one step per rejection).
constexpr int32_t kMaxSiblings = 64;

/// Philox counter purposes (counter word 1 = (node + 1) << 2 | purpose).
constexpr uint32_t kPurposeAccept = 0, kPurposeBlockRace = 1, kPurposeTokenRace = 2;

/// All inputs and outputs of one verify_batch call. Pointers are device pointers of one device.
struct VerifyParams {
  // ---- inputs
  const void* target = nullptr;  // [N+R, V] logits or probs
  DType target_dtype = DType::kFloat32;
  int64_t target_row_stride = 0;  // elements
  bool target_is_probs = false;
  const void* draft_tokens = nullptr;  // [N] int32 or int64
  bool draft_tokens_int64 = false;
  const int32_t* draft_indptr = nullptr;  // [R+1]
  const int32_t* parents = nullptr;       // [N] or nullptr (chains)
  const void* draft_q = nullptr;          // [N, V] probs or logits, or nullptr
  DType draft_q_dtype = DType::kFloat32;
  int64_t draft_q_row_stride = 0;
  DraftQ q_kind = DraftQ::kDeterministic;
  DraftSampling sampling = DraftSampling::kWithReplacement;
  const float* temperature = nullptr;  // [R] or nullptr (all greedy); 0 = greedy
  const int32_t* top_k = nullptr;      // [R] or nullptr; <= 0 or >= V disables
  const float* top_p = nullptr;        // [R] or nullptr; 1 disables
  const float* min_p = nullptr;        // [R] or nullptr; 0 disables
  const int64_t* seed = nullptr;       // [R]
  const int64_t* offset = nullptr;     // [R]
  const int32_t* max_emit = nullptr;   // [R] or nullptr
  int32_t num_requests = 0;            // R
  int32_t vocab_size = 0;              // V
  int32_t num_nodes = 0;               // N
  int32_t max_depth = 0;               // D: output width is D (+1 for tokens)
  // ---- outputs
  int32_t* accept_len = nullptr;   // [R]
  int32_t* num_emitted = nullptr;  // [R]
  int32_t* tokens = nullptr;       // [R, D+1], -1 padded
  int32_t* final_token = nullptr;  // [R]
  bool* final_is_bonus = nullptr;  // [R]
  int32_t* path = nullptr;         // [R, D], -1 padded
  int32_t* last_row = nullptr;     // [R]
  int64_t* next_offset = nullptr;  // [R]
  float* logprobs = nullptr;       // [R, D+1] or nullptr
};

/// Per-request sampling parameters, resolved from VerifyParams.
struct RowParams {
  bool greedy = true;
  float inv_temp = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  /// True when top-k, top-p or min-p removes tokens (needs a threshold).
  DSPARK_HOST_DEVICE bool truncates(int32_t vocab) const {
    return (top_k > 0 && top_k < vocab) || top_p < 1.0f || min_p > 0.0f;
  }
};

DSPARK_HOST_DEVICE RowParams make_row_params(const VerifyParams& P, int32_t r) {
  RowParams rp;
  const float t = P.temperature ? P.temperature[r] : 0.0f;
  rp.greedy = !(t > 0.0f);
  rp.inv_temp = rp.greedy ? 1.0f : 1.0f / t;
  rp.top_k = P.top_k ? P.top_k[r] : 0;
  rp.top_p = P.top_p ? P.top_p[r] : 1.0f;
  rp.min_p = P.min_p ? P.min_p[r] : 0.0f;
  return rp;
}

}  // namespace dspark
