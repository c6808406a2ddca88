// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. Borrow any DLPack producer (torch, numpy, ...) as a TensorView without
// linking the producer: torch's C exchange API (`__dlpack_c_exchange_api__`, ~0.1 us) when present,
// `__dlpack__()` capsules otherwise. The only layer besides module.cpp that sees pybind11.
#pragma once
#include <pybind11/pybind11.h>

#include <optional>
#include <vector>

#include "dspark/tensor_view.h"

namespace dspark::bindings {

namespace py = pybind11;

/// Keeps the capsules of borrowed tensors alive until the op returns.
using KeepAlive = std::vector<py::object>;

/// Borrows `obj` (named `name` in error messages) as a TensorView. Raises TypeError for objects
/// that are not tensors and for unsupported dtypes.
TensorView borrow(py::handle obj, const char* name, KeepAlive& keep);

/// Same, with None mapped to nullopt.
std::optional<TensorView> borrow_optional(py::handle obj, const char* name, KeepAlive& keep);

/// The producer's current CUDA stream for the device of `obj` (0 if unknown or not CUDA).
int64_t current_stream(py::handle obj, const TensorView& view);

}  // namespace dspark::bindings
