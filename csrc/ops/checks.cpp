// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. See checks.h.
#include "ops/checks.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace dspark::ops {

std::string shape_str(const TensorView& t) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < t.ndim; ++i) os << (i ? ", " : "") << t.shape[i];
  os << (t.ndim == 1 ? ",)" : ")");
  return os.str();
}

static std::string expected_shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

void check_tensor(const TensorView& t, const char* name, std::initializer_list<DType> dtypes,
                  const std::vector<int64_t>& shape) {
  bool dtype_ok = false;
  std::string allowed;
  for (DType d : dtypes) {
    dtype_ok |= d == t.dtype;
    allowed += (allowed.empty() ? "" : "|") + std::string(dtype_name(d));
  }
  DSPARK_CHECK_TYPE(dtype_ok, name, ": expected dtype ", allowed, ", got ", dtype_name(t.dtype));
  bool shape_ok = t.ndim == int(shape.size());
  for (int i = 0; shape_ok && i < t.ndim; ++i) shape_ok = shape[i] < 0 || shape[i] == t.shape[i];
  DSPARK_CHECK(shape_ok, name, ": expected shape ", expected_shape_str(shape), ", got ",
               shape_str(t));
  DSPARK_CHECK(t.ndim == 0 || t.shape[t.ndim - 1] <= 1 || t.strides[t.ndim - 1] == 1, name,
               ": the last dimension must be contiguous (stride 1), got stride ",
               t.strides[t.ndim - 1]);
  for (int i = 0; i + 1 < t.ndim; ++i)
    DSPARK_CHECK(t.shape[i] <= 1 || t.strides[i] >= 0, name,
                 ": negative strides are not supported");
}

void check_contiguous(const TensorView& t, const char* name) {
  int64_t expected = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    DSPARK_CHECK(t.shape[i] <= 1 || t.strides[i] == expected, name,
                 ": expected a contiguous tensor, got shape ", shape_str(t), " with stride ",
                 t.strides[i], " in dim ", i, " (expected ", expected, ")");
    expected *= t.shape[i];
  }
}

void check_int32_sizes(const TensorView& t, const char* name) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  for (int i = 0; i < t.ndim; ++i)
    DSPARK_CHECK(t.shape[i] <= kMax, name, ": expected every size to fit in int32 (<= ", kMax,
                 "), got shape ", shape_str(t));
}

void check_int_range(int64_t v, const char* name, int64_t lo, int64_t hi) {
  DSPARK_CHECK(v >= lo && v <= hi, name, ": expected an int in [", lo, ", ", hi, "], got ", v);
}

void check_finite(double v, const char* name) {
  DSPARK_CHECK(std::isfinite(v), name, ": expected a finite number, got ", v);
}

void check_same_device(const TensorView& t, const char* name, const TensorView& ref,
                       const char* ref_name) {
  DSPARK_CHECK(t.device == ref.device && t.device_id == ref.device_id, name,
               ": expected the device of ", ref_name, " (",
               ref.device == DeviceType::kCPU ? "cpu" : "cuda:" + std::to_string(ref.device_id),
               "), got ",
               t.device == DeviceType::kCPU ? "cpu" : "cuda:" + std::to_string(t.device_id));
}

}  // namespace dspark::ops
