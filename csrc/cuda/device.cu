// SPDX-License-Identifier: Apache-2.0
// Layer: cuda/. See device.h. cudart is static, so this works (and returns error 35, "driver
// version is insufficient") on machines with no driver at all.
#include <cuda_runtime.h>

#include "cuda/device.h"

namespace dspark::cuda {

int device_count(int& err, std::string& msg) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  err = int(e);
  msg = e == cudaSuccess ? "" : cudaGetErrorString(e);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace dspark::cuda
