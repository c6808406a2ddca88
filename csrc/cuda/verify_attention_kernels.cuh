// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/ (internal, CUDA TUs only). Launchers shared by the verify_attention kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dspark/attention/params.h"

namespace dspark::cuda {

/// Split-KV partials: per (split, token, head) an output normalised within its split and the
/// split's LSE; the combine step weights them by e^{lse_split - lse_total}.
struct SplitWorkspace {
  float* o_part = nullptr;    // [S, T, H, D]
  float* lse_part = nullptr;  // [S, T, H]
  int32_t num_splits = 1;
  int32_t split_len = 0;  // KV slots per split (a multiple of every kernel's tile)
};

/// Plain CUDA kernel (any dtype); writes partials when ws.num_splits > 1.
void launch_verify_attention_simt(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                  cudaStream_t stream);

/// CuTe/CUTLASS sm_80 tensor-core kernel (bf16/f16); returns false when it does not apply.
bool launch_verify_attention_sm80(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                  cudaStream_t stream);

/// Merges split partials into out / lse.
void launch_verify_attention_combine(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                     cudaStream_t stream);

}  // namespace dspark::cuda
