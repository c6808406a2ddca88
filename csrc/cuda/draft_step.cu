// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. CUDA backend of draft_step: one CTA per request runs its G steps in order (step k
// needs token k-1). Each step computes the Markov bias for the whole vocabulary (threads over V,
// a rank-r dot each), writes the processed logits, and samples with the exponential race shared
// with verify_batch. Exact mode only (candidates > 0 is CPU-only for now).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.h"
#include "cuda/draft_step.h"
#include "dspark/draft/markov_step.h"
#include "dspark/verify/sampling.h"

namespace dspark::cuda {
namespace {

constexpr int kThreads = 256;
template <typename TU, typename TW, typename TH>
__global__ void __launch_bounds__(kThreads) draft_step_kernel(const DraftStepParams P) {
  __shared__ BlockReduce<kThreads> red;
  const int32_t req = blockIdx.x, G = P.steps, V = P.vocab_size, r = P.rank;
  const TW* W1 = static_cast<const TW*>(P.w1);
  const TW* W2 = static_cast<const TW*>(P.w2);
  const int64_t a = P.anchors_int64 ? static_cast<const int64_t*>(P.anchors)[req]
                                    : static_cast<const int32_t*>(P.anchors)[req];
  int32_t prev = int32_t(a < 0 ? 0 : (a >= V ? V - 1 : a));
  const float t = P.temperature ? P.temperature[req] : 0.0f;
  const bool greedy = !(t > 0.0f);
  const float inv_t = greedy ? 1.0f : 1.0f / t;
  const uint64_t seed = uint64_t(P.seed[req]), offset = uint64_t(P.offset[req]);
  for (int32_t k = 0; k < G; ++k) {
    const TW* w1r = W1 + int64_t(prev) * r;
    if (P.confidence && threadIdx.x == 0) {
      const TH* h =
          static_cast<const TH*>(P.hidden) + req * P.hidden_stride_r + k * P.hidden_stride_g;
      P.confidence[req * G + k] =
          confidence_value(h, w1r, P.conf_weight, P.conf_bias, P.hidden_size, r);
    }
    const TU* u =
        static_cast<const TU*>(P.base_logits) + req * P.base_stride_r + k * P.base_stride_g;
    float* out = P.draft_logits + (int64_t(req) * G + k) * V;
    float m = kNegInf;
    int32_t arg = 0x7fffffff;
    for (int32_t v = threadIdx.x; v < V; v += kThreads) {
      const float l = (load_float(u, v) + row_dot(W2 + int64_t(v) * r, w1r, r)) * inv_t;
      out[v] = l;
      if (l > m) {
        m = l;
        arg = v;
      }
    }
    red.argmax(m, arg);
    __syncthreads();  // the row written above is read back by other threads below
    int32_t tok = arg;
    if (!greedy) {
      auto w = [&](int32_t v) { return dexp(out[v] - m); };
      auto mass = [&](int32_t lo, int32_t hi) {
        float acc = 0.0f;
        for (int32_t v = lo + threadIdx.x; v < hi; v += kThreads) acc += w(v);
        return red.sum(acc);
      };
      const int32_t t = race_sample_cta(red, V, seed, offset, draft_race_node(k), mass, w);
      if (t >= 0) tok = t;
    }
    if (threadIdx.x == 0) P.tokens[req * G + k] = tok;
    prev = tok;
    __syncthreads();
  }
  if (threadIdx.x == 0) P.next_offset[req] = int64_t(offset + 1u);
}

}  // namespace

void draft_step(const DraftStepParams& P, int device_id, int64_t stream) {
  DSPARK_CUDA_CHECK(cudaSetDevice(device_id));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  DSPARK_DISPATCH_FLOAT(P.base_dtype, TU, [&] {
    DSPARK_DISPATCH_FLOAT(P.w_dtype, TW, [&] {
      DSPARK_DISPATCH_FLOAT(P.hidden_dtype, TH, [&] {
        draft_step_kernel<TU, TW, TH><<<P.num_requests, kThreads, 0, s>>>(P);
      });
    });
  });
  DSPARK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dspark::cuda
