// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. What was built and what is usable on this machine.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/register.h"
#include "cpu/parallel.h"
#include "cpu/verify.h"
#ifdef DSPARK_WITH_CUDA
#include "cuda/device.h"
#endif

namespace dspark::bindings {
namespace py = pybind11;

void register_info(py::module_& m) {
#ifdef DSPARK_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
#ifdef DSPARK_WITH_CUTLASS
  m.attr("built_with_cutlass") = true;
#else
  m.attr("built_with_cutlass") = false;
#endif
#ifdef _OPENMP
  m.attr("built_with_openmp") = true;
#else
  m.attr("built_with_openmp") = false;
#endif
  m.attr("cuda_archs") = DSPARK_CUDA_ARCHS_STR;
  m.def("cpu_isa", &cpu::isa_name, "ISA variant of the CPU kernels chosen at run time.");
  m.def("cpu_num_threads", &cpu::num_threads, "Threads the CPU kernels use (OpenMP max threads).");
  m.def(
      "cuda_device_count",
      []() {
#ifdef DSPARK_WITH_CUDA
        std::string msg;
        int err = 0;
        const int n = cuda::device_count(err, msg);
        return py::make_tuple(n, err, msg);
#else
        return py::make_tuple(0, -1, std::string("dspark was built without CUDA"));
#endif
      },
      "(count, cuda error code, message); never raises, also without a driver.");
}

}  // namespace dspark::bindings
