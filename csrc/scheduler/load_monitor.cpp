// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. LoadMonitor implementation (see load_monitor.h for the update rule).
#include "scheduler/load_monitor.h"

#include <algorithm>
#include <cmath>

#include "dspark/macros.h"

namespace dspark::scheduler {

LoadMonitor::LoadMonitor(const SpsTable& initial, LoadMonitorOptions options)
    : opt_(options),
      mode_(initial.mode()),
      tokens_(initial.tokens()),
      time_(initial.step_times()),
      prior_(initial.step_times()),
      count_(initial.tokens().size(), 0) {
  DSPARK_CHECK(opt_.alpha > 0.0 && opt_.alpha <= 1.0, "alpha: expected a value in (0, 1], got ",
               opt_.alpha);
  DSPARK_CHECK(opt_.clip > 0.0 && std::isfinite(opt_.clip), "clip: expected a positive value, got ",
               opt_.clip);
  DSPARK_CHECK(opt_.init_scale > 0.0 && std::isfinite(opt_.init_scale),
               "init_scale: expected a positive value, got ", opt_.init_scale);
  scale_.reserve(time_.size());
  for (double t : time_) scale_.push_back(opt_.init_scale * t);
}

void LoadMonitor::observe(double tokens, double step_seconds) {
  DSPARK_CHECK(std::isfinite(tokens) && tokens >= 1.0, "tokens: expected a token count >= 1, got ",
               tokens);
  DSPARK_CHECK(std::isfinite(step_seconds) && step_seconds > 0.0,
               "step_seconds: expected a positive finite time, got ", step_seconds);
  const int64_t n = static_cast<int64_t>(tokens_.size());
  // Neighbouring grid points and their weights, mirroring interpolate_step_time.
  int64_t lo = 0, hi = 0;
  double w_hi = 0.0;
  if (tokens > tokens_[n - 1]) {
    std::lock_guard<std::mutex> lock(mu_);
    ++observed_;
    ++out_of_range_;
    return;
  }
  if (tokens > tokens_[0]) {
    hi = std::lower_bound(tokens_.begin(), tokens_.end(), tokens) - tokens_.begin();
    lo = hi - 1;
    if (mode_ == Interpolation::kStep || tokens_[hi] == tokens) {
      lo = hi;
      w_hi = 1.0;
    } else {
      w_hi = (tokens - tokens_[lo]) / (tokens_[hi] - tokens_[lo]);
    }
  }
  const double w_lo = lo == hi ? 0.0 : 1.0 - w_hi;

  std::lock_guard<std::mutex> lock(mu_);
  const double pred = lo == hi ? time_[hi] : w_lo * time_[lo] + w_hi * time_[hi];
  const double scale = lo == hi ? scale_[hi] : w_lo * scale_[lo] + w_hi * scale_[hi];
  const double resid = step_seconds - pred;
  const double bound = opt_.clip * scale;
  const double r = std::clamp(resid, -bound, bound);
  if (r != resid) ++clipped_;
  ++observed_;
  // A point's step time never falls below a small fraction of its start value: keeps the curve
  // positive even under adversarial input.
  auto update = [&](int64_t i, double w) {
    if (w <= 0.0) return;
    time_[i] = std::max(time_[i] + opt_.alpha * w * r, 1e-3 * std::abs(time_[i]));
    scale_[i] += opt_.alpha * w * (std::abs(r) - scale_[i]);
    scale_[i] = std::max(scale_[i], 1e-4 * time_[i]);
    ++count_[i];
  };
  update(hi, lo == hi ? 1.0 : w_hi);
  if (lo != hi) update(lo, w_lo);
  snapshot_.reset();
}

std::shared_ptr<const SpsTable> LoadMonitor::table() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!snapshot_) {
    std::vector<double> t = time_;
    // Grid points never observed take the correction ratio (estimate / prior) of the nearest
    // observed point: a uniformly mis-scaled start-up profile is fixed everywhere after a few
    // steps, and the walk is not lured into unvisited regions that still look cheap.
    const int64_t n = static_cast<int64_t>(t.size());
    int64_t prev = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (count_[i] > 0) {
        prev = i;
        continue;
      }
      int64_t next = i + 1;
      while (next < n && count_[next] == 0) ++next;
      int64_t near = prev;
      if (next < n && (prev < 0 || next - i < i - prev)) near = next;
      if (near >= 0) t[i] = prior_[i] * (time_[near] / prior_[near]);
    }
    // Isotonic in the simplest form (running maximum): noise must not make a bigger step look
    // cheaper, or the walk would chase it.
    if (opt_.monotone)
      for (size_t i = 1; i < t.size(); ++i) t[i] = std::max(t[i], t[i - 1]);
    snapshot_ = std::make_shared<const SpsTable>(SpsTable::from_step_times(tokens_, t, mode_));
  }
  return snapshot_;
}

int64_t LoadMonitor::num_observations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return observed_;
}
int64_t LoadMonitor::num_clipped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clipped_;
}
int64_t LoadMonitor::num_out_of_range() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_of_range_;
}
std::vector<int64_t> LoadMonitor::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

}  // namespace dspark::scheduler
