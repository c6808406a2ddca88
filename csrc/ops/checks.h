// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. Named, table-driven tensor checks (the one owner of validation; Python only
// converts). Throw std::invalid_argument (ValueError in Python) or, for a wrong dtype,
// dspark::TypeError (TypeError), naming the argument and what was expected and given.
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "dspark/tensor_view.h"

namespace dspark::ops {

/// Shape "(4, 7, 32000)" of a view.
std::string shape_str(const TensorView& t);

/// Checks dtype (one of `dtypes`), rank and sizes (-1 = any) and that the last dim is contiguous.
void check_tensor(const TensorView& t, const char* name, std::initializer_list<DType> dtypes,
                  const std::vector<int64_t>& shape);

/// Checks that `t` is dense in row-major order (the kernels read it through a raw pointer).
void check_contiguous(const TensorView& t, const char* name);

/// Checks that every size of `t` fits in int32 (the kernels index sizes with int32).
void check_int32_sizes(const TensorView& t, const char* name);

/// Checks lo <= v <= hi for an integer scalar argument.
void check_int_range(int64_t v, const char* name, int64_t lo, int64_t hi);

/// Checks that a float scalar argument is finite (and >= lo when `lo` is given).
void check_finite(double v, const char* name);

/// Checks that `t` lives on the same device as `ref` (named by `ref_name`).
void check_same_device(const TensorView& t, const char* name, const TensorView& ref,
                       const char* ref_name);

}  // namespace dspark::ops
