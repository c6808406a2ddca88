// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CUDA verify_batch launcher (one CTA per request).
#pragma once
#include <cstdint>

#include "dspark/verify/params.h"

namespace dspark::cuda {
/// Launches verify_batch on `stream` (a cudaStream_t as an integer; 0 = legacy default stream).
void verify_batch(const VerifyParams& P, int device_id, int64_t stream);
}  // namespace dspark::cuda
