// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_draft: the fused DSpark draft step, as a declaration (tensors convert
// through dlpack.h's casters; names and checks live in ops/draft_step.h).
#include <pybind11/pybind11.h>

#include "bindings/def_op.h"
#include "bindings/register.h"
#include "ops/draft_step.h"

namespace dspark::bindings {

void register_draft(py::module_& m) {
  def_op<1>(m, "draft_step", &ops::draft_step, ops::kDraftStepArgNames,
            "Low-level fused draft step on preallocated outputs; use dspark.draft_step.");
}

}  // namespace dspark::bindings
