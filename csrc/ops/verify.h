// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Backend-neutral entry of verify_batch: checks, builds VerifyParams, dispatches.
#pragma once
#include <cstdint>
#include <optional>

#include "dspark/tensor_view.h"
#include "dspark/verify/params.h"

namespace dspark::ops {

/// Every tensor verify_batch reads or writes (outputs are preallocated by the caller).
struct VerifyArgs {
  TensorView target, draft_tokens, draft_indptr;
  std::optional<TensorView> parents, draft_q, temperature, top_k, top_p, min_p, max_emit;
  TensorView seed, offset;
  DraftQ q_kind = DraftQ::kDeterministic;
  DraftSampling sampling = DraftSampling::kWithReplacement;
  bool target_is_probs = false;
  int64_t max_depth = 0;  // full width: the op checks it
  TensorView accept_len, num_emitted, tokens, final_token, final_is_bonus, path, last_row,
      next_offset;
  std::optional<TensorView> logprobs;
  int64_t stream = 0;  // cudaStream_t as an integer (CUDA only)
};

/// Runs lossless batched verification (see python/dspark/ops/verify.py for the full contract).
void verify_batch(const VerifyArgs& a);

/// O(N) structural checks on host index arrays: indptr, parents (topological, -1 = root),
/// token ids in [0, V), at most kMaxSiblings children per node; returns the deepest depth.
int32_t check_verify_structure(const TensorView& draft_tokens, const TensorView& draft_indptr,
                               const std::optional<TensorView>& parents, int64_t vocab_size);

}  // namespace dspark::ops
