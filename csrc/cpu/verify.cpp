// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU backend of verify_batch: one request per task (parallel_for), the walk from
// include/dspark/verify/walk.h, and whole-row reductions as vectorisable loops. Only the rows the
// walk visits are read; the residual is evaluated on the fly, never materialised.
// This file is compiled once per ISA (DSPARK_CPU_ISA_NS = cpu_generic / cpu_avx2).
#include <cmath>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/row_ops.h"
#include "cpu/verify.h"
#include "dspark/verify/walk.h"

namespace dspark::cpu {
namespace DSPARK_CPU_ISA_NS {
namespace {

template <typename TT, typename TQ>
struct CpuVerifyOps {
  using TargetT = TT;
  using DraftT = TQ;
  const VerifyParams& P;
  std::vector<float>& w;    // scratch: processed weights of a truncated row
  std::vector<float>& w2;   // scratch: selection copy

  bool leader() const { return true; }
  const TT* target_row(int64_t row) const {
    return static_cast<const TT*>(P.target) + row * P.target_row_stride;
  }
  const TQ* draft_row(int64_t node) const {
    return static_cast<const TQ*>(P.draft_q) + node * P.draft_q_row_stride;
  }

  RowStats stats(int64_t row, const RowParams& rp) {
    RowStats st;
    const TT* x = target_row(row);
    const int32_t V = P.vocab_size;
    const bool probs = P.target_is_probs;
    if (rp.greedy) {
      row_max_argmax(x, V, st.max, st.argmax);
      if (P.logprobs && !probs) {
        const float m = st.max;
        st.log_z = float(std::log(row_sum(V, [&](int32_t v) { return dexp(load_float(x, v) - m); })));
      }
      return st;
    }
    const bool trunc = rp.truncates(V);
    if (probs && rp.inv_temp == 1.0f && !trunc) return st;  // p used as given: gathers only
    if (!probs) row_max_argmax(x, V, st.max, st.argmax);
    const float m = st.max, it = rp.inv_temp;
    double z;
    if (!trunc) {
      z = row_sum(V, [&](int32_t v) { return raw_weight(load_float(x, v), m, it, probs); });
    } else {
      w.resize(V);
      float wmax = 0.0f;
#pragma omp simd reduction(max : wmax)
      for (int32_t v = 0; v < V; ++v) {
        w[v] = raw_weight(load_float(x, v), m, it, probs);
        wmax = std::max(wmax, w[v]);
      }
      float thr = 0.0f;
      if (rp.top_k > 0 && rp.top_k < V) {
        w2.assign(w.begin(), w.end());
        thr = top_k_threshold(w2, rp.top_k);
      }
      if (rp.top_p < 1.0f) {
        w2.clear();
        double zk = 0.0;
        for (int32_t v = 0; v < V; ++v)
          if (w[v] >= thr) {
            w2.push_back(w[v]);
            zk += w[v];
          }
        thr = std::max(thr, top_p_threshold(w2.data(), int64_t(w2.size()), double(rp.top_p) * zk));
      }
      thr = std::max(thr, rp.min_p * wmax);
      st.thr = thr;
      const float* wp = w.data();
      z = row_sum(V, [&](int32_t v) { return wp[v] >= thr ? wp[v] : 0.0f; });
    }
    st.inv_z = float(1.0 / z);
    st.log_z = float(std::log(z));
    return st;
  }

  QStats qstats(int64_t node) {
    QStats qs;
    const TQ* q = draft_row(node);
    int32_t arg;
    row_max_argmax(q, P.vocab_size, qs.max, arg);
    const float m = qs.max;
    qs.inv_z = float(1.0 / row_sum(P.vocab_size, [&](int32_t v) { return dexp(load_float(q, v) - m); }));
    return qs;
  }

  // Calls body(f) with f(v) = current residual weight at v, picking a vectorisable form for the
  // common cases (no rejection yet; first rejection) and the general chain otherwise.
  template <typename Body>
  auto with_residual(int64_t row, const RowStats& st, const RowParams& rp, const ResidualState& rs,
                     int64_t qnode, const QStats& qs, Body&& body) {
    const TT* x = target_row(row);
    const bool probs = P.target_is_probs;
    const float m = st.max, it = rp.inv_temp, thr = st.thr, iz = st.inv_z;
    auto p0 = [=](int32_t v) {
      const float wv = raw_weight(load_float(x, v), m, it, probs);
      return wv >= thr ? wv * iz : 0.0f;
    };
    const bool q_logits = P.q_kind == DraftQ::kLogits;
    const TQ* q = qnode >= 0 ? draft_row(qnode) : nullptr;
    const float qmax = qs.max, qiz = qs.inv_z;
    auto qv = [=](int32_t v) {
      const float y = load_float(q, v);
      return q_logits ? dexp(y - qmax) * qiz : y;
    };
    if (rs.num == rs.start) return body(p0);
    if (rs.num == 1 && P.q_kind != DraftQ::kDeterministic) {
      const float qsc = rs.qscale[0], is0 = rs.inv_s[0];
      return body([=](int32_t v) {
        const float d = p0(v) - qv(v) * qsc;
        return (d > 0.0f ? d : 0.0f) * is0;
      });
    }
    const DraftQ kind = P.q_kind;
    const DraftSampling samp = P.sampling;
    return body([=, &rs](int32_t v) {
      return residual_prob(rs, rs.num, kind, samp, v, p0(v), q ? qv(v) : 0.0f);
    });
  }

  float residual_mass(int64_t row, const RowStats& st, const RowParams& rp,
                      const ResidualState& rs, int64_t qnode, const QStats& qs) {
    return with_residual(row, st, rp, rs, qnode, qs,
                         [&](auto f) { return float(row_sum(P.vocab_size, f)); });
  }

  int32_t sample(int64_t row, const RowStats& st, const RowParams& rp, const ResidualState& rs,
                 int64_t qnode, const QStats& qs, uint64_t seed, uint64_t offset, int32_t node) {
    return with_residual(row, st, rp, rs, qnode, qs, [&](auto f) -> int32_t {
      const int32_t V = P.vocab_size;
      // Stage 1: race between fixed blocks by mass; stage 2: race between the block's tokens.
      float best_key = 0.0f, key;
      int32_t best_block = -1;
      for (int32_t b = 0, lo = 0; lo < V; ++b, lo += kRaceBlock) {
        const float mass = range_sum(lo, std::min(V, lo + kRaceBlock), f);
        if (race_better(mass, block_exponential(seed, offset, node, b), best_key, key)) {
          best_key = key;
          best_block = b;
        }
      }
      if (best_block < 0) return st.argmax;  // no mass anywhere (invalid row): see validate="full"
      const int32_t lo = best_block * kRaceBlock, hi = std::min(V, lo + kRaceBlock);
      int32_t best = lo;
      best_key = 0.0f;
      float e[4];
      for (int32_t v = lo; v < hi; ++v) {
        if ((v & 3) == 0 || v == lo) token_exponentials(seed, offset, node, uint32_t(v) >> 2, e);
        if (race_better(f(v), e[v & 3], best_key, key)) {
          best_key = key;
          best = v;
        }
      }
      return best;
    });
  }
};

template <typename TT, typename TQ>
void run(const VerifyParams& P) {
  parallel_for(0, P.num_requests, [&](int64_t r) {
    thread_local std::vector<float> w, w2;
    CpuVerifyOps<TT, TQ> ops{P, w, w2};
    verify_request(P, int32_t(r), ops);
  });
}

}  // namespace

void verify_batch(const VerifyParams& P) {
  DSPARK_DISPATCH_FLOAT(P.target_dtype, TT, [&] {
    DSPARK_DISPATCH_FLOAT(P.draft_q_dtype, TQ, [&] { run<TT, TQ>(P); });
  });
}

}  // namespace DSPARK_CPU_ISA_NS
}  // namespace dspark::cpu
