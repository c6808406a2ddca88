// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Backend-neutral entry of draft_step: checks, builds DraftStepParams, dispatches.
#pragma once
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
void draft_step(const DraftStepArgs& a);

}  // namespace dspark::ops
