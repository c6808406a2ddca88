// SPDX-License-Identifier: Apache-2.0
// Layer: include/. The POD handed to both verify_attention backends (built once in
// ops/verify_attention.cpp). Layout: flattened varlen queries (qo_indptr) over a paged KV cache.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"

namespace dspark {

/// All inputs and outputs of one verify_attention call. Pointers are on one device; strides are
/// in elements and the head dimension is contiguous.
struct VerifyAttentionParams {
  // ---- inputs
  const void* q = nullptr;  // [T, H, D]
  int64_t q_stride_t = 0, q_stride_h = 0;
  const void* k = nullptr;  // [num_pages, page_size, Hk, D]
  const void* v = nullptr;  // [num_pages, page_size, Hk, D]
  int64_t k_stride_page = 0, k_stride_slot = 0, k_stride_head = 0;
  int64_t v_stride_page = 0, v_stride_slot = 0, v_stride_head = 0;
  DType dtype = DType::kFloat32;         // q, k, v and out share it
  const int32_t* qo_indptr = nullptr;    // [R+1]
  const int32_t* block_table = nullptr;  // [R, max_pages]
  int64_t block_table_stride = 0;
  const int32_t* kv_len = nullptr;   // [R]; includes the request's own query tokens
  const int32_t* parents = nullptr;  // [T] local parent (-1 = prefix only) or nullptr (causal)
  int32_t num_requests = 0;          // R
  int32_t num_tokens = 0;            // T
  int32_t num_heads = 0;             // H
  int32_t num_kv_heads = 0;          // Hk (H % Hk == 0)
  int32_t head_dim = 0;              // D
  int32_t page_size = 0;
  int32_t max_pages = 0;     // block_table width
  int32_t num_pages = 0;     // pages in the cache (page ids are clamped to it on CUDA)
  int32_t max_qo_len = 0;    // largest qo_len[r] (CUDA grid sizing; mask words on CPU)
  int32_t max_kv_len = 0;    // largest kv_len[r] (CUDA split-KV sizing)
  float sm_scale = 1.0f;     // applied to q.k before the soft-cap
  float soft_cap = 0.0f;     // > 0: logits = cap * tanh(logits / cap) (Gemma)
  int32_t window_left = -1;  // >= 0: keys with pos_q - pos_k > window_left are hidden
  int32_t cuda_kernel = 0;   // CUDA only: 0 = auto, 1 = plain CUDA, 2 = tensor cores
  // ---- outputs
  void* out = nullptr;  // [T, H, D], dtype
  int64_t o_stride_t = 0, o_stride_h = 0;
  float* lse = nullptr;  // [T, H] natural-log sum-exp of the (capped) logits, or nullptr
};

}  // namespace dspark
