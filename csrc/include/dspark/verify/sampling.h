// SPDX-License-Identifier: Apache-2.0
// Layer: include/. Per-element maths of lossless verification (docs/algorithms.md section 1),
// shared by the CPU and CUDA backends: processed target probabilities, the residual after rejected
// children, and the exponential race used to draw a token.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"
#include "dspark/math.h"
#include "dspark/philox.h"
#include "dspark/verify/params.h"

namespace dspark {

/// Statistics of one processed target row p (temperature, then top-k, top-p, min-p).
/// p(v) = w(v) * inv_z if w(v) >= thr else 0, with w(v) = exp((x_v - max) / T) for logits and
/// w(v) = x_v^(1/T) for probabilities.
struct RowStats {
  float max = 0.0f;    // max of the raw row (logits only)
  int32_t argmax = 0;  // lowest index of the maximum (greedy)
  float thr = 0.0f;    // weight threshold from top-k/top-p/min-p (0: keep all)
  float inv_z = 1.0f;  // 1 / sum of kept weights
  float log_z = 0.0f;  // log of the same sum (for log-probabilities)
};

/// Unnormalised weight w(v) of a raw row value x (before the threshold).
DSPARK_HOST_DEVICE float raw_weight(float x, float row_max, float inv_temp, bool is_probs) {
  if (is_probs) return inv_temp == 1.0f ? x : (x > 0.0f ? dexp(inv_temp * dlog(x)) : 0.0f);
  return dexp((x - row_max) * inv_temp);
}

/// Processed probability p(v) of the target row.
template <typename T>
DSPARK_HOST_DEVICE float target_prob(const T* row, int32_t v, const RowStats& st, float inv_temp,
                                     bool is_probs) {
  const float w = raw_weight(load_float(row, v), st.max, inv_temp, is_probs);
  return w >= st.thr ? w * st.inv_z : 0.0f;
}

/// Statistics of a draft row given as logits: q = softmax(x) (no temperature: the caller passes
/// the logits of the distribution the token was actually drawn from).
struct QStats {
  float max = 0.0f;
  float inv_z = 1.0f;
};

/// q(v) of a draft row (probabilities are used as given).
template <typename T>
DSPARK_HOST_DEVICE float draft_prob(const T* row, int32_t v, const QStats& qs, bool is_logits) {
  const float x = load_float(row, v);
  return is_logits ? dexp(x - qs.max) * qs.inv_z : x;
}

// ---------------------------------------------------------------------------------------------
// Residual after rejected children.
// Step k rejects child token t_k drawn from Q_k; P_k = max(0, P_{k-1} - Q_k) / S_k. Q_k is q for
// sampling with replacement, q restricted to untried tokens and renormalised without replacement,
// and one-hot(t_k) for deterministic drafts (then P_k is P_{k-1} without t_k, renormalised).
// The residual is never materialised: it is evaluated per element from p(v), q(v) and these
// scalars, so both backends compute it identically and no [V] workspace is needed.

struct ResidualState {
  int32_t num = 0;       // children rejected so far at this node
  int32_t start = 0;     // first step of the chain (moved past steps whose residual mass was 0)
  uint64_t bloom = 0;    // bit (t & 63) set for every tried token: a cheap membership pre-filter
  float q_tried = 0.0f;  // sum of q over tried tokens (without replacement)
  int32_t tok[kMaxSiblings];
  float qscale[kMaxSiblings];
  float inv_s[kMaxSiblings];
};

DSPARK_HOST_DEVICE bool tried_before(const ResidualState& rs, int32_t k, int32_t v) {
  if (!((rs.bloom >> (uint32_t(v) & 63u)) & 1u)) return false;
  for (int32_t m = 0; m < k; ++m)
    if (rs.tok[m] == v) return true;
  return false;
}

/// Q_k(v) for step k, given the base draft probability qv = q(v).
DSPARK_HOST_DEVICE float step_q(const ResidualState& rs, int32_t k, DraftQ kind,
                                DraftSampling sampling, int32_t v, float qv) {
  if (kind == DraftQ::kDeterministic) return v == rs.tok[k] ? 1.0f : 0.0f;
  if (sampling == DraftSampling::kWithoutReplacement && tried_before(rs, k, v)) return 0.0f;
  return qv * rs.qscale[k];
}

/// Residual probability at v after the steps [start, end) (end = num for the current residual).
DSPARK_HOST_DEVICE float residual_prob(const ResidualState& rs, int32_t end, DraftQ kind,
                                       DraftSampling sampling, int32_t v, float p0, float qv) {
  float r = p0;
  for (int32_t k = rs.start; k < end; ++k) {
    const float d = r - step_q(rs, k, kind, sampling, v, qv);
    r = (d > 0.0f ? d : 0.0f) * rs.inv_s[k];
  }
  return r;
}

/// Scale of Q for the next tried child (1 with replacement; 1/(1 - tried mass) without).
DSPARK_HOST_DEVICE float next_qscale(const ResidualState& rs, DraftSampling sampling) {
  if (sampling == DraftSampling::kWithReplacement) return 1.0f;
  const float rest = 1.0f - rs.q_tried;
  return rest > 0.0f ? 1.0f / rest : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// Random numbers. key = seed, counter = (index, (node + 1) << 2 | purpose, offset). One call of
// verify_batch consumes exactly one offset per request, so next_offset = offset + 1.

DSPARK_HOST_DEVICE Philox4 verify_philox(uint64_t seed, uint64_t offset, int32_t node,
                                         uint32_t purpose, uint32_t index) {
  return philox4x32_10(index, (uint32_t(node + 1) << 2) | purpose, uint32_t(offset),
                       uint32_t(offset >> 32), uint32_t(seed), uint32_t(seed >> 32));
}

/// Uniform in [0, 1) for the acceptance test of child node `node`.
DSPARK_HOST_DEVICE float accept_uniform(uint64_t seed, uint64_t offset, int32_t node) {
  return uniform_open1(verify_philox(seed, offset, node, kPurposeAccept, 0).v[0]);
}

/// Standard exponential for race block `b` of the row of node `node`.
DSPARK_HOST_DEVICE float block_exponential(uint64_t seed, uint64_t offset, int32_t node,
                                           int32_t b) {
  return -dlog(
      uniform_open01(verify_philox(seed, offset, node, kPurposeBlockRace, uint32_t(b)).v[0]));
}

/// Standard exponentials for tokens 4i .. 4i+3 of the row of node `node`.
DSPARK_HOST_DEVICE void token_exponentials(uint64_t seed, uint64_t offset, int32_t node, uint32_t i,
                                           float e[4]) {
  const Philox4 x = verify_philox(seed, offset, node, kPurposeTokenRace, i);
  for (int j = 0; j < 4; ++j) e[j] = -dlog(uniform_open01(x.v[j]));
}

/// Race update: candidate (mass m, exponential e) beats the current best key when m / e is larger
/// (strictly: ties keep the lower index). Zero mass never wins.
DSPARK_HOST_DEVICE bool race_better(float m, float e, float best_key, float& key) {
  if (!(m > 0.0f)) return false;
  key = m / e;
  return key > best_key;
}

}  // namespace dspark
