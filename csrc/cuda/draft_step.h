// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CUDA draft_step launcher (one CTA per request).
#pragma once
#include <cstdint>

#include "dspark/draft/markov_step.h"

namespace dspark::cuda {
/// Launches draft_step on `stream` (a cudaStream_t as an integer).
void draft_step(const DraftStepParams& P, int device_id, int64_t stream);
}  // namespace dspark::cuda
