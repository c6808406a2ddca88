// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. PYBIND11_MODULE(_C): one register_* per domain (DeepGEMM style) plus build info.
#include <pybind11/pybind11.h>

#include "bindings/register.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "dspark native core (torch-free; tensors cross as DLPack)";
  dspark::bindings::register_info(m);
  dspark::bindings::register_verify(m);
  dspark::bindings::register_draft(m);
  dspark::bindings::register_scheduler(m);
  dspark::bindings::register_attention(m);
}
