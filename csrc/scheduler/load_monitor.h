// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. LoadMonitor: refines an SpsTable online from observed (tokens, step time)
// pairs so the scheduler follows the real engine (docs/algorithms.md section 4, last paragraph).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "scheduler/sps_table.h"

namespace dspark::scheduler {

/// Tuning of the robust online update (see LoadMonitor).
struct LoadMonitorOptions {
  double alpha = 0.05;      ///< learning rate of the exponentially weighted estimates, (0, 1]
  double clip = 3.0;        ///< residuals are clipped at clip * scale (Huber-style), > 0
  double init_scale = 0.1;  ///< initial scale, as a fraction of each grid point's step time
  bool monotone = true;     ///< publish non-decreasing step times (more tokens never run faster)
};

/// Thread-safe, O(log n) per observation. Keeps, per grid point of the initial table, a step-time
/// estimate m_i and a robust scale s_i. An observation (B, t) is compared with the interpolated
/// prediction; the residual is clipped to +-clip * s (so one stalled step moves the curve by at
/// most alpha * clip * s) and distributed over the two neighbouring grid points by their
/// interpolation weights (a stochastic gradient step on the piecewise-linear model). Scales track
/// the mean absolute clipped residual, so a persistent shift widens the clip and is followed.
/// Published curves scale never-observed grid points by the correction of the nearest observed one.
class LoadMonitor {
 public:
  LoadMonitor(const SpsTable& initial, LoadMonitorOptions options);

  /// Records one engine step of `tokens` tokens that took `step_seconds`. Steps beyond the last
  /// grid point are counted but not used (the profile should cover the engine's maximum).
  void observe(double tokens, double step_seconds);

  /// The current curve (copy-on-write snapshot, rebuilt only after new observations).
  std::shared_ptr<const SpsTable> table();

  int64_t num_observations() const;
  int64_t num_clipped() const;
  int64_t num_out_of_range() const;
  std::vector<int64_t> counts() const;  ///< observations attributed to each grid point

 private:
  LoadMonitorOptions opt_;
  Interpolation mode_;
  std::vector<double> tokens_;
  mutable std::mutex mu_;
  std::vector<double> time_;   // step-time estimate per grid point, seconds
  std::vector<double> prior_;  // the initial profile (unobserved points follow their neighbours)
  std::vector<double> scale_;  // robust residual scale per grid point, seconds
  std::vector<int64_t> count_;
  int64_t observed_ = 0, clipped_ = 0, out_of_range_ = 0;
  std::shared_ptr<const SpsTable> snapshot_;  // null when stale
};

}  // namespace dspark::scheduler
