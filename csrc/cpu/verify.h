// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU verify_batch entry points, one per ISA; cpu::verify_batch picks at run time.
#pragma once
#include "dspark/verify/params.h"

namespace dspark::cpu {
namespace cpu_generic {
void verify_batch(const VerifyParams& P);
}
namespace cpu_avx2 {
void verify_batch(const VerifyParams& P);
}
/// Runs verify_batch on the CPU with the best ISA variant this machine supports.
void verify_batch(const VerifyParams& P);
/// Name of the ISA variant chosen at run time ("avx2" or "generic").
const char* isa_name();
}  // namespace dspark::cpu
