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
/// that are not tensors; other dtypes come back as DType::kUnsupported for the op to name.
TensorView borrow(py::handle obj, const char* name, KeepAlive& keep);

/// Same, with None mapped to nullopt.
std::optional<TensorView> borrow_optional(py::handle obj, const char* name, KeepAlive& keep);

/// The producer's current CUDA stream for the device of `obj` (0 if unknown or not CUDA).
int64_t current_stream(py::handle obj, const TensorView& view);

}  // namespace dspark::bindings

namespace pybind11::detail {

/// TensorView arguments: any DLPack producer is borrowed for the duration of the call (the caster
/// keeps the capsule alive). Non-tensors fail overload resolution (pybind11's TypeError lists
/// the signature); shapes, dtypes and devices are checked, with argument names, in ops::.
template <>
struct type_caster<dspark::TensorView> {
  PYBIND11_TYPE_CASTER(dspark::TensorView, const_name("typing.Any"));
  bool load(handle src, bool) {
    if (src.is_none() || !hasattr(src, "__dlpack__")) return false;
    value = dspark::bindings::borrow(src, "tensor", keep_);
    return true;
  }
  static handle cast(const dspark::TensorView&, return_value_policy, handle) {
    throw cast_error("a TensorView cannot be returned to Python");
  }

 private:
  dspark::bindings::KeepAlive keep_;
};

/// Optional tensors: None -> nullopt. (pybind11's generic optional caster would drop the inner
/// caster, and with it the capsule, before the call.)
template <>
struct type_caster<std::optional<dspark::TensorView>> {
  PYBIND11_TYPE_CASTER(std::optional<dspark::TensorView>, const_name("typing.Any | None"));
  bool load(handle src, bool) {
    if (src.is_none()) {
      value = std::nullopt;
      return true;
    }
    if (!hasattr(src, "__dlpack__")) return false;
    value = dspark::bindings::borrow(src, "tensor", keep_);
    return true;
  }
  static handle cast(const std::optional<dspark::TensorView>&, return_value_policy, handle) {
    throw cast_error("a TensorView cannot be returned to Python");
  }

 private:
  dspark::bindings::KeepAlive keep_;
};

}  // namespace pybind11::detail
