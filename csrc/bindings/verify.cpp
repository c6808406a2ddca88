// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_verify: declarations only (tensors convert through dlpack.h's
// casters; names and checks live in ops/verify.h).
#include "ops/verify.h"

#include <pybind11/pybind11.h>

#include "bindings/def_op.h"
#include "bindings/register.h"

namespace dspark::bindings {

void register_verify(py::module_& m) {
  def_op<1>(m, "verify_batch", &ops::verify_batch, ops::kVerifyBatchArgNames,
            "Low-level verify_batch on preallocated outputs; use dspark.verify_batch.");
  def_op(m, "check_verify_structure", &ops::check_verify_structure,
         ops::kCheckVerifyStructureArgNames,
         "O(N) structural checks of host index tensors; returns the deepest tree depth.");
}

}  // namespace dspark::bindings
