// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Backend-neutral entry of verify_attention: checks, builds VerifyAttentionParams,
// dispatches on the device.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <utility>

#include "dspark/attention/params.h"
#include "dspark/tensor_view.h"

namespace dspark::ops {

/// Every tensor verify_attention reads or writes (outputs are preallocated by the caller).
struct VerifyAttentionArgs {
  TensorView q, k_cache, v_cache, qo_indptr, block_table, kv_len;
  std::optional<TensorView> parents;
  // Scalars arrive at full width (double / int64) so the op, not the binding, checks them.
  double sm_scale = 1.0;
  double soft_cap = 0.0;
  int64_t window_left = -1;
  int64_t cuda_kernel = 0;  // 0 = auto, 1 = plain CUDA, 2 = tensor cores (CUDA only)
  // Largest qo_len / kv_len: needed to size CUDA grids without reading device memory. -1 lets the
  // op compute them (host index tensors only).
  int64_t max_qo_len = -1, max_kv_len = -1;
  TensorView out;
  std::optional<TensorView> lse;
  int64_t stream = 0;  // cudaStream_t as an integer (CUDA only)
};

/// Runs verification attention (see python/dspark/ops/verify_attention.py for the contract).
void verify_attention_with(const VerifyAttentionArgs& a);

/// The same with one argument per field: the `_C.verify_attention` binding (bindings/attention.cpp
/// declares it with kVerifyAttentionArgNames). cuda_kernel: 0 auto, 1 plain CUDA, 2 tensor cores.
void verify_attention(TensorView q, TensorView k_cache, TensorView v_cache, TensorView qo_indptr,
                      TensorView block_table, TensorView kv_len, std::optional<TensorView> parents,
                      double sm_scale, double soft_cap, int64_t window_left, int64_t max_qo_len,
                      int64_t max_kv_len, TensorView out, std::optional<TensorView> lse,
                      int64_t cuda_kernel, int64_t stream);

inline constexpr std::array<const char*, 16> kVerifyAttentionArgNames = {
    "q",       "k_cache",  "v_cache",     "qo_indptr",   "block_table", "kv_len",
    "parents", "sm_scale", "soft_cap",    "window_left", "max_qo_len",  "max_kv_len",
    "out",     "lse",      "cuda_kernel", "stream"};

/// O(T + R * max_pages) checks of host index tensors against a cache of `num_pages` pages of
/// `page_size` slots: indptr monotone, qo_len <= kv_len <= capacity, used page ids in range,
/// parents topological. Returns (max_qo_len, max_kv_len).
std::pair<int32_t, int32_t> check_verify_attention_indices(
    TensorView qo_indptr, TensorView block_table, TensorView kv_len,
    std::optional<TensorView> parents, int64_t num_tokens, int64_t num_pages, int64_t page_size);

inline constexpr std::array<const char*, 7> kCheckVerifyAttentionIndicesArgNames = {
    "qo_indptr", "block_table", "kv_len", "parents", "num_tokens", "num_pages", "page_size"};

}  // namespace dspark::ops
