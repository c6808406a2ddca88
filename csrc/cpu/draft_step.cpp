// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU backend of draft_step (the DSpark sequential stage). Step k of every request
// depends on token k-1, so the op walks the G steps in order; within a step the bias GEMV is done
// for all requests at once, tiled over the vocabulary so each W2 tile is read from memory once per
// step (a GEMM [R, r] x [r, V], fused with the add, the temperature and the write of the logits),
// then every request samples its token with the same exponential race as verify_batch.
// Compiled once per ISA (DSPARK_CPU_ISA_NS).
#include "cpu/draft_step.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/row_kernels.h"
#include "cpu/row_ops.h"
#include "dspark/draft/markov_step.h"
#include "dspark/verify/sampling.h"

namespace dspark::cpu {
namespace DSPARK_CPU_ISA_NS {
namespace {

constexpr int32_t kVocabTile = 64;  // W2 rows per task: 64 x r(256) x 4 B = 64 KB, stays in L2

template <typename T>
DSPARK_CPU_KERNEL float dot_rank(const T* a, const float* b, int32_t r) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int32_t j = 0; j < r; ++j) s += load_float(a, j) * b[j];
  return s;
}

/// Sample from softmax(row) by the two-level exponential race of verify_batch (greedy: argmax).
int32_t sample_row(const float* row, int32_t V, bool greedy, uint64_t seed, uint64_t offset,
                   int32_t node) {
  float m;
  int32_t arg;
  row_max_argmax(row, V, m, arg);
  if (greedy || !(m > kNegInf)) return arg;
  const int32_t t = race_sample(
      V, seed, offset, node, [&](int32_t lo, int32_t hi) { return sum_exp(row, lo, hi, m); },
      [&](int32_t v) { return dexp(row[v] - m); });
  return t >= 0 ? t : arg;
}

/// Indices of the K largest values of x (ties: lower index first), in ascending index order.
/// One pass with a size-K min-heap: most elements cost a single comparison.
template <typename T>
void top_k_indices(const T* x, int32_t V, int32_t K, std::vector<int32_t>& out) {
  // heap of (value, index); the root is the current K-th best (smallest value, then largest index)
  auto worse = [&](int32_t a, int32_t b) {  // true when a ranks after b
    const float xa = load_float(x, a), xb = load_float(x, b);
    return xa < xb || (xa == xb && a > b);
  };
  auto cmp = [&](int32_t a, int32_t b) { return worse(b, a); };  // min-heap by rank
  out.resize(K);
  std::iota(out.begin(), out.end(), 0);
  std::make_heap(out.begin(), out.end(), cmp);
  for (int32_t v = K; v < V; ++v) {
    if (load_float(x, v) >
        load_float(x, out.front())) {  // strictly better (ties keep the lower index)
      std::pop_heap(out.begin(), out.end(), cmp);
      out.back() = v;
      std::push_heap(out.begin(), out.end(), cmp);
    }
  }
  std::sort(out.begin(), out.end());
}

/// sample_row restricted to a sorted candidate list (the row is -inf elsewhere): the same race,
/// with block masses accumulated from the candidates.
int32_t sample_sparse(const float* row, const std::vector<int32_t>& cand, int32_t V, bool greedy,
                      uint64_t seed, uint64_t offset, int32_t node) {
  float m = kNegInf;
  int32_t arg = cand.empty() ? 0 : cand[0];
  for (const int32_t v : cand)
    if (row[v] > m) {
      m = row[v];
      arg = v;
    }
  if (greedy || !(m > kNegInf)) return arg;
  const int32_t nb = (V + kRaceBlock - 1) / kRaceBlock;
  thread_local std::vector<float> mass;
  mass.assign(nb, 0.0f);
  for (const int32_t v : cand) mass[v / kRaceBlock] += dexp(row[v] - m);
  float best_key = 0.0f, key;
  int32_t best_block = -1;
  for (int32_t b = 0; b < nb; ++b)
    if (race_better(mass[b], block_exponential(seed, offset, node, b), best_key, key)) {
      best_key = key;
      best_block = b;
    }
  int32_t best = arg;
  best_key = 0.0f;
  for (const int32_t v : cand) {
    if (v / kRaceBlock != best_block) continue;
    float e[4];
    token_exponentials(seed, offset, node, uint32_t(v) >> 2, e);
    if (race_better(dexp(row[v] - m), e[v & 3], best_key, key)) {
      best_key = key;
      best = v;
    }
  }
  return best;
}

template <typename TU, typename TW, typename TH>
void run(const DraftStepParams& P) {
  const int32_t R = P.num_requests, G = P.steps, V = P.vocab_size, r = P.rank;
  const TU* U = static_cast<const TU*>(P.base_logits);
  const TW* W1 = static_cast<const TW*>(P.w1);
  const TW* W2 = static_cast<const TW*>(P.w2);
  std::vector<int32_t> prev(R);
  std::vector<float> inv_t(R), w1_rows(size_t(R) * r);
  std::vector<std::vector<int32_t>> cands(P.candidates > 0 ? R : 0);  // per-request top-K of U_k
  for (int32_t i = 0; i < R; ++i) {
    const int64_t a = P.anchors_int64 ? static_cast<const int64_t*>(P.anchors)[i]
                                      : static_cast<const int32_t*>(P.anchors)[i];
    prev[i] = int32_t(std::min<int64_t>(std::max<int64_t>(a, 0), V - 1));
    const float t = P.temperature ? P.temperature[i] : 0.0f;
    inv_t[i] = t > 0.0f ? 1.0f / t : 1.0f;
    P.next_offset[i] = P.offset[i] + 1;
  }
  for (int32_t k = 0; k < G; ++k) {
    for (int32_t i = 0; i < R; ++i)  // W1[x_{k-1}] as float, reused by every vocabulary tile
      for (int32_t j = 0; j < r; ++j)
        w1_rows[size_t(i) * r + j] = load_float(W1 + int64_t(prev[i]) * r, j);
    if (P.confidence) {
      for (int32_t i = 0; i < R; ++i) {
        const TH* h =
            static_cast<const TH*>(P.hidden) + i * P.hidden_stride_r + k * P.hidden_stride_g;
        P.confidence[i * G + k] = confidence_value(h, W1 + int64_t(prev[i]) * r, P.conf_weight,
                                                   P.conf_bias, P.hidden_size, r);
      }
    }
    auto out_row = [&](int32_t i) { return P.draft_logits + (int64_t(i) * G + k) * V; };
    auto u_row = [&](int32_t i) { return U + i * P.base_stride_r + k * P.base_stride_g; };
    if (P.candidates <= 0) {
      const int32_t tiles = (V + kVocabTile - 1) / kVocabTile;
      parallel_for(0, tiles, [&](int64_t t) {
        const int32_t lo = int32_t(t) * kVocabTile, hi = std::min(V, lo + kVocabTile);
        for (int32_t i = 0; i < R; ++i) {
          const float* w1r = w1_rows.data() + size_t(i) * r;
          const TU* u = u_row(i);
          float* out = out_row(i);
          for (int32_t v = lo; v < hi; ++v)
            out[v] = (load_float(u, v) + dot_rank(W2 + int64_t(v) * r, w1r, r)) * inv_t[i];
        }
      });
    } else {
      const int32_t K = std::min(P.candidates, V);
      parallel_for(0, R, [&](int64_t i) {
        std::vector<int32_t>& idx = cands[i];
        const TU* u = u_row(int32_t(i));
        float* out = out_row(int32_t(i));
        top_k_indices(u, V, K, idx);
        std::fill(out, out + V, kNegInf);
        const float* w1r = w1_rows.data() + size_t(i) * r;
        for (const int32_t v : idx)
          out[v] = (load_float(u, v) + dot_rank(W2 + int64_t(v) * r, w1r, r)) * inv_t[i];
      });
    }
    if (P.candidates > 0) {  // sample among the candidates only (the other logits are -inf)
      parallel_for(0, R, [&](int64_t i) {
        const bool greedy = !(P.temperature && P.temperature[i] > 0.0f);
        const int32_t tok =
            sample_sparse(out_row(int32_t(i)), cands[i], V, greedy, uint64_t(P.seed[i]),
                          uint64_t(P.offset[i]), draft_race_node(k));
        prev[i] = tok;
        P.tokens[i * G + k] = tok;
      });
      continue;
    }
    parallel_for(0, R, [&](int64_t i) {
      const bool greedy = !(P.temperature && P.temperature[i] > 0.0f);
      const int32_t tok = sample_row(out_row(int32_t(i)), V, greedy, uint64_t(P.seed[i]),
                                     uint64_t(P.offset[i]), draft_race_node(k));
      prev[i] = tok;
      P.tokens[i * G + k] = tok;
    });
  }
}

}  // namespace

void draft_step(const DraftStepParams& P) {
  DSPARK_DISPATCH_FLOAT(P.base_dtype, TU, [&] {
    DSPARK_DISPATCH_FLOAT(P.w_dtype, TW, [&] {
      DSPARK_DISPATCH_FLOAT(P.hidden_dtype, TH, [&] { run<TU, TW, TH>(P); });
    });
  });
}

}  // namespace DSPARK_CPU_ISA_NS
}  // namespace dspark::cpu
