// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_attention: borrows the tensors, releases the GIL, calls ops::.
#include <pybind11/pybind11.h>

#include "bindings/dlpack.h"
#include "bindings/register.h"
#include "ops/verify_attention.h"

namespace dspark::bindings {
namespace py = pybind11;

void register_attention(py::module_& m) {
  m.def(
      "verify_attention",
      [](py::handle q, py::handle k_cache, py::handle v_cache, py::handle qo_indptr,
         py::handle block_table, py::handle kv_len, py::handle parents, double sm_scale,
         double soft_cap, int64_t window_left, int64_t max_qo_len, int64_t max_kv_len,
         py::handle out, py::handle lse, int64_t cuda_kernel, int64_t stream) {
        KeepAlive keep;
        ops::VerifyAttentionArgs a;
        a.q = borrow(q, "q", keep);
        a.k_cache = borrow(k_cache, "k_cache", keep);
        a.v_cache = borrow(v_cache, "v_cache", keep);
        a.qo_indptr = borrow(qo_indptr, "qo_indptr", keep);
        a.block_table = borrow(block_table, "block_table", keep);
        a.kv_len = borrow(kv_len, "kv_len", keep);
        a.parents = borrow_optional(parents, "parents", keep);
        a.sm_scale = sm_scale;
        a.soft_cap = soft_cap;
        a.window_left = window_left;
        a.max_qo_len = max_qo_len;
        a.max_kv_len = max_kv_len;
        a.out = borrow(out, "out", keep);
        a.lse = borrow_optional(lse, "lse", keep);
        a.cuda_kernel = cuda_kernel;
        a.stream = stream != 0 ? stream : current_stream(q, a.q);
        py::gil_scoped_release release;
        ops::verify_attention(a);
      },
      py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("qo_indptr"),
      py::arg("block_table"), py::arg("kv_len"), py::arg("parents"), py::arg("sm_scale"),
      py::arg("soft_cap"), py::arg("window_left"), py::arg("max_qo_len"), py::arg("max_kv_len"),
      py::arg("out"), py::arg("lse"), py::arg("cuda_kernel") = 0, py::arg("stream") = 0,
      "Low-level verify_attention on preallocated outputs; use dspark.verify_attention.");
  m.def(
      "check_verify_attention_indices",
      [](py::handle qo_indptr, py::handle block_table, py::handle kv_len, py::handle parents,
         int64_t num_tokens, int64_t num_pages, int64_t page_size) {
        KeepAlive keep;
        const TensorView ip = borrow(qo_indptr, "qo_indptr", keep);
        const TensorView bt = borrow(block_table, "block_table", keep);
        const TensorView kl = borrow(kv_len, "kv_len", keep);
        const auto pa = borrow_optional(parents, "parents", keep);
        const auto mx = ops::check_verify_attention_indices(ip, bt, kl, pa, num_tokens, num_pages,
                                                            page_size);
        return py::make_tuple(mx.first, mx.second);
      },
      py::arg("qo_indptr"), py::arg("block_table"), py::arg("kv_len"), py::arg("parents"),
      py::arg("num_tokens"), py::arg("num_pages"), py::arg("page_size"),
      "Checks host index tensors of verify_attention; returns (max_qo_len, max_kv_len).");
}

}  // namespace dspark::bindings
