// SPDX-License-Identifier: Apache-2.0
// Layer: include/ (header-only, framework-free). Must not include torch, pybind11 or CUDA runtime
// APIs.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DSPARK_HOST_DEVICE __host__ __device__ __forceinline__
#define DSPARK_DEVICE __device__ __forceinline__
#else
// Always inlined on the host: the CPU kernels are compiled once per ISA (cpu_generic, cpu_avx2)
// and an out-of-line copy of shared math would be merged by the linker across the variants.
#define DSPARK_HOST_DEVICE inline __attribute__((always_inline))
#define DSPARK_DEVICE inline __attribute__((always_inline))
#endif

#include <sstream>
#include <stdexcept>
#include <string>

namespace dspark {

/// Concatenates its arguments with operator<< (used to build error messages on the host).
template <typename... Args>
inline std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// A wrong type (a tensor's dtype): pybind11 maps it to TypeError (bindings/module.cpp); it is an
/// std::invalid_argument for every other caller.
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace dspark

/// Like DSPARK_CHECK, for a wrong type (raises TypeError in Python).
#define DSPARK_CHECK_TYPE(cond, ...)                                        \
  do {                                                                      \
    if (!(cond)) throw ::dspark::TypeError(::dspark::str_cat(__VA_ARGS__)); \
  } while (0)

/// Host-side check that throws std::invalid_argument (pybind11 maps it to ValueError).
#define DSPARK_CHECK(cond, ...)                                               \
  do {                                                                        \
    if (!(cond)) throw std::invalid_argument(::dspark::str_cat(__VA_ARGS__)); \
  } while (0)
