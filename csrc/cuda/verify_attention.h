// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CUDA verify_attention launchers. cuda::verify_attention picks the CuTe tensor-core
// kernel (bf16/f16, built with CUTLASS) or the plain CUDA kernel (f32, or no CUTLASS), both with
// split-KV and a combine step for long prefixes.
#pragma once
#include <cstdint>

#include "dspark/attention/params.h"

namespace dspark::cuda {

/// Launches verify_attention on `stream` (a cudaStream_t as an integer; 0 = default stream).
void verify_attention(const VerifyAttentionParams& P, int device_id, int64_t stream);

}  // namespace dspark::cuda
