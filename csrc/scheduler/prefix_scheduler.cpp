// SPDX-License-Identifier: Apache-2.0
// Layer: scheduler/. The greedy prefix walk (docs/algorithms.md section 4).
#include "scheduler/prefix_scheduler.h"

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "dspark/macros.h"
#include "dspark/scheduler/prefix_walk.h"

namespace dspark::scheduler {
namespace {

enum class Walk { kEarlyStop, kGlobal, kTopK };

/// Reused per thread: a server calls the scheduler every step, so no allocation in steady state.
struct Scratch {
  std::vector<int32_t> cap;     // [R] positions a request may verify (G or its max length)
  std::vector<Candidate> heap;  // one head per request
  std::vector<int32_t> order;   // rows in admission order (global search replay)
  std::vector<double> values;   // all survivals (capacity search)
};

/// Heap comparator: "x has lower priority than y" so the heap top is the candidate ranked first.
bool heap_less(const Candidate& x, const Candidate& y) { return ranks_before(y, x); }

void check_input(const ScheduleInput& in) {
  DSPARK_CHECK(in.num_requests >= 1,
               "confidences: empty batch: expected shape (R, G) with R >= 1, ", "got (",
               in.num_requests, ", ", in.draft_len, ")");
  DSPARK_CHECK(in.draft_len >= 0 && in.draft_len <= (int64_t{1} << 30),
               "confidences: expected 0 <= G <= 2^30, got G = ", in.draft_len);
  DSPARK_CHECK(in.draft_len == 0 || in.confidences != nullptr, "confidences: null data pointer");
  DSPARK_CHECK(in.row_stride >= in.draft_len || in.num_requests == 1,
               "confidences: expected a row stride >= G = ", in.draft_len, ", got ", in.row_stride);
}

/// Validates every confidence (a branch-free, vectorisable pass: NaN fails both comparisons)
/// and every cap; fills the per-request caps.
void validate(const ScheduleInput& in, Scratch& s) {
  check_input(in);
  const int64_t R = in.num_requests, G = in.draft_len;
  // Contiguous rows are checked as one flat array (an integer count reduction vectorises);
  // only when something is bad do we look for the first offender to name it.
  const bool flat = in.row_stride == G || R == 1;
  int64_t bad = 0;
  for (int64_t r = 0; r < (flat ? 1 : R); ++r) {
    const float* c = in.confidences + r * in.row_stride;
    const int64_t n = flat ? R * G : G;
    for (int64_t i = 0; i < n; ++i) bad += static_cast<int>(!(c[i] >= 0.0f) | !(c[i] <= 1.0f));
  }
  if (bad) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < G; ++j) {
        const float c = in.confidences[r * in.row_stride + j];
        DSPARK_CHECK(valid_confidence(c),
                     "confidences: expected per-position probabilities in [0, 1], got confidences[",
                     r, ", ", j, "] = ", c);
      }
  }
  s.cap.resize(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    int64_t cap = G;
    if (in.max_lengths) {
      const int32_t m = in.max_lengths[r];
      DSPARK_CHECK(m >= 0, "max_lengths: expected values >= 0, got max_lengths[", r, "] = ", m);
      cap = std::min<int64_t>(cap, m);
    }
    s.cap[r] = static_cast<int32_t>(cap);
  }
}

/// Survival of position j given the previous one. Products are formed left to right in double
/// (a_0 = 1.0 * c_0 exactly), the order the reference uses, so values match bit for bit. They are
/// formed lazily: the early-stopping walk touches only the positions it admits plus one per row.
inline double next_survival(const ScheduleInput& in, double prev, int64_t r, int64_t j) {
  return prev * static_cast<double>(in.confidences[r * in.row_stride + j]);
}

void build_heap(const ScheduleInput& in, Scratch& s) {
  s.heap.clear();
  for (int64_t r = 0; r < in.num_requests; ++r) {
    if (s.cap[r] < 1) continue;
    const double a = next_survival(in, 1.0, r, 0);
    if (a > 0.0) s.heap.push_back({a, static_cast<int32_t>(r), 0});
  }
  std::make_heap(s.heap.begin(), s.heap.end(), heap_less);
}

/// Pops the top candidate and pushes that request's next position (if admissible: within the
/// cap and with positive survival; survival never recovers once it is 0).
Candidate pop_next(const ScheduleInput& in, Scratch& s) {
  std::pop_heap(s.heap.begin(), s.heap.end(), heap_less);
  const Candidate c = s.heap.back();
  s.heap.pop_back();
  const int32_t j = c.j + 1;
  if (j < s.cap[c.r]) {
    const double a = next_survival(in, c.a, c.r, j);
    if (a > 0.0) {
      s.heap.push_back({a, c.r, j});
      std::push_heap(s.heap.begin(), s.heap.end(), heap_less);
    }
  }
  return c;
}

ScheduleSummary walk(const ScheduleInput& in, const SpsTable& table, Walk mode, int64_t k_limit,
                     int32_t* lengths) {
  thread_local Scratch s;
  validate(in, s);
  build_heap(in, s);
  // theta = tau * SPS(B) with SPS = 1 / T, exactly the reference's rounding.
  StepTimeCursor step_time = table.cursor();
  const int64_t R = in.num_requests;
  if (lengths) std::fill(lengths, lengths + R, 0);
  // Start: every request verifies 0 drafts and still emits one token (tau = R) in a step of R.
  int64_t b = R;
  double tau = static_cast<double>(R);
  double best = tau * (1.0 / step_time(static_cast<double>(b)));
  ScheduleSummary best_summary{b, tau, best};
  int64_t admitted = 0, best_k = 0;
  s.order.clear();
  while (!s.heap.empty()) {
    if (in.token_budget >= 0 && b + 1 > in.token_budget) break;
    if (mode == Walk::kTopK && admitted >= k_limit) break;
    const Candidate& top = s.heap.front();
    const double tau_next = tau + top.a;
    const double theta = tau_next * (1.0 / step_time(static_cast<double>(b + 1)));
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

/// The global search for the best count only (the async variant's capacity). Ties between
/// equal survivals do not change the objective sequence, so plain values suffice. Rather than
/// sorting all N values, the walk takes them in descending chunks (nth_element, then a sort of
/// the chunk) and stops once no later prefix can win: every remaining value is <= the largest
/// remaining one, a_max, so theta after m more admissions is at most
/// (tau + m * a_max) * SPS(B + m). Typical cost O(N + M log M) for a first chunk of M.
int64_t best_count(const ScheduleInput& in, const SpsTable& table) {
  thread_local Scratch s;
  validate(in, s);
  s.values.clear();
  for (int64_t r = 0; r < in.num_requests; ++r) {
    double a = 1.0;
    for (int64_t j = 0; j < s.cap[r]; ++j) {
      a = next_survival(in, a, r, j);
      if (!(a > 0.0)) break;
      s.values.push_back(a);
    }
  }
  const int64_t R = in.num_requests;
  const int64_t n = static_cast<int64_t>(s.values.size());
  const int64_t limit = in.token_budget >= 0 ? std::max<int64_t>(0, in.token_budget - R) : n;
  const int64_t total = std::min(n, limit);  // admissions the budget allows
  StepTimeCursor step_time = table.cursor();
  int64_t b = R, best_k = 0, done = 0;
  double tau = static_cast<double>(R);
  double best = tau * (1.0 / step_time(static_cast<double>(b)));
  auto first = s.values.begin();
  int64_t chunk = std::max<int64_t>(256, 2 * R);
  while (done < total) {
    const int64_t end = std::min(n, done + chunk);
    std::nth_element(first + done, first + (end - 1), s.values.end(), std::greater<double>());
    std::sort(first + done, first + end, std::greater<double>());
    for (int64_t i = done; i < std::min(end, total); ++i) {
      tau += s.values[i];
      ++b;
      const double theta = tau * (1.0 / step_time(static_cast<double>(b)));
      if (theta > best) {
        best = theta;
        best_k = i + 1;
      }
    }
    done = std::min(end, total);
    if (done >= total) break;
    // Bound for every later prefix (a fresh cursor: the main one must keep moving forward).
    const double a_max = *std::max_element(first + done, s.values.end());
    StepTimeCursor probe = table.cursor();
    bool can_win = false;
    for (int64_t m = 1; m <= total - done && !can_win; ++m)
      can_win =
          (tau + static_cast<double>(m) * a_max) * (1.0 / probe(static_cast<double>(b + m))) > best;
    if (!can_win) break;
    chunk *= 2;
  }
  return best_k;
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
  return best_count(in, *table);
}

ScheduleSummary PrefixScheduler::admit_top_k(const ScheduleInput& in, int64_t k,
                                             int32_t* lengths) const {
  DSPARK_CHECK(k >= 0, "capacity: expected a number of draft tokens >= 0, got ", k);
  const auto table = current_table();
  return walk(in, *table, Walk::kTopK, k, lengths);
}

}  // namespace dspark::scheduler
