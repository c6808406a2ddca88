// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. def_op: binds an ops:: entry point as one declaration. The argument names come
// from the op's own header (`k<Op>ArgNames`, plain strings, no pybind11 there), so adding an
// argument touches the op and its Python wrapper only. Tensors convert through the TensorView
// casters of dlpack.h; the GIL is released for the call.
#pragma once
#include <pybind11/pybind11.h>

#include <array>
#include <utility>

#include "bindings/dlpack.h"

namespace dspark::bindings {

namespace detail {

/// py::arg for parameter I; the last kZeros (int options such as the CUDA stream) default to 0.
template <std::size_t kZeros, std::size_t I, std::size_t N>
auto make_arg(const std::array<const char*, N>& names) {
  if constexpr (I + kZeros >= N) {
    return py::arg_v(names[I], int64_t(0));
  } else {
    return py::arg(names[I]);
  }
}

template <std::size_t kZeros, typename Ret, typename... Args, std::size_t N, std::size_t... I>
void def_op(py::module_& m, const char* name, Ret (*fn)(Args...),
            const std::array<const char*, N>& names, const char* doc, std::index_sequence<I...>) {
  m.def(name, fn, make_arg<kZeros, I, N>(names)..., py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace detail

/// m.def(name, fn, py::arg(names[0]), ..., GIL released, doc). The last kZeros arguments are int
/// options that default to 0 (e.g. the CUDA stream: 0 = the default stream).
template <std::size_t kZeros = 0, typename Ret, typename... Args, std::size_t N>
void def_op(py::module_& m, const char* name, Ret (*fn)(Args...),
            const std::array<const char*, N>& names, const char* doc) {
  static_assert(sizeof...(Args) == N, "one name per argument");
  detail::def_op<kZeros>(m, name, fn, names, doc, std::make_index_sequence<N>{});
}

}  // namespace dspark::bindings
