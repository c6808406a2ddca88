// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Backend-neutral entry of draft_step: checks, builds DraftStepParams, dispatches.
#pragma once
#include <array>
#include <cstdint>
#include <optional>

#include "dspark/tensor_view.h"

namespace dspark::ops {

struct DraftStepArgs {
  TensorView base_logits, w1, w2, anchors, seed, offset;
  std::optional<TensorView> temperature, hidden, conf_weight;
  double conf_bias = 0.0;  // full width: the op checks the scalars
  int64_t candidates = 0;
  TensorView tokens, draft_logits, next_offset;
  std::optional<TensorView> confidence;
  int64_t stream = 0;
};

/// Runs the fused DSpark draft step (see python/dspark/ops/draft_step.py for the contract).
void draft_step_with(const DraftStepArgs& a);

/// The same with one argument per field: the `_C.draft_step` binding (bindings/draft.cpp declares
/// it with kDraftStepArgNames).
void draft_step(TensorView base_logits, TensorView w1, TensorView w2, TensorView anchors,
                std::optional<TensorView> temperature, TensorView seed, TensorView offset,
                std::optional<TensorView> hidden, std::optional<TensorView> conf_weight,
                double conf_bias, int64_t candidates, TensorView tokens, TensorView draft_logits,
                std::optional<TensorView> confidence, TensorView next_offset, int64_t stream);

inline constexpr std::array<const char*, 16> kDraftStepArgNames = {
    "base_logits",  "w1",         "w2",          "anchors",   "temperature", "seed",
    "offset",       "hidden",     "conf_weight", "conf_bias", "candidates",  "tokens",
    "draft_logits", "confidence", "next_offset", "stream"};

}  // namespace dspark::ops
