// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. See dlpack.h and docs/build.md section 1.6 for the measured call costs.
#include "bindings/dlpack.h"

#include <string>
#include <unordered_map>

#include "third_party/dlpack/dlpack.h"

namespace dspark::bindings {
namespace {

/// Per-type cache of the exchange API (nullptr = the type has none). Accessed with the GIL held.
const DLPackExchangeAPI* exchange_api(py::handle obj) {
  static std::unordered_map<PyTypeObject*, const DLPackExchangeAPI*> cache;
  PyTypeObject* type = Py_TYPE(obj.ptr());
  auto it = cache.find(type);
  if (it != cache.end()) return it->second;
  const DLPackExchangeAPI* api = nullptr;
  PyObject* cap =
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__dlpack_c_exchange_api__");
  if (cap && PyCapsule_IsValid(cap, "dlpack_exchange_api")) {
    api = static_cast<const DLPackExchangeAPI*>(PyCapsule_GetPointer(cap, "dlpack_exchange_api"));
    if (api && (api->header.version.major != DLPACK_MAJOR_VERSION ||
                !api->dltensor_from_py_object_no_sync))
      api = nullptr;
  }
  Py_XDECREF(cap);
  PyErr_Clear();
  cache.emplace(type, api);
  return api;
}

DType to_dtype(const DLDataType& t, const char* name) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return DType::kFloat32;
    if (t.code == kDLFloat && t.bits == 16) return DType::kFloat16;
    if (t.code == kDLFloat && t.bits == 64) return DType::kFloat64;
    if (t.code == kDLBfloat && t.bits == 16) return DType::kBFloat16;
    if (t.code == kDLInt && t.bits == 32) return DType::kInt32;
    if (t.code == kDLInt && t.bits == 64) return DType::kInt64;
    if (t.code == kDLUInt && t.bits == 8) return DType::kUInt8;
    if (t.code == kDLBool && t.bits == 8) return DType::kBool;
  }
  (void)name;
  return DType::kUnsupported;  // named by the op's check_tensor
}

TensorView from_dltensor(const DLTensor& t, const char* name) {
  TensorView v;
  if (t.ndim > kMaxDims)
    throw py::value_error(std::string(name) + ": at most " + std::to_string(kMaxDims) +
                          " dimensions are supported, got " + std::to_string(t.ndim));
  if (t.device.device_type == kDLCPU) {
    v.device = DeviceType::kCPU;
  } else if (t.device.device_type == kDLCUDA || t.device.device_type == kDLCUDAManaged) {
    v.device = DeviceType::kCUDA;
  } else {
    throw py::value_error(std::string(name) + ": unsupported device type " +
                          std::to_string(t.device.device_type) + " (expected CPU or CUDA)");
  }
  v.device_id = t.device.device_id;
  v.dtype = to_dtype(t.dtype, name);
  v.ndim = t.ndim;
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides ? t.strides[i] : stride;
    stride *= t.shape[i];
  }
  return v;
}

}  // namespace

TensorView borrow(py::handle obj, const char* name, KeepAlive& keep) {
  if (const DLPackExchangeAPI* api = exchange_api(obj)) {
    DLTensor t;
    if (api->dltensor_from_py_object_no_sync(obj.ptr(), &t) == 0) return from_dltensor(t, name);
    PyErr_Clear();
  }
  if (!py::hasattr(obj, "__dlpack__"))
    throw py::type_error(std::string(name) +
                         ": expected a tensor (torch.Tensor or any DLPack "
                         "producer), got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::object cap;
  try {
    cap = obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(1, 3));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
    cap = obj.attr("__dlpack__")();
  }
  keep.push_back(cap);
  PyObject* c = cap.ptr();
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
    if (m->version.major != DLPACK_MAJOR_VERSION)
      throw py::value_error(std::string(name) + ": unsupported DLPack major version " +
                            std::to_string(m->version.major));
    return from_dltensor(m->dl_tensor, name);
  }
  if (PyCapsule_IsValid(c, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
    return from_dltensor(m->dl_tensor, name);
  }
  throw py::type_error(std::string(name) + ": __dlpack__ did not return a DLPack capsule");
}

std::optional<TensorView> borrow_optional(py::handle obj, const char* name, KeepAlive& keep) {
  if (obj.is_none()) return std::nullopt;
  return borrow(obj, name, keep);
}

int64_t current_stream(py::handle obj, const TensorView& view) {
  if (view.device != DeviceType::kCUDA) return 0;
  const DLPackExchangeAPI* api = exchange_api(obj);
  if (!api || !api->current_work_stream) return 0;
  void* stream = nullptr;
  if (api->current_work_stream(kDLCUDA, view.device_id, &stream) != 0) {
    PyErr_Clear();
    return 0;
  }
  return reinterpret_cast<int64_t>(stream);
}

}  // namespace dspark::bindings
