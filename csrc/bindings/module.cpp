// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. PYBIND11_MODULE(_C): one register_* per domain (DeepGEMM style) plus build
// info.
#include <pybind11/pybind11.h>

#include "bindings/register.h"
#include "dspark/macros.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "dspark native core (torch-free; tensors cross as DLPack)";
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dspark::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  dspark::bindings::register_info(m);
  dspark::bindings::register_verify(m);
  dspark::bindings::register_draft(m);
  dspark::bindings::register_scheduler(m);
  dspark::bindings::register_attention(m);
}
