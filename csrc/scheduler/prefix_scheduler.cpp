// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. The greedy prefix walk (algorithms.md section 4).
#include "scheduler/prefix_scheduler.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "dspark/macros.h"
#include "dspark/scheduler/prefix_walk.h"

namespace dspark::scheduler {
namespace {

enum class Walk { kEarlyStop, kGlobal, kTopK };

/// Reused per thread: a server calls the scheduler every step, so no allocation in steady state.
struct Scratch {
  std::vector<double> survival;   // [R, G]
  std::vector<int32_t> usable;    // [R] leading positions with survival > 0, within the cap
  std::vector<Candidate> heap;    // one head per request
  std::vector<int32_t> order;     // rows in admission order (global search replay)
};

/// Heap comparator: "x has lower priority than y" so the heap top is the candidate ranked first.
bool heap_less(const Candidate& x, const Candidate& y) { return ranks_before(y, x); }

void check_input(const ScheduleInput& in) {
  DSPARK_CHECK(in.num_requests >= 1, "confidences: empty batch: expected shape (R, G) with R >= 1, ",
               "got (", in.num_requests, ", ", in.draft_len, ")");
  DSPARK_CHECK(in.draft_len >= 0 && in.draft_len <= (int64_t{1} << 30),
               "confidences: expected 0 <= G <= 2^30, got G = ", in.draft_len);
  DSPARK_CHECK(in.draft_len == 0 || in.confidences != nullptr, "confidences: null data pointer");
  DSPARK_CHECK(in.row_stride >= in.draft_len || in.num_requests == 1,
               "confidences: expected a row stride >= G = ", in.draft_len, ", got ", in.row_stride);
}

/// Forms survivals (validating every confidence and cap) and the heap of row heads.
void prepare(const ScheduleInput& in, Scratch& s) {
  check_input(in);
  const int64_t R = in.num_requests, G = in.draft_len;
  s.survival.resize(static_cast<size_t>(R * G));
  s.usable.assign(static_cast<size_t>(R), 0);
  s.heap.clear();
  for (int64_t r = 0; r < R; ++r) {
    int64_t cap = G;
    if (in.max_lengths) {
      const int32_t m = in.max_lengths[r];
      DSPARK_CHECK(m >= 0, "max_lengths: expected values >= 0, got max_lengths[", r, "] = ", m);
      cap = std::min<int64_t>(cap, m);
    }
    const float* c = in.confidences + r * in.row_stride;
    double* a = s.survival.data() + r * G;
    double prod = 1.0;
    int32_t usable = 0;
    bool alive = true;
    for (int64_t j = 0; j < G; ++j) {
      DSPARK_CHECK(valid_confidence(c[j]),
                   "confidences: expected per-position probabilities in [0, 1], got confidences[",
                   r, ", ", j, "] = ", c[j]);
      // Sequential products in double, left to right: the reference computes the same values.
      prod *= static_cast<double>(c[j]);
      a[j] = prod;
      alive = alive && prod > 0.0 && j < cap;
      if (alive) usable = static_cast<int32_t>(j + 1);
    }
    s.usable[r] = usable;
    if (usable > 0) s.heap.push_back({a[0], static_cast<int32_t>(r), 0});
  }
  std::make_heap(s.heap.begin(), s.heap.end(), heap_less);
}

/// Pops the top candidate and pushes that request's next position (if any).
Candidate pop_next(const ScheduleInput& in, Scratch& s) {
  std::pop_heap(s.heap.begin(), s.heap.end(), heap_less);
  const Candidate c = s.heap.back();
  s.heap.pop_back();
  const int32_t j = c.j + 1;
  if (j < s.usable[c.r]) {
    s.heap.push_back({s.survival[c.r * in.draft_len + j], c.r, j});
    std::push_heap(s.heap.begin(), s.heap.end(), heap_less);
  }
  return c;
}

ScheduleSummary walk(const ScheduleInput& in, const SpsTable& table, Walk mode, int64_t k_limit,
                     int32_t* lengths) {
  thread_local Scratch s;
  prepare(in, s);
  const int64_t R = in.num_requests;
  if (lengths) std::fill(lengths, lengths + R, 0);
  // Start: every request verifies 0 drafts and still emits one token (tau = R) in a step of R.
  int64_t b = R;
  double tau = static_cast<double>(R);
  double best = tau * table.sps(static_cast<double>(b));
  ScheduleSummary best_summary{b, tau, best};
  int64_t admitted = 0, best_k = 0;
  s.order.clear();
  while (!s.heap.empty()) {
    if (in.token_budget >= 0 && b + 1 > in.token_budget) break;
    if (mode == Walk::kTopK && admitted >= k_limit) break;
    const Candidate& top = s.heap.front();
    const double tau_next = tau + top.a;
    const double theta = tau_next * table.sps(static_cast<double>(b + 1));
    if (mode == Walk::kEarlyStop && !(theta > best)) break;  // stop at the first drop: lossless
    const Candidate c = pop_next(in, s);
    ++b;
    ++admitted;
    tau = tau_next;
    if (mode == Walk::kGlobal) {
      s.order.push_back(c.r);
    } else if (lengths) {
      lengths[c.r] = c.j + 1;  // positions of a request arrive in order: j + 1 is its prefix
    }
    if (theta > best || mode == Walk::kTopK) {
      best = theta;
      best_k = admitted;
      best_summary = {b, tau, theta};
    }
  }
  if (mode == Walk::kGlobal) {
    // Replay the best prefix of the admission order.
    if (lengths)
      for (int64_t i = 0; i < best_k; ++i) ++lengths[s.order[i]];
    best_summary.tokens = R + best_k;
  }
  return best_summary;
}

}  // namespace

PrefixScheduler::PrefixScheduler(std::shared_ptr<const SpsTable> table, bool early_stop)
    : table_(std::move(table)), early_stop_(early_stop) {
  DSPARK_CHECK(table_ != nullptr, "sps: expected an SpsTable, got null");
}

PrefixScheduler::PrefixScheduler(std::shared_ptr<LoadMonitor> monitor, bool early_stop)
    : monitor_(std::move(monitor)), early_stop_(early_stop) {
  DSPARK_CHECK(monitor_ != nullptr, "sps: expected a LoadMonitor, got null");
}

std::shared_ptr<const SpsTable> PrefixScheduler::current_table() const {
  return monitor_ ? monitor_->table() : table_;
}

ScheduleSummary PrefixScheduler::schedule(const ScheduleInput& in, int32_t* lengths) const {
  const auto table = current_table();
  return walk(in, *table, early_stop_ ? Walk::kEarlyStop : Walk::kGlobal, 0, lengths);
}

int64_t PrefixScheduler::capacity(const ScheduleInput& in) const {
  const auto table = current_table();
  return walk(in, *table, Walk::kGlobal, 0, nullptr).tokens - in.num_requests;
}

ScheduleSummary PrefixScheduler::admit_top_k(const ScheduleInput& in, int64_t k,
                                             int32_t* lengths) const {
  DSPARK_CHECK(k >= 0, "capacity: expected a number of draft tokens >= 0, got ", k);
  const auto table = current_table();
  return walk(in, *table, Walk::kTopK, k, lengths);
}

}  // namespace dspark::scheduler
