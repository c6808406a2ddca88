// SPDX-License-Identifier: Apache-2.0
// Layer: include/. The per-request walk of lossless verification (docs/algorithms.md section 1,
// docs/verify_batch.md section 4), written once and run by both backends. `Ops` supplies the
// row-wide reductions: the CPU backend runs them on one thread, the CUDA backend with a whole CTA
// (every thread executes this walk in lockstep and gets the same reduction results, so control flow
// is uniform). Every decision is made here, from the same per-element functions, so CPU and CUDA
// emit the same tokens for the same inputs and seeds.
//
// Ops interface (all DSPARK_HOST_DEVICE):
//   using TargetT, DraftT;                       element types of the target and draft rows
//   bool leader();                               the thread that writes outputs
//   const TargetT* target_row(int64_t row);      const DraftT* draft_row(int64_t node);
//   RowStats stats(int64_t row, const RowParams&);
//   QStats qstats(int64_t node);                 softmax stats of a draft-logits row
//   float residual_mass(row, st, rp, rs, qnode, qs);       sum_v of the residual through rs.num
//   int32_t sample(row, st, rp, rs, qnode, qs, seed, offset, node);   exponential race over the
//       residual (unnormalised is fine); falls back to the original p when the residual has no mass
#pragma once
#include <cstdint>

#include "dspark/verify/params.h"
#include "dspark/verify/sampling.h"

namespace dspark {

DSPARK_HOST_DEVICE int32_t verify_next_child(const VerifyParams& P, int32_t n0, int32_t n,
                                             int32_t parent, int32_t after) {
  if (P.parents == nullptr) return (parent + 1 < n && after < parent + 1) ? parent + 1 : -1;
  for (int32_t c = (after > parent ? after : parent) + 1; c < n; ++c)
    if (P.parents[n0 + c] == parent) return c;
  return -1;
}

DSPARK_HOST_DEVICE int32_t clamp_index(int64_t x, int32_t lo, int32_t hi) {
  return int32_t(x < lo ? lo : (x > hi ? hi : x));
}

DSPARK_HOST_DEVICE int32_t verify_token(const VerifyParams& P, int64_t i) {
  const int64_t t = P.draft_tokens_int64 ? static_cast<const int64_t*>(P.draft_tokens)[i]
                                         : static_cast<const int32_t*>(P.draft_tokens)[i];
  return clamp_index(t, 0, P.vocab_size - 1);
}

/// Log-probability of token v under the processed target row (greedy: untempered log-softmax).
template <typename T>
DSPARK_HOST_DEVICE float verify_logprob(const T* row, int32_t v, const RowStats& st,
                                        const RowParams& rp, bool is_probs) {
  const float x = load_float(row, v);
  if (rp.greedy) return is_probs ? dlog(x) : (x - st.max) - st.log_z;
  const float w = raw_weight(x, st.max, rp.inv_temp, is_probs);
  return w >= st.thr ? dlog(w) - st.log_z : kNegInf;
}

/// Verifies request r and writes its outputs.
#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <class Ops>
DSPARK_HOST_DEVICE void verify_request(const VerifyParams& P, int32_t r, Ops& ops) {
  // Clamped so that even unvalidated garbage (validate="none") cannot index out of bounds.
  const int32_t n0 = clamp_index(P.draft_indptr[r], 0, P.num_nodes);
  const int32_t n = clamp_index(P.draft_indptr[r + 1], n0, P.num_nodes) - n0;
  const int64_t row0 = int64_t(n0) + r;  // request r owns rows [n0 + r, n0 + r + n]
  const RowParams rp = make_row_params(P, r);
  const uint64_t seed = P.seed ? uint64_t(P.seed[r]) : 0u;
  const uint64_t offset = P.offset ? uint64_t(P.offset[r]) : 0u;
  const int32_t cap = P.max_emit ? P.max_emit[r] : 0x7fffffff;
  const int32_t width = P.max_depth + 1;
  const bool is_probs = P.target_is_probs;
  int32_t* out_tokens = P.tokens + int64_t(r) * width;
  int32_t* out_path = P.path + int64_t(r) * P.max_depth;
  float* out_lp = P.logprobs ? P.logprobs + int64_t(r) * width : nullptr;
  if (ops.leader()) {
    for (int32_t i = 0; i < width; ++i) out_tokens[i] = -1;
    for (int32_t i = 0; i < P.max_depth; ++i) out_path[i] = -1;
    if (out_lp)
      for (int32_t i = 0; i < width; ++i) out_lp[i] = 0.0f;
    P.next_offset[r] = int64_t(offset + 1u);
  }
  if (cap <= 0) {  // max_emit = 0: nothing is emitted and nothing is read
    if (ops.leader()) {
      P.accept_len[r] = 0;
      P.num_emitted[r] = 0;
      P.final_token[r] = -1;
      P.final_is_bonus[r] = false;
      P.last_row[r] = -1;
    }
    return;
  }
  // max_emit caps the walk: at most cap-1 drafts are accepted and the cap-th token is the bonus,
  // which keeps every emitted token lossless.
  const int32_t depth_cap = cap - 1 < P.max_depth ? cap - 1 : P.max_depth;

  int32_t cur = -1, depth = 0;
  for (;;) {
    const int64_t row = row0 + cur + 1;
    const auto* trow = ops.target_row(row);
    const RowStats st = ops.stats(row, rp);
    ResidualState rs;
    QStats qs;
    int64_t qnode = -1;
    bool rejected = false;
    int32_t acc = -1, acc_tok = -1;
    for (int32_t c = depth < depth_cap ? verify_next_child(P, n0, n, cur, cur) : -1; c >= 0;
         c = verify_next_child(P, n0, n, cur, c)) {
      const int32_t tok = verify_token(P, int64_t(n0) + c);
      if (rp.greedy) {
        if (tok == st.argmax) {
          acc = c;
          acc_tok = tok;
          break;
        }
        rejected = true;
        continue;
      }
      if (rs.num >= kMaxSiblings) break;  // checked on the host; defensive only
      float qv = 0.0f, q_t = 1.0f;
      if (P.q_kind != DraftQ::kDeterministic) {
        if (qnode < 0) {  // siblings share the row their tokens were drawn from
          qnode = int64_t(n0) + c;
          if (P.q_kind == DraftQ::kLogits) qs = ops.qstats(qnode);
        }
        qv = draft_prob(ops.draft_row(qnode), tok, qs, P.q_kind == DraftQ::kLogits);
        const bool tried =
            P.sampling == DraftSampling::kWithoutReplacement && tried_before(rs, rs.num, tok);
        q_t = tried ? 0.0f : qv * next_qscale(rs, P.sampling);
      }
      const float p0 = target_prob(trow, tok, st, rp.inv_temp, is_probs);
      const float p_t = residual_prob(rs, rs.num, P.q_kind, P.sampling, tok, p0, qv);
      const float u = accept_uniform(seed, offset, c);
      if (u * q_t < p_t) {
        acc = c;
        acc_tok = tok;
        break;
      }
      // Rejected: add step k to the residual chain and compute its normaliser S_k.
      rejected = true;
      const int32_t k = rs.num;
      rs.tok[k] = tok;
      rs.qscale[k] = next_qscale(rs, P.sampling);
      rs.inv_s[k] = 1.0f;
      rs.num = k + 1;
      // The normaliser S_k is only needed if another child will be tested against P_k: the
      // final race is scale-free (a zero-mass residual is detected by the race itself).
      const bool more = verify_next_child(P, n0, n, cur, c) >= 0;
      const float s = P.q_kind == DraftQ::kDeterministic ? 1.0f - p_t
                      : more ? ops.residual_mass(row, st, rp, rs, qnode, qs)
                             : 1.0f;
      if (s > 0.0f && s < kInf) {
        rs.inv_s[k] = 1.0f / s;
      } else {
        rs.start = rs.num;  // zero residual mass (p == q up to rounding): back to the original p
      }
      if (P.sampling == DraftSampling::kWithoutReplacement && !tried_before(rs, k, tok))
        rs.q_tried += qv;
      rs.bloom |= uint64_t(1) << (uint32_t(tok) & 63u);
    }
    if (acc >= 0) {
      if (ops.leader()) {
        out_tokens[depth] = acc_tok;
        out_path[depth] = acc;
        if (out_lp) out_lp[depth] = verify_logprob(trow, acc_tok, st, rp, is_probs);
      }
      cur = acc;
      ++depth;
      continue;
    }
    const int32_t final_tok =
        rp.greedy ? st.argmax : ops.sample(row, st, rp, rs, qnode, qs, seed, offset, cur);
    if (ops.leader()) {
      out_tokens[depth] = final_tok;
      if (out_lp) out_lp[depth] = verify_logprob(trow, final_tok, st, rp, is_probs);
      P.accept_len[r] = depth;
      P.num_emitted[r] = depth + 1;
      P.final_token[r] = final_tok;
      P.final_is_bonus[r] = !rejected;
      P.last_row[r] = int32_t(row);
    }
    return;
  }
}

}  // namespace dspark
