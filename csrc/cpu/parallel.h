// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. parallel_for over an index range: OpenMP when built with it, serial otherwise.
// OpenMP shares torch's libgomp (same SONAME), so torch.set_num_threads also governs dspark.
#pragma once
#include <cstdint>
#include <exception>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dspark::cpu {

/// Calls f(i) for i in [begin, end), dynamically scheduled over the OpenMP threads. Exceptions
/// thrown by f are rethrown on the calling thread (the first one wins).
template <typename F>
void parallel_for(int64_t begin, int64_t end, F&& f) {
  if (end <= begin) return;
  std::exception_ptr error;
  std::mutex error_mutex;
#ifdef _OPENMP
  const int threads = end - begin > 1 ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
  for (int64_t i = begin; i < end; ++i) {
    try {
      f(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

/// Number of threads parallel_for will use.
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace dspark::cpu
