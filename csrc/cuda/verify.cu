// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CUDA backend of verify_batch: one CTA per request. Every thread runs the shared
// walk (include/dspark/verify/walk.h); row-wide work is split over the CTA and combined with block
// reductions whose results every thread receives, so control flow stays uniform. The per-element
// maths (weights, residual chain, Philox, exponential race) is the same code the CPU runs.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.h"
#include "cuda/verify.h"
#include "dspark/verify/walk.h"

namespace dspark::cuda {
namespace {

constexpr int kThreads = 256;

using Smem = BlockReduce<kThreads>;

template <typename TT, typename TQ>
struct CudaVerifyOps {
  using TargetT = TT;
  using DraftT = TQ;
  const VerifyParams& P;
  Smem& s;

  __device__ bool leader() const { return threadIdx.x == 0; }
  __device__ const TT* target_row(int64_t row) const {
    return static_cast<const TT*>(P.target) + row * P.target_row_stride;
  }
  __device__ const TQ* draft_row(int64_t node) const {
    return static_cast<const TQ*>(P.draft_q) + node * P.draft_q_row_stride;
  }

  template <typename T>
  __device__ void max_argmax(const T* x, float& m, int32_t& arg) {
    m = kNegInf;
    arg = 0x7fffffff;
    for (int32_t v = threadIdx.x; v < P.vocab_size; v += kThreads) {
      const float y = load_float(x, v);
      if (y > m) {
        m = y;
        arg = v;
      }
    }
    s.argmax(m, arg);
    if (arg == 0x7fffffff) arg = 0;
  }

  template <typename F>
  __device__ float sum(int32_t lo, int32_t hi, F f) {
    float acc = 0.0f;
    for (int32_t v = lo + threadIdx.x; v < hi; v += kThreads) acc += f(v);
    return s.sum(acc);
  }

  /// Largest t (over float bit patterns in [0, hi_bits]) with pred(t); pred(0) must hold.
  template <typename Pred>
  __device__ float bisect(uint32_t hi_bits, Pred pred) {
    uint32_t lo = 0, hi = hi_bits;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (pred(bits_to_float(mid)))
        lo = mid;
      else
        hi = mid - 1;
    }
    return bits_to_float(lo);
  }

  __device__ RowStats stats(int64_t row, const RowParams& rp) {
    RowStats st;
    const TT* x = target_row(row);
    const int32_t V = P.vocab_size;
    const bool probs = P.target_is_probs;
    if (rp.greedy) {
      max_argmax(x, st.max, st.argmax);
      if (P.logprobs && !probs) {
        const float m = st.max;
        st.log_z = dlog(sum(0, V, [&](int32_t v) { return dexp(load_float(x, v) - m); }));
      }
      return st;
    }
    const bool trunc = rp.truncates(V);
    if (probs && rp.inv_temp == 1.0f && !trunc) return st;
    if (!probs) max_argmax(x, st.max, st.argmax);
    const float m = st.max, it = rp.inv_temp;
    auto w = [&](int32_t v) { return raw_weight(load_float(x, v), m, it, probs); };
    float thr = 0.0f;
    if (trunc) {
      float wmax = kNegInf;
      int32_t unused = 0;
      for (int32_t v = threadIdx.x; v < V; v += kThreads) wmax = fmaxf(wmax, w(v));
      s.argmax(wmax, unused);
      const uint32_t hi_bits = float_to_bits(wmax);
      if (rp.top_k > 0 && rp.top_k < V) {
        const float k = float(rp.top_k);
        thr = bisect(hi_bits, [&](float t) {
          return sum(0, V, [&](int32_t v) { return w(v) >= t ? 1.0f : 0.0f; }) >= k;
        });
      }
      if (rp.top_p < 1.0f) {
        const float thr_k = thr;
        const float target = rp.top_p * sum(0, V, [&](int32_t v) {
                               const float y = w(v);
                               return y >= thr_k ? y : 0.0f;
                             });
        const float thr_p = bisect(hi_bits, [&](float t) {
          const float c = fmaxf(t, thr_k);
          return sum(0, V, [&](int32_t v) {
                   const float y = w(v);
                   return y >= c ? y : 0.0f;
                 }) >= target;
        });
        thr = fmaxf(thr, thr_p);
      }
      thr = fmaxf(thr, rp.min_p * wmax);
    }
    st.thr = thr;
    const float z = sum(0, V, [&](int32_t v) {
      const float y = w(v);
      return y >= thr ? y : 0.0f;
    });
    st.inv_z = 1.0f / z;
    st.log_z = dlog(z);
    return st;
  }

  __device__ QStats qstats(int64_t node) {
    QStats qs;
    const TQ* q = draft_row(node);
    int32_t arg;
    max_argmax(q, qs.max, arg);
    const float m = qs.max;
    qs.inv_z = 1.0f / sum(0, P.vocab_size, [&](int32_t v) { return dexp(load_float(q, v) - m); });
    return qs;
  }

  __device__ float residual_at(int32_t v, int64_t row, const RowStats& st, const RowParams& rp,
                               const ResidualState& rs, int64_t qnode, const QStats& qs,
                               bool original = false) {
    const float p0 = target_prob(target_row(row), v, st, rp.inv_temp, P.target_is_probs);
    if (original || rs.num == rs.start) return p0;
    const float qv =
        qnode >= 0 ? draft_prob(draft_row(qnode), v, qs, P.q_kind == DraftQ::kLogits) : 0.0f;
    return residual_prob(rs, rs.num, P.q_kind, P.sampling, v, p0, qv);
  }

  __device__ float residual_mass(int64_t row, const RowStats& st, const RowParams& rp,
                                 const ResidualState& rs, int64_t qnode, const QStats& qs) {
    return sum(0, P.vocab_size,
               [&](int32_t v) { return residual_at(v, row, st, rp, rs, qnode, qs); });
  }

  __device__ int32_t sample(int64_t row, const RowStats& st, const RowParams& rp,
                            const ResidualState& rs, int64_t qnode, const QStats& qs, uint64_t seed,
                            uint64_t offset, int32_t node) {
    int32_t t = race(row, st, rp, rs, qnode, qs, seed, offset, node, false);
    if (t < 0 && rs.num > rs.start)  // residual mass 0 (p == q up to rounding): original p
      t = race(row, st, rp, rs, qnode, qs, seed, offset, node, true);
    return t < 0 ? st.argmax : t;  // no mass anywhere (invalid row): see validate="full"
  }

  /// Exponential race over the residual (or the original p); -1 when nothing has mass.
  __device__ int32_t race(int64_t row, const RowStats& st, const RowParams& rp,
                          const ResidualState& rs, int64_t qnode, const QStats& qs, uint64_t seed,
                          uint64_t offset, int32_t node, bool original) {
    auto f = [&](int32_t v) { return residual_at(v, row, st, rp, rs, qnode, qs, original); };
    return race_sample_cta(
        s, P.vocab_size, seed, offset, node, [&](int32_t lo, int32_t hi) { return sum(lo, hi, f); },
        f);
  }
};

template <typename TT, typename TQ>
__global__ void __launch_bounds__(kThreads) verify_batch_kernel(const VerifyParams P) {
  __shared__ Smem smem;
  CudaVerifyOps<TT, TQ> ops{P, smem};
  verify_request(P, int32_t(blockIdx.x), ops);
}

}  // namespace

void verify_batch(const VerifyParams& P, int device_id, int64_t stream) {
  DSPARK_CUDA_CHECK(cudaSetDevice(device_id));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  DSPARK_DISPATCH_FLOAT(P.target_dtype, TT, [&] {
    DSPARK_DISPATCH_FLOAT(P.draft_q_dtype, TQ, [&] {
      verify_batch_kernel<TT, TQ><<<P.num_requests, kThreads, 0, s>>>(P);
    });
  });
  DSPARK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dspark::cuda
