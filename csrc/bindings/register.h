// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. One registration function per domain.
#pragma once
#include <pybind11/pybind11.h>

namespace dspark::bindings {
void register_info(pybind11::module_& m);
void register_verify(pybind11::module_& m);
void register_draft(pybind11::module_& m);
void register_scheduler(pybind11::module_& m);
void register_attention(pybind11::module_& m);
}  // namespace dspark::bindings
