// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU verify_attention entry points, one per ISA; cpu::verify_attention picks at run
// time (cpu/dispatch.cpp).
#pragma once
#include "dspark/attention/params.h"

namespace dspark::cpu {
namespace cpu_generic {
void verify_attention(const VerifyAttentionParams& P);
}
namespace cpu_avx2 {
void verify_attention(const VerifyAttentionParams& P);
}
/// Runs verify_attention on the CPU with the best ISA variant this machine supports.
void verify_attention(const VerifyAttentionParams& P);
}  // namespace dspark::cpu
