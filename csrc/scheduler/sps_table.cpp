// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. SpsTable construction and validation.
#include "scheduler/sps_table.h"

#include <cmath>
#include <utility>

#include "dspark/macros.h"

namespace dspark::scheduler {

SpsTable::SpsTable(std::vector<double> tokens, std::vector<double> steps_per_second,
                   Interpolation mode)
    : tokens_(std::move(tokens)), mode_(mode) {
  // Check the rates before inverting them so the message names what the caller passed.
  for (size_t i = 0; i < steps_per_second.size(); ++i) {
    const double v = steps_per_second[i];
    DSPARK_CHECK(std::isfinite(v) && v > 0.0, "steps_per_second: expected positive finite values, ",
                 "got steps_per_second[", i, "] = ", v);
  }
  seconds_.reserve(steps_per_second.size());
  for (double v : steps_per_second) seconds_.push_back(1.0 / v);
  validate("steps_per_second");
}

SpsTable SpsTable::from_step_times(std::vector<double> tokens, std::vector<double> step_seconds,
                                   Interpolation mode) {
  SpsTable t;
  t.tokens_ = std::move(tokens);
  t.seconds_ = std::move(step_seconds);
  t.mode_ = mode;
  for (size_t i = 0; i < t.seconds_.size(); ++i) {
    const double v = t.seconds_[i];
    DSPARK_CHECK(std::isfinite(v) && v > 0.0, "step_seconds: expected positive finite values, ",
                 "got step_seconds[", i, "] = ", v);
  }
  t.validate("step_seconds");
  return t;
}

void SpsTable::validate(const char* value_name) const {
  DSPARK_CHECK(!tokens_.empty(), "tokens: expected at least one grid point, got none");
  DSPARK_CHECK(tokens_.size() == seconds_.size(), "tokens, ", value_name,
               ": expected equal lengths, got ", tokens_.size(), " and ", seconds_.size());
  DSPARK_CHECK(mode_ == Interpolation::kLinear || mode_ == Interpolation::kStep,
               "interpolation: expected 'linear' or 'step', got code ", static_cast<int>(mode_));
  for (size_t i = 0; i < tokens_.size(); ++i) {
    DSPARK_CHECK(std::isfinite(tokens_[i]) && tokens_[i] >= 1.0,
                 "tokens: expected finite token counts >= 1, got tokens[", i, "] = ", tokens_[i]);
    DSPARK_CHECK(i == 0 || tokens_[i] > tokens_[i - 1],
                 "tokens: expected strictly increasing token counts, got tokens[", i - 1,
                 "] = ", tokens_[i - 1], " followed by tokens[", i, "] = ", tokens_[i]);
  }
}

std::vector<double> SpsTable::steps_per_second() const {
  std::vector<double> out;
  out.reserve(seconds_.size());
  for (double s : seconds_) out.push_back(1.0 / s);
  return out;
}

}  // namespace dspark::scheduler
