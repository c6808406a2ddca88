// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Backend-neutral entry of verify_batch: checks, builds VerifyParams, dispatches.
#pragma once
#include <array>
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
void verify_batch_with(const VerifyArgs& a);

/// The same with one argument per field: the `_C.verify_batch` binding, declared in
/// bindings/verify.cpp with kVerifyBatchArgNames. q_kind: 0 none, 1 probs, 2 logits; sampling:
/// 0 with, 1 without replacement.
void verify_batch(TensorView target, TensorView draft_tokens, TensorView draft_indptr,
                  std::optional<TensorView> parents, std::optional<TensorView> draft_q,
                  int64_t q_kind, int64_t sampling, std::optional<TensorView> temperature,
                  std::optional<TensorView> top_k, std::optional<TensorView> top_p,
                  std::optional<TensorView> min_p, TensorView seed, TensorView offset,
                  std::optional<TensorView> max_emit, bool target_is_probs, int64_t max_depth,
                  TensorView accept_len, TensorView num_emitted, TensorView tokens,
                  TensorView final_token, TensorView final_is_bonus, TensorView path,
                  TensorView last_row, TensorView next_offset, std::optional<TensorView> logprobs,
                  int64_t stream);

inline constexpr std::array<const char*, 26> kVerifyBatchArgNames = {
    "target",   "draft_tokens", "draft_indptr",    "parents",   "draft_q",    "q_kind",
    "sampling", "temperature",  "top_k",           "top_p",     "min_p",      "seed",
    "offset",   "max_emit",     "target_is_probs", "max_depth", "accept_len", "num_emitted",
    "tokens",   "final_token",  "final_is_bonus",  "path",      "last_row",   "next_offset",
    "logprobs", "stream"};

inline constexpr std::array<const char*, 4> kCheckVerifyStructureArgNames = {
    "draft_tokens", "draft_indptr", "parents", "vocab_size"};

/// O(N) structural checks on host index arrays: indptr, parents (topological, -1 = root),
/// token ids in [0, V), at most kMaxSiblings children per node; returns the deepest depth.
int32_t check_verify_structure(TensorView draft_tokens, TensorView draft_indptr,
                               std::optional<TensorView> parents, int64_t vocab_size);

}  // namespace dspark::ops
