// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_attention: declarations only (tensors convert through dlpack.h's
// casters; names and checks live in ops/verify_attention.h).
#include <pybind11/pybind11.h>

#include "bindings/def_op.h"
#include "bindings/register.h"
#include "ops/verify_attention.h"

namespace dspark::bindings {

void register_attention(py::module_& m) {
  def_op<2>(m, "verify_attention", &ops::verify_attention, ops::kVerifyAttentionArgNames,
            "Low-level verify_attention on preallocated outputs; use dspark.verify_attention.");
  def_op(m, "check_verify_attention_indices", &ops::check_verify_attention_indices,
         ops::kCheckVerifyAttentionIndicesArgNames,
         "Checks host index tensors of verify_attention; returns (max_qo_len, max_kv_len).");
}

}  // namespace dspark::bindings
