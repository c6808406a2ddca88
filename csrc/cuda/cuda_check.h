// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. DSPARK_CUDA_CHECK(expr): throws std::runtime_error with file:line and the CUDA
// error.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define DSPARK_CUDA_CHECK(expr)                                                                \
  do {                                                                                         \
    const cudaError_t dspark_err_ = (expr);                                                    \
    if (dspark_err_ != cudaSuccess)                                                            \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                               #expr + " failed: " + cudaGetErrorString(dspark_err_));         \
  } while (0)
