// SPDX-License-Identifier: Apache-2.0
// Layer: include/ (header-only, host only, framework-free). The maths of docs/algorithms.md section
// 4: prefix survival products, the candidate order, and the step-time interpolation of an SPS
// profile. No allocation, threads or I/O here; scheduler/ owns buffers and the walk's state.
#pragma once
#include <cmath>
#include <cstdint>

namespace dspark::scheduler {

/// How a step-time profile is read between grid points.
enum class Interpolation : int32_t {
  /// Step time is linear in the token count between grid points (dense or smooth profiles).
  kLinear = 0,
  /// A step of B tokens costs the step time of the smallest grid point >= B: engines pad a batch
  /// up to the next captured CUDA-graph size, so the curve is a staircase between grid points.
  kStep = 1,
};

/// One admissible draft position: request r, 0-based position j, survival a = prod_{i<=j} c[r,i].
struct Candidate {
  double a;
  int32_t r;
  int32_t j;
};

/// True when x comes before y in the walk: survival descending, then request index ascending.
/// Within a request positions come out in order j = 0, 1, ... because survival is non-increasing
/// in j, so a k-way merge of the rows yields exactly the order of a full stable sort.
inline bool ranks_before(const Candidate& x, const Candidate& y) {
  return x.a > y.a || (x.a == y.a && x.r < y.r);
}

/// A confidence is valid when it is a probability (NaN fails both comparisons).
inline bool valid_confidence(float c) { return c >= 0.0f && c <= 1.0f; }

/// T(b) on the segment (lo, hi] of a profile, tokens[lo] < b <= tokens[hi] (lo == hi - 1).
inline double segment_step_time(const double* tokens, const double* seconds, int64_t hi, double b,
                                Interpolation mode) {
  if (mode == Interpolation::kStep || tokens[hi] == b) return seconds[hi];
  const int64_t lo = hi - 1;
  const double w = (b - tokens[lo]) / (tokens[hi] - tokens[lo]);
  return seconds[lo] + w * (seconds[hi] - seconds[lo]);
}

/// T(b) above the grid: the last segment's slope, never negative (compute-bound regime grows
/// ~linearly with tokens). Needs n >= 2.
inline double extrapolate_step_time(const double* tokens, const double* seconds, int64_t n,
                                    double b) {
  const double slope = (seconds[n - 1] - seconds[n - 2]) / (tokens[n - 1] - tokens[n - 2]);
  return seconds[n - 1] + (slope > 0.0 ? slope : 0.0) * (b - tokens[n - 1]);
}

/// Step time T(B) of a profile (tokens[i], seconds[i]), n >= 1, tokens strictly increasing.
/// Below the grid: the first step time (an engine never runs faster than its smallest step).
inline double interpolate_step_time(const double* tokens, const double* seconds, int64_t n,
                                    double b, Interpolation mode) {
  if (n == 1 || b <= tokens[0]) return seconds[0];  // a one-point profile is flat
  if (b >= tokens[n - 1]) return extrapolate_step_time(tokens, seconds, n, b);
  // Binary search: the first grid index hi with tokens[hi] >= b (tokens[0] < b < tokens[n-1]).
  int64_t lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (tokens[mid] >= b)
      hi = mid;
    else
      lo = mid;
  }
  return segment_step_time(tokens, seconds, hi, b, mode);
}

/// interpolate_step_time for non-decreasing queries (the walk's B grows by one per admission):
/// a forward-moving cursor replaces the binary search, amortised O(1) per query, same values.
struct StepTimeCursor {
  const double* tokens;
  const double* seconds;
  int64_t n;
  Interpolation mode;
  int64_t hi = 1;

  double operator()(double b) {
    if (n == 1 || b <= tokens[0]) return seconds[0];
    if (b >= tokens[n - 1]) return extrapolate_step_time(tokens, seconds, n, b);
    while (tokens[hi] < b) ++hi;
    return segment_step_time(tokens, seconds, hi, b, mode);
  }
};

}  // namespace dspark::scheduler
