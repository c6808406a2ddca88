// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/ (pure C++, no tensors, no pybind11). SpsTable: a profiled step-rate curve
// SPS(B), target forward steps per second for a step of B tokens (docs/algorithms.md section 4).
#pragma once
#include <cstdint>
#include <vector>

#include "dspark/scheduler/prefix_walk.h"

namespace dspark::scheduler {

/// Immutable step-rate profile. Stored as step times T(B) = 1 / SPS(B) because times interpolate
/// linearly (a step's cost is additive in its tokens), steps per second do not.
class SpsTable {
 public:
  /// `tokens` strictly increasing and >= 1; `steps_per_second` positive and finite, same length.
  /// Throws std::invalid_argument naming the offending argument and index.
  SpsTable(std::vector<double> tokens, std::vector<double> steps_per_second,
           Interpolation mode = Interpolation::kLinear);

  /// Builds a table from step times in seconds (same checks, on `step_seconds`).
  static SpsTable from_step_times(std::vector<double> tokens, std::vector<double> step_seconds,
                                  Interpolation mode = Interpolation::kLinear);

  /// Step time in seconds for a step of `b` tokens.
  double step_time(double b) const {
    return interpolate_step_time(tokens_.data(), seconds_.data(),
                                 static_cast<int64_t>(tokens_.size()), b, mode_);
  }
  /// Steps per second for a step of `b` tokens.
  double sps(double b) const { return 1.0 / step_time(b); }

  /// A cursor for non-decreasing queries (valid while this table lives).
  StepTimeCursor cursor() const {
    return StepTimeCursor{tokens_.data(), seconds_.data(), static_cast<int64_t>(tokens_.size()),
                          mode_};
  }

  const std::vector<double>& tokens() const { return tokens_; }
  const std::vector<double>& step_times() const { return seconds_; }
  std::vector<double> steps_per_second() const;
  Interpolation mode() const { return mode_; }

 private:
  SpsTable() = default;
  void validate(const char* value_name) const;

  std::vector<double> tokens_;
  std::vector<double> seconds_;
  Interpolation mode_ = Interpolation::kLinear;
};

}  // namespace dspark::scheduler
