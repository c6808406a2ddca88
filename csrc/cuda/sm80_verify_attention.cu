// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/ (CUTLASS/CuTe TU). Tensor-core verify_attention for bf16/f16 on sm_80+ (also runs
// on sm_90): FlashAttention-2 structure with CuTe's SM80 16x8x16 MMA atoms (f32 accumulation).
// A CTA owns 64 rows (row = query * G + head of the GQA group, so K/V tiles are shared by the
// group) of one (request, kv head, KV split) and walks the split's KV in 64-slot tiles gathered
// through the block table with cp.async (CuTe's SM80_CP_ASYNC copy atom). Per tile:
// S = Q K^T (tiled MMA), mask (tree / causal / window, the rules of attention/tree_mask.h),
// online softmax in registers, P -> shared memory, O += P V (tiled MMA). Correctness first: no
// multi-stage pipeline and plain smem->register copies; the layout is ready for ldmatrix and a
// second stage when profiled on hardware.
#include <cuda_runtime.h>

#include <cute/arch/copy_sm80.hpp>
#include <cute/tensor.hpp>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/verify_attention_kernels.cuh"
#include "dspark/attention/tree_mask.h"

namespace dspark::cuda {
namespace {

using namespace cute;

constexpr int kBlockM = 64, kBlockN = 64, kThreads = 128;

template <typename Element>
using MmaAtomFor = std::conditional_t<std::is_same_v<Element, cute::half_t>,
                                      SM80_16x8x16_F32F16F16F32_TN, SM80_16x8x16_F32BF16BF16F32_TN>;

template <typename Element>
using TiledMmaFor = TiledMMA<MMA_Atom<MmaAtomFor<Element>>, Layout<Shape<_4, _1, _1>>,
                             Tile<Int<kBlockM>, _16, _16>>;

/// Shared memory: Q, K, V tiles [64, D], P [64, 64] (Element) and per-row metadata.
template <int kD>
constexpr size_t smem_bytes() {
  return size_t(3 * kBlockM * kD + kBlockM * kBlockN) * 2 + 5 * kBlockM * sizeof(int32_t);
}

/// Max of the values held by the 4 lanes that share an accumulator row (lane / 4 equal).
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/// Gathers rows [slot0, slot0 + 64) of one kv head into a [64, D] tile (zeros past s_end).
template <typename Element, int kD>
__device__ void load_kv_tile(Element* dst, const Element* base, int64_t stride_page,
                             int64_t stride_slot, int64_t head_off, const int32_t* bt,
                             const VerifyAttentionParams& P, int slot0, int s_end) {
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  for (int c = threadIdx.x; c < kBlockN * kChunks; c += kThreads) {
    const int row = c / kChunks, col = (c % kChunks) * 8, slot = slot0 + row;
    Element* d = dst + row * kD + col;
    if (slot < s_end) {
      const int page = min(max(bt[slot / P.page_size], 0), P.num_pages - 1);
      const Element* s = base + int64_t(page) * stride_page +
                         int64_t(slot % P.page_size) * stride_slot + head_off + col;
      SM80_CP_ASYNC_CACHEGLOBAL<uint128_t>::copy(*reinterpret_cast<const uint128_t*>(s),
                                                 *reinterpret_cast<uint128_t*>(d));
    } else {
      *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
    }
  }
}

template <typename Element, int kD>
__global__ void __launch_bounds__(kThreads)
    sm80_verify_attention_kernel(const VerifyAttentionParams P, const SplitWorkspace ws) {
  extern __shared__ __align__(16) char smem[];
  Element* pq = reinterpret_cast<Element*>(smem);
  Element* pk = pq + kBlockM * kD;
  Element* pv = pk + kBlockN * kD;
  Element* pp = pv + kBlockN * kD;
  int32_t* row_t = reinterpret_cast<int32_t*>(pp + kBlockM * kBlockN);  // token or -1
  int32_t* row_h = row_t + kBlockM;
  int32_t* row_i = row_h + kBlockM;  // query index in the request
  int32_t* row_depth = row_i + kBlockM;
  int32_t* row_first = row_depth + kBlockM;  // first visible prefix slot (window)

  const int G = P.num_heads / P.num_kv_heads;
  const int r = blockIdx.x / P.num_kv_heads, kvh = blockIdx.x % P.num_kv_heads;
  const int q0 = P.qo_indptr[r], n = P.qo_indptr[r + 1] - q0;
  const int m0 = blockIdx.y * kBlockM;
  if (m0 >= n * G) return;  // whole CTA
  const int kvl = P.kv_len[r], prefix = kvl - n;
  const int32_t* par = P.parents ? P.parents + q0 : nullptr;
  const int32_t* bt = P.block_table + int64_t(r) * P.block_table_stride;

  // ---- row metadata and the KV range this CTA walks
  if (threadIdx.x < kBlockM) {
    const int m = m0 + threadIdx.x;
    const bool ok = m < n * G;
    const int i = ok ? m / G : 0;
    row_t[threadIdx.x] = ok ? q0 + i : -1;
    row_h[threadIdx.x] = kvh * G + m % G;
    row_i[threadIdx.x] = i;
    row_depth[threadIdx.x] = attn::tree_depth(par, i);
    row_first[threadIdx.x] =
        attn::window_first_slot(prefix + row_depth[threadIdx.x], P.window_left);
  }
  const int m_hi = min(m0 + kBlockM, n * G);  // this CTA's rows are [m0, m_hi)
  // The last row's query sees slots up to its own; later slots are never visible here.
  int s_begin = 0, s_end = min(kvl, prefix + (m_hi - 1) / G + 1);
  if (ws.num_splits > 1) {
    s_begin = blockIdx.z * ws.split_len;
    s_end = min(s_end, s_begin + ws.split_len);
  }

  // ---- Q tile (rows past the request are zero)
  constexpr int kChunks = kD / 8;
  const Element* qbase = static_cast<const Element*>(P.q);
  for (int c = threadIdx.x; c < kBlockM * kChunks; c += kThreads) {
    const int row = c / kChunks, col = (c % kChunks) * 8, m = m0 + row;
    Element* d = pq + row * kD + col;
    if (m < n * G) {
      const Element* s = qbase + int64_t(q0 + m / G) * P.q_stride_t +
                         int64_t(kvh * G + m % G) * P.q_stride_h + col;
      SM80_CP_ASYNC_CACHEGLOBAL<uint128_t>::copy(*reinterpret_cast<const uint128_t*>(s),
                                                 *reinterpret_cast<uint128_t*>(d));
    } else {
      *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
    }
  }
  cp_async_fence();
  cp_async_wait<0>();
  __syncthreads();

  Tensor sQ =
      make_tensor(make_smem_ptr(pq), Layout<Shape<Int<kBlockM>, Int<kD>>, Stride<Int<kD>, _1>>{});
  Tensor sK =
      make_tensor(make_smem_ptr(pk), Layout<Shape<Int<kBlockN>, Int<kD>>, Stride<Int<kD>, _1>>{});
  Tensor sVt =
      make_tensor(make_smem_ptr(pv), Layout<Shape<Int<kD>, Int<kBlockN>>, Stride<_1, Int<kD>>>{});
  Tensor sP = make_tensor(make_smem_ptr(pp),
                          Layout<Shape<Int<kBlockM>, Int<kBlockN>>, Stride<Int<kBlockN>, _1>>{});

  TiledMmaFor<Element> mma;
  auto thr = mma.get_slice(threadIdx.x);
  Tensor tSsQ = thr.partition_A(sQ);
  Tensor tSrQ = thr.partition_fragment_A(sQ);
  // K, P and V fragments are staged one k-slice (16 wide) at a time: every warp needs the whole
  // B operand, which would not fit in registers at once.
  Tensor tSsK = thr.partition_B(sK);
  Tensor tSrK = make_fragment_like(thr.partition_fragment_B(sK)(_, _, 0));
  Tensor tOsP = thr.partition_A(sP);
  Tensor tOrP = make_fragment_like(thr.partition_fragment_A(sP)(_, _, 0));
  Tensor tOsV = thr.partition_B(sVt);
  Tensor tOrV = make_fragment_like(thr.partition_fragment_B(sVt)(_, _, 0));
  Tensor tSsP = thr.partition_C(sP);
  Tensor tScS = thr.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
  Tensor tOcO = thr.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kD>>{}));
  Tensor acc_o = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kD>>{});
  clear(acc_o);
  copy(tSsQ, tSrQ);

  // Each thread's accumulator elements lie on two rows of its warp's 16-row slab (SM80 16x8
  // C layout): lane / 4 and lane / 4 + 8. Index them by bit 3 of the row.
  float row_max[2] = {kNegInf, kNegInf}, row_sum[2] = {0.0f, 0.0f};
  const float scale = P.sm_scale;
  const int64_t k_head = int64_t(kvh) * P.k_stride_head, v_head = int64_t(kvh) * P.v_stride_head;

  for (int t0 = s_begin; t0 < s_end; t0 += kBlockN) {
    load_kv_tile<Element, kD>(pk, static_cast<const Element*>(P.k), P.k_stride_page,
                              P.k_stride_slot, k_head, bt, P, t0, s_end);
    load_kv_tile<Element, kD>(pv, static_cast<const Element*>(P.v), P.v_stride_page,
                              P.v_stride_slot, v_head, bt, P, t0, s_end);
    cp_async_fence();
    cp_async_wait<0>();
    __syncthreads();

    Tensor acc_s = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
    clear(acc_s);
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tSsK); ++k) {
      copy(tSsK(_, _, k), tSrK);
      gemm(mma, tSrQ(_, _, k), tSrK, acc_s);
    }

    // ---- scale, cap, mask; per-row tile max
    float tile_max[2] = {kNegInf, kNegInf};
    CUTE_UNROLL
    for (int e = 0; e < size(acc_s); ++e) {
      const int m = get<0>(tScS(e)), slot = t0 + get<1>(tScS(e));
      float x = attn::soft_cap(acc_s(e) * scale, P.soft_cap);
      bool vis = row_t[m] >= 0 && slot < s_end;
      if (vis && slot < prefix) {
        vis = slot >= row_first[m];
      } else if (vis) {
        const int j = slot - prefix, i = row_i[m];
        vis = attn::is_ancestor_or_self(par, i, j) &&
              (P.window_left < 0 || row_depth[m] - attn::tree_depth(par, j) <= P.window_left);
      }
      x = vis ? x : kNegInf;
      acc_s(e) = x;
      const int rl = (m >> 3) & 1;
      tile_max[rl] = fmaxf(tile_max[rl], x);
    }
    float alpha[2], mu[2];
    CUTE_UNROLL
    for (int rl = 0; rl < 2; ++rl) {
      const float m_new = fmaxf(row_max[rl], quad_max(tile_max[rl]));
      alpha[rl] = attn::rescale_factor(row_max[rl], m_new);
      mu[rl] = m_new == kNegInf ? 0.0f : m_new;
      row_max[rl] = m_new;
      row_sum[rl] *= alpha[rl];
    }
    CUTE_UNROLL
    for (int e = 0; e < size(acc_s); ++e) {
      const int rl = (get<0>(tScS(e)) >> 3) & 1;
      const float p = dexp(acc_s(e) - mu[rl]);
      row_sum[rl] += p;  // thread-partial; the quad is summed once at the end
      tSsP(e) = Element(p);
    }
    CUTE_UNROLL
    for (int e = 0; e < size(acc_o); ++e) acc_o(e) *= alpha[(get<0>(tOcO(e)) >> 3) & 1];
    __syncthreads();

    CUTE_UNROLL
    for (int k = 0; k < size<2>(tOsP); ++k) {
      copy(tOsP(_, _, k), tOrP);
      copy(tOsV(_, _, k), tOrV);
      gemm(mma, tOrP, tOrV, acc_o);
    }
    __syncthreads();  // the next tile overwrites sK, sV and sP
  }

  // ---- epilogue: normalise, write out (or split partials) and the LSE
  float inv[2], lse[2];
  CUTE_UNROLL
  for (int rl = 0; rl < 2; ++rl) {
    const float l = quad_sum(row_sum[rl]);
    inv[rl] = l > 0.0f ? 1.0f / l : 0.0f;
    lse[rl] = attn::state_lse(attn::SoftmaxState{row_max[rl], l});
  }
  Element* out = static_cast<Element*>(P.out);
  CUTE_UNROLL
  for (int e = 0; e < size(acc_o); ++e) {
    const int m = get<0>(tOcO(e)), d = get<1>(tOcO(e));
    const int t = row_t[m];
    if (t < 0) continue;
    const float o = acc_o(e) * inv[(m >> 3) & 1];
    if (ws.num_splits > 1) {
      ws.o_part[((int64_t(blockIdx.z) * P.num_tokens + t) * P.num_heads + row_h[m]) * kD + d] = o;
    } else {
      out[int64_t(t) * P.o_stride_t + int64_t(row_h[m]) * P.o_stride_h + d] = Element(o);
    }
  }
  // One lane per row writes the LSE: the lane holding column 0 of the row's first C tile.
  CUTE_UNROLL
  for (int e = 0; e < size(acc_o); ++e) {
    const int m = get<0>(tOcO(e)), d = get<1>(tOcO(e));
    if (d != 0 || row_t[m] < 0) continue;
    const float v = lse[(m >> 3) & 1];
    const int64_t th = int64_t(row_t[m]) * P.num_heads + row_h[m];
    if (ws.num_splits > 1) {
      ws.lse_part[int64_t(blockIdx.z) * P.num_tokens * P.num_heads + th] = v;
    } else if (P.lse) {
      P.lse[th] = v;
    }
  }
}

template <typename Element, int kD>
bool launch(const VerifyAttentionParams& P, const SplitWorkspace& ws, cudaStream_t stream) {
  auto kernel = sm80_verify_attention_kernel<Element, kD>;
  // This TU is compiled for real architectures only (sm_80, sm_90a): on any other GPU there is
  // no image, and the plain kernel (which also ships PTX) takes over.
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  constexpr size_t bytes = smem_bytes<kD>();
  DSPARK_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  const int G = P.num_heads / P.num_kv_heads;
  // x: request * kv head (up to 2^31 - 1), y: row blocks, z: KV splits.
  const dim3 grid(P.num_requests * P.num_kv_heads,
                  (int64_t(P.max_qo_len) * G + kBlockM - 1) / kBlockM, ws.num_splits);
  kernel<<<grid, kThreads, bytes, stream>>>(P, ws);
  DSPARK_CUDA_CHECK(cudaGetLastError());
  return true;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

bool launch_verify_attention_sm80(const VerifyAttentionParams& P, const SplitWorkspace& ws,
                                  cudaStream_t stream) {
  if (P.dtype != DType::kBFloat16 && P.dtype != DType::kFloat16) return false;
  int dev = 0, major = 0;
  DSPARK_CUDA_CHECK(cudaGetDevice(&dev));
  DSPARK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  if (major < 8) return false;
  // cp.async moves 16-byte chunks: every row start must be 16-byte aligned.
  for (int64_t s : {P.q_stride_t, P.q_stride_h, P.k_stride_page, P.k_stride_slot, P.k_stride_head,
                    P.v_stride_page, P.v_stride_slot, P.v_stride_head})
    if (s % 8 != 0) return false;
  if (!aligned16(P.q) || !aligned16(P.k) || !aligned16(P.v)) return false;
  const bool half = P.dtype == DType::kFloat16;
  switch (P.head_dim) {
    case 64:
      return half ? launch<cute::half_t, 64>(P, ws, stream)
                  : launch<cute::bfloat16_t, 64>(P, ws, stream);
    case 128:
      return half ? launch<cute::half_t, 128>(P, ws, stream)
                  : launch<cute::bfloat16_t, 128>(P, ws, stream);
    case 256:
      return half ? launch<cute::half_t, 256>(P, ws, stream)
                  : launch<cute::bfloat16_t, 256>(P, ws, stream);
    default:
      return false;
  }
}

}  // namespace dspark::cuda
