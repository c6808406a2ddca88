// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU draft_step entry points, one per ISA; cpu::draft_step picks at run time.
#pragma once
#include "dspark/draft/markov_step.h"

namespace dspark::cpu {
namespace cpu_generic {
void draft_step(const DraftStepParams& P);
}
namespace cpu_avx2 {
void draft_step(const DraftStepParams& P);
}
/// Runs draft_step on the CPU with the best ISA variant this machine supports.
void draft_step(const DraftStepParams& P);
}  // namespace dspark::cpu
