// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. Device discovery that never throws (works without a driver).
#pragma once
#include <string>

namespace dspark::cuda {
/// Number of CUDA devices; on failure 0, with the CUDA error code and message filled in.
int device_count(int& err, std::string& msg);
}  // namespace dspark::cuda
