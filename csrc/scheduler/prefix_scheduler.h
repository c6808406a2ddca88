// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. PrefixScheduler: per-request verification lengths from calibrated draft
// confidences and an SPS curve (docs/algorithms.md section 4: the greedy walk with early stop and
// its asynchronous variant).
#pragma once
#include <cstdint>
#include <memory>

#include "scheduler/load_monitor.h"
#include "scheduler/sps_table.h"

namespace dspark::scheduler {

/// One step's inputs: a row-major [R, G] block of per-position conditional confidences.
struct ScheduleInput {
  const float* confidences = nullptr;    ///< [R, G], element (r, j) at r * row_stride + j
  int64_t num_requests = 0;              ///< R >= 1
  int64_t draft_len = 0;                 ///< G >= 0
  int64_t row_stride = 0;                ///< elements between rows (>= G)
  const int32_t* max_lengths = nullptr;  ///< [R] optional per-request caps (>= 0)
  int64_t token_budget = -1;  ///< optional cap on tokens in the step (R + sum l); < 0: none
};

/// Summary of one decision: B tokens in the step, tau expected tokens, objective tau * SPS(B).
struct ScheduleSummary {
  int64_t tokens = 0;
  double expected_tokens = 0.0;
  double objective = 0.0;
};

class PrefixScheduler {
 public:
  /// Fixed curve.
  PrefixScheduler(std::shared_ptr<const SpsTable> table, bool early_stop);
  /// Curve read from a LoadMonitor at every call (one snapshot per call).
  PrefixScheduler(std::shared_ptr<LoadMonitor> monitor, bool early_stop);

  /// Algorithm 1. Writes lengths[R] (each in 0..G). With early_stop the walk ends at the first
  /// candidate that does not raise tau * SPS(B), which keeps verification lossless; without it the
  /// whole order is searched for the best prefix (biased; kept to demonstrate the spec's
  /// counterexample). O(R G) to form survivals plus O((k + R) log R) for k admitted candidates.
  ScheduleSummary schedule(const ScheduleInput& in, int32_t* lengths) const;

  /// Asynchronous variant, stage 1: the best number K of draft tokens for a step, by a global
  /// search over the survival order of (stale) confidences. Copes with step-shaped curves.
  int64_t capacity(const ScheduleInput& in) const;

  /// Asynchronous variant, stage 2: admit the global top-K candidates by current survival (no
  /// early stop: K was fixed before the current tokens were drawn). Writes lengths[R].
  ScheduleSummary admit_top_k(const ScheduleInput& in, int64_t k, int32_t* lengths) const;

  bool early_stop() const { return early_stop_; }
  std::shared_ptr<const SpsTable> current_table() const;

 private:
  std::shared_ptr<const SpsTable> table_;
  std::shared_ptr<LoadMonitor> monitor_;
  bool early_stop_;
};

}  // namespace dspark::scheduler
