// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. verify_attention on CUDA: the dispatcher (split-KV sizing, workspace, kernel
// choice), the plain CUDA kernel (every dtype; one warp per query row, lanes across D) and the
// split-KV combine. The tensor-core kernel for bf16/f16 lives in sm80_verify_attention.cu
// (CuTe/CUTLASS). Visibility and softmax maths come from include/dspark/attention/tree_mask.h, the
// same code the CPU backend runs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/verify_attention.h"
#include "cuda/verify_attention_kernels.cuh"
#include "dspark/attention/store.h"
#include "dspark/attention/tree_mask.h"

namespace dspark::cuda {
namespace {

constexpr int kWarps = 4;        // query rows per CTA in the plain kernel
constexpr int kSplitTile = 128;  // split lengths are multiples of this (and of every kernel tile)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Grid: x = request * Hk + kv head, y = row blocks of kWarps rows (row = query * G + head in
/// group), z = KV split. Each warp owns one row; lane l holds elements [l * E, l * E + E) of D.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    verify_attention_simt_kernel(const VerifyAttentionParams P, const SplitWorkspace ws) {
  constexpr int E = D / 32;
  const int G = P.num_heads / P.num_kv_heads;
  const int r = blockIdx.x / P.num_kv_heads, kvh = blockIdx.x % P.num_kv_heads;
  const int lane = threadIdx.x & 31, row = blockIdx.y * kWarps + (threadIdx.x >> 5);
  const int q0 = P.qo_indptr[r], n = P.qo_indptr[r + 1] - q0;
  if (row >= n * G) return;  // whole warp leaves together
  const int i = row / G, h = kvh * G + row % G, t = q0 + i;
  const int kvl = P.kv_len[r], prefix = kvl - n;
  const int32_t* par = P.parents ? P.parents + q0 : nullptr;
  const int depth_i = attn::tree_depth(par, i);
  int s0 = attn::window_first_slot(prefix + depth_i, P.window_left);
  int s1 = prefix + i + 1;  // a query never sees a later query
  if (ws.num_splits > 1) {
    s0 = max(s0, int(blockIdx.z) * ws.split_len);
    s1 = min(s1, int(blockIdx.z + 1) * ws.split_len);
  }
  const T* qp = static_cast<const T*>(P.q) + int64_t(t) * P.q_stride_t + int64_t(h) * P.q_stride_h;
  float qv[E], o[E];
  for (int e = 0; e < E; ++e) {
    qv[e] = load_float(qp, lane * E + e) * P.sm_scale;
    o[e] = 0.0f;
  }
  attn::SoftmaxState st;
  const int32_t* bt = P.block_table + int64_t(r) * P.block_table_stride;
  for (int s = s0; s < s1; ++s) {
    if (s >= prefix) {
      const int j = s - prefix;
      if (!attn::is_ancestor_or_self(par, i, j)) continue;
      if (P.window_left >= 0 && depth_i - attn::tree_depth(par, j) > P.window_left) continue;
    }
    int page = bt[s / P.page_size];
    page = min(max(page, 0), P.num_pages - 1);  // host-validated; clamped so nothing reads outside
    const int off = s % P.page_size;
    const T* kr = static_cast<const T*>(P.k) + int64_t(page) * P.k_stride_page +
                  int64_t(off) * P.k_stride_slot + int64_t(kvh) * P.k_stride_head;
    const T* vr = static_cast<const T*>(P.v) + int64_t(page) * P.v_stride_page +
                  int64_t(off) * P.v_stride_slot + int64_t(kvh) * P.v_stride_head;
    float dot = 0.0f;
    for (int e = 0; e < E; ++e) dot += qv[e] * load_float(kr, lane * E + e);
    const float x = attn::soft_cap(warp_sum(dot), P.soft_cap);
    const float m_new = fmaxf(st.m, x);
    const float a = attn::rescale_factor(st.m, m_new), p = dexp(x - m_new);
    st.l = st.l * a + p;
    st.m = m_new;
    for (int e = 0; e < E; ++e) o[e] = o[e] * a + p * load_float(vr, lane * E + e);
  }
  const float inv = st.l > 0.0f ? 1.0f / st.l : 0.0f;
  if (ws.num_splits > 1) {
    const int64_t base = (int64_t(blockIdx.z) * P.num_tokens + t) * P.num_heads + h;
    for (int e = 0; e < E; ++e) ws.o_part[base * D + lane * E + e] = o[e] * inv;
    if (lane == 0) ws.lse_part[base] = attn::state_lse(st);
    return;
  }
  T* op = static_cast<T*>(P.out) + int64_t(t) * P.o_stride_t + int64_t(h) * P.o_stride_h;
  for (int e = 0; e < E; ++e) store_float(op, lane * E + e, o[e] * inv);
  if (P.lse && lane == 0) P.lse[int64_t(t) * P.num_heads + h] = attn::state_lse(st);
}

/// One warp per (token, head): out = sum_s e^{lse_s - lse} o_s, lse = log sum_s e^{lse_s}.
template <typename T>
__global__ void verify_attention_combine_kernel(const VerifyAttentionParams P,
                                                const SplitWorkspace ws) {
  const int64_t th = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (th >= int64_t(P.num_tokens) * P.num_heads) return;
  const int lane = threadIdx.x & 31;
  const int64_t TH = int64_t(P.num_tokens) * P.num_heads;
  float mx = kNegInf;
  for (int s = 0; s < ws.num_splits; ++s) mx = fmaxf(mx, ws.lse_part[s * TH + th]);
  float sum = 0.0f;
  for (int s = 0; s < ws.num_splits; ++s) sum += attn::merge_weight(ws.lse_part[s * TH + th], mx);
  const float lse = mx == kNegInf ? kNegInf : mx + dlog(sum);
  const int64_t t = th / P.num_heads, h = th % P.num_heads;
  T* op = static_cast<T*>(P.out) + t * P.o_stride_t + h * P.o_stride_h;
  for (int d = lane; d < P.head_dim; d += 32) {
    float acc = 0.0f;
    for (int s = 0; s < ws.num_splits; ++s) {
      const float w = attn::merge_weight(ws.lse_part[s * TH + th], lse);
      if (w > 0.0f) acc += w * ws.o_part[(s * TH + th) * P.head_dim + d];
    }
    store_float(op, d, acc);
  }
  if (P.lse && lane == 0) P.lse[th] = lse;
}

/// KV splits: enough CTAs to fill the GPU when R * Hk is small and the prefix is long.
SplitWorkspace plan_splits(const VerifyAttentionParams& P, int num_sms) {
  SplitWorkspace ws;
  const int64_t ctas = int64_t(P.num_requests) * P.num_kv_heads;
  const int64_t want = std::max<int64_t>(1, (2 * int64_t(num_sms) + ctas - 1) / ctas);
  const int64_t by_len = std::max<int64_t>(1, P.max_kv_len / 512);
  ws.num_splits = int32_t(std::min<int64_t>({want, by_len, 32}));
  const int64_t per = (int64_t(P.max_kv_len) + ws.num_splits - 1) / ws.num_splits;
  ws.split_len = int32_t((per + kSplitTile - 1) / kSplitTile * kSplitTile);
  if (ws.split_len > 0)
    ws.num_splits = int32_t((int64_t(P.max_kv_len) + ws.split_len - 1) / ws.split_len);
  ws.num_splits = std::max(ws.num_splits, 1);
  return ws;
}

}  // namespace

void launch_verify_attention_simt(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                  cudaStream_t stream) {
  const int G = P.num_heads / P.num_kv_heads;
  const dim3 grid(P.num_requests * P.num_kv_heads,
                  (int64_t(P.max_qo_len) * G + kWarps - 1) / kWarps, ws.num_splits);
  DSPARK_DISPATCH_FLOAT(P.dtype, T, [&] {
    switch (P.head_dim) {
      case 64:
        verify_attention_simt_kernel<T, 64><<<grid, kWarps * 32, 0, stream>>>(P, ws);
        break;
      case 128:
        verify_attention_simt_kernel<T, 128><<<grid, kWarps * 32, 0, stream>>>(P, ws);
        break;
      default:
        verify_attention_simt_kernel<T, 256><<<grid, kWarps * 32, 0, stream>>>(P, ws);
        break;
    }
  });
  DSPARK_CUDA_CHECK(cudaGetLastError());
}

void launch_verify_attention_combine(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                     cudaStream_t stream) {
  const int64_t rows = int64_t(P.num_tokens) * P.num_heads;
  const unsigned blocks = unsigned((rows + kWarps - 1) / kWarps);
  DSPARK_DISPATCH_FLOAT(P.dtype, T, [&] {
    verify_attention_combine_kernel<T><<<blocks, kWarps * 32, 0, stream>>>(P, ws);
  });
  DSPARK_CUDA_CHECK(cudaGetLastError());
}

#ifndef DSPARK_WITH_CUTLASS
bool launch_verify_attention_sm80(const VerifyAttentionParams&, const SplitWorkspace&,
                                  cudaStream_t) {
  return false;  // built without CUTLASS: the plain kernel runs every case
}
#endif

void verify_attention(const VerifyAttentionParams& P, int device_id, int64_t stream) {
  DSPARK_CUDA_CHECK(cudaSetDevice(device_id));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (P.num_requests == 0 || P.num_tokens == 0 || P.max_qo_len == 0) return;
  int sms = 0;
  DSPARK_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_id));
  SplitWorkspace ws = plan_splits(P, sms);
  if (ws.num_splits > 1) {
    const size_t rows = size_t(ws.num_splits) * P.num_tokens * P.num_heads;
    DSPARK_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ws.o_part),
                                      rows * P.head_dim * sizeof(float), s));
    DSPARK_CUDA_CHECK(
        cudaMallocAsync(reinterpret_cast<void**>(&ws.lse_part), rows * sizeof(float), s));
  }
  const bool mma = P.cuda_kernel != 1 && launch_verify_attention_sm80(P, ws, s);
  if (!mma && P.cuda_kernel == 2) {
    if (ws.num_splits > 1) {
      DSPARK_CUDA_CHECK(cudaFreeAsync(ws.o_part, s));
      DSPARK_CUDA_CHECK(cudaFreeAsync(ws.lse_part, s));
    }
    DSPARK_CHECK(false,
                 "cuda_kernel: the tensor-core kernel does not apply here (it needs bf16 or "
                 "f16, an sm_80+ GPU and a build with CUTLASS)");
  }
  if (!mma) launch_verify_attention_simt(P, ws, s);
  if (ws.num_splits > 1) {
    launch_verify_attention_combine(P, ws, s);
    DSPARK_CUDA_CHECK(cudaFreeAsync(ws.o_part, s));
    DSPARK_CUDA_CHECK(cudaFreeAsync(ws.lse_part, s));
  }
}

}  // namespace dspark::cuda
