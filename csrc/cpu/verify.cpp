// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU backend of verify_batch: one request per task (parallel_for), the walk from
// include/dspark/verify/walk.h, and whole-row reductions as vectorisable loops. Only the rows the
// walk visits are read; the residual is evaluated on the fly, never materialised.
// This file is compiled once per ISA (DSPARK_CPU_ISA_NS = cpu_generic / cpu_avx2).
#include "cpu/verify.h"

#include <cmath>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/row_kernels.h"
#include "cpu/row_ops.h"
#include "dspark/verify/walk.h"

namespace dspark::cpu {
namespace DSPARK_CPU_ISA_NS {
namespace {

template <typename TT, typename TQ>
struct CpuVerifyOps {
  using TargetT = TT;
  using DraftT = TQ;
  const VerifyParams& P;
  std::vector<float>& w;   // scratch: weights of a truncated row
  std::vector<float>& w2;  // scratch: selection copy

  bool leader() const { return true; }
  const TT* target_row(int64_t row) const {
    return static_cast<const TT*>(P.target) + row * P.target_row_stride;
  }
  const TQ* draft_row(int64_t node) const {
    return static_cast<const TQ*>(P.draft_q) + node * P.draft_q_row_stride;
  }

  WeightParams weight_params(const RowStats& st, const RowParams& rp) const {
    WeightParams wp;
    wp.kind = !P.target_is_probs    ? WeightKind::kLogits
              : rp.inv_temp == 1.0f ? WeightKind::kProbs
                                    : WeightKind::kProbsTempered;
    wp.max = st.max;
    wp.inv_temp = rp.inv_temp;
    wp.thr = st.thr;
    wp.inv_z = st.inv_z;
    return wp;
  }

  /// Sum of f over the row in kChunk pieces (double across chunks keeps the total accurate).
  template <typename F>
  static double chunked(int32_t n, F&& f) {
    double s = 0.0;
    for (int32_t lo = 0; lo < n; lo += kChunk) s += f(lo, std::min(n, lo + kChunk));
    return s;
  }

  RowStats stats(int64_t row, const RowParams& rp) {
    RowStats st;
    const TT* x = target_row(row);
    const int32_t V = P.vocab_size;
    const bool probs = P.target_is_probs;
    if (rp.greedy) {
      if (P.logprobs && !probs) {
        double z;
        max_sumexp(x, V, 1.0f, st.max, st.argmax, z);
        st.log_z = float(std::log(z));
      } else {
        row_max_argmax(x, V, st.max, st.argmax);
      }
      return st;
    }
    const bool trunc = rp.truncates(V);
    if (probs && rp.inv_temp == 1.0f && !trunc) return st;  // p used as given: gathers only
    double z;
    if (!probs && !trunc) {
      max_sumexp(x, V, rp.inv_temp, st.max, st.argmax, z);  // one memory pass
    } else if (!trunc) {
      WeightParams wp = weight_params(st, rp);
      wp.inv_z = 1.0f;
      z = chunked(V, [&](int32_t lo, int32_t hi) { return sum_p0(x, lo, hi, wp); });
    } else {
      if (!probs) row_max_argmax(x, V, st.max, st.argmax);
      WeightParams wp = weight_params(st, rp);
      wp.inv_z = 1.0f;
      w.resize(V);
      const float wmax = fill_weights(x, V, wp, w.data());
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
      const float* wp0 = w.data();
      z = chunked(V, [&](int32_t lo, int32_t hi) { return sum_above(wp0 + lo, hi - lo, thr); });
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
    qs.inv_z = float(
        1.0 / chunked(P.vocab_size, [&](int32_t lo, int32_t hi) { return sum_exp(q, lo, hi, m); }));
    return qs;
  }

  /// Sum over [lo, hi) of the current residual (p0 itself when nothing was rejected).
  float residual_sum(int32_t lo, int32_t hi, int64_t row, const RowStats& st, const RowParams& rp,
                     const ResidualState& rs, int64_t qnode, const QStats& qs) const {
    const TT* x = target_row(row);
    const WeightParams wp = weight_params(st, rp);
    if (rs.num == rs.start) return sum_p0(x, lo, hi, wp);
    const TQ* q = qnode >= 0 ? draft_row(qnode) : nullptr;
    DraftParams dp;
    dp.logits = P.q_kind == DraftQ::kLogits;
    dp.max = qs.max;
    dp.inv_z = qs.inv_z;
    if (rs.num == 1 && q) return sum_residual1(x, q, lo, hi, wp, dp, rs.qscale[0], rs.inv_s[0]);
    float s = 0.0f;  // general chain (several rejections at one node): scalar
    for (int32_t v = lo; v < hi; ++v) s += residual_at(v, x, q, st, rp, rs, qs);
    return s;
  }

  float residual_at(int32_t v, const TT* x, const TQ* q, const RowStats& st, const RowParams& rp,
                    const ResidualState& rs, const QStats& qs) const {
    const float p0 = target_prob(x, v, st, rp.inv_temp, P.target_is_probs);
    const float qv = q ? draft_prob(q, v, qs, P.q_kind == DraftQ::kLogits) : 0.0f;
    return residual_prob(rs, rs.num, P.q_kind, P.sampling, v, p0, qv);
  }

  float residual_mass(int64_t row, const RowStats& st, const RowParams& rp, const ResidualState& rs,
                      int64_t qnode, const QStats& qs) {
    return float(chunked(P.vocab_size, [&](int32_t lo, int32_t hi) {
      return residual_sum(lo, hi, row, st, rp, rs, qnode, qs);
    }));
  }

  int32_t sample(int64_t row, const RowStats& st, const RowParams& rp, const ResidualState& rs,
                 int64_t qnode, const QStats& qs, uint64_t seed, uint64_t offset, int32_t node) {
    const TT* x = target_row(row);
    const TQ* q = qnode >= 0 ? draft_row(qnode) : nullptr;
    const int32_t t = race_sample(
        P.vocab_size, seed, offset, node,
        [&](int32_t lo, int32_t hi) { return residual_sum(lo, hi, row, st, rp, rs, qnode, qs); },
        [&](int32_t v) { return residual_at(v, x, q, st, rp, rs, qs); });
    if (t >= 0) return t;
    if (rs.num > rs.start) {  // residual mass 0 (p == q up to rounding): use the original p
      ResidualState reset = rs;
      reset.start = reset.num;
      return sample(row, st, rp, reset, qnode, qs, seed, offset, node);
    }
    return st.argmax;  // no mass anywhere (invalid row): see validate="full"
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
