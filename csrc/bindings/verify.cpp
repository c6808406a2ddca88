// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_verify: borrows the tensors, releases the GIL, calls ops::.
#include <pybind11/pybind11.h>

#include "bindings/dlpack.h"
#include "bindings/register.h"
#include "ops/verify.h"

namespace dspark::bindings {
namespace py = pybind11;

void register_verify(py::module_& m) {
  m.def(
      "verify_batch",
      [](py::handle target, py::handle draft_tokens, py::handle draft_indptr, py::handle parents,
         py::handle draft_q, int64_t q_kind, int64_t sampling, py::handle temperature, py::handle top_k,
         py::handle top_p, py::handle min_p, py::handle seed, py::handle offset,
         py::handle max_emit, bool target_is_probs, int64_t max_depth, py::handle accept_len,
         py::handle num_emitted, py::handle tokens, py::handle final_token,
         py::handle final_is_bonus, py::handle path, py::handle last_row, py::handle next_offset,
         py::handle logprobs, int64_t stream) {
        KeepAlive keep;
        ops::VerifyArgs a;
        a.target = borrow(target, "target", keep);
        a.draft_tokens = borrow(draft_tokens, "draft_tokens", keep);
        a.draft_indptr = borrow(draft_indptr, "draft_indptr", keep);
        a.parents = borrow_optional(parents, "parents", keep);
        a.draft_q = borrow_optional(draft_q, q_kind == 2 ? "draft_logits" : "draft_probs", keep);
        DSPARK_CHECK(q_kind >= 0 && q_kind <= 2, "q_kind: expected 0, 1 or 2, got ", q_kind);
        DSPARK_CHECK(sampling == 0 || sampling == 1, "draft_sampling: expected 0 or 1, got ", sampling);
        a.q_kind = static_cast<DraftQ>(q_kind);
        a.sampling = static_cast<DraftSampling>(sampling);
        a.temperature = borrow_optional(temperature, "temperature", keep);
        a.top_k = borrow_optional(top_k, "top_k", keep);
        a.top_p = borrow_optional(top_p, "top_p", keep);
        a.min_p = borrow_optional(min_p, "min_p", keep);
        a.seed = borrow(seed, "seed", keep);
        a.offset = borrow(offset, "offset", keep);
        a.max_emit = borrow_optional(max_emit, "max_emit", keep);
        a.target_is_probs = target_is_probs;
        a.max_depth = max_depth;
        a.accept_len = borrow(accept_len, "out.accept_len", keep);
        a.num_emitted = borrow(num_emitted, "out.num_emitted", keep);
        a.tokens = borrow(tokens, "out.tokens", keep);
        a.final_token = borrow(final_token, "out.final_token", keep);
        a.final_is_bonus = borrow(final_is_bonus, "out.final_is_bonus", keep);
        a.path = borrow(path, "out.path", keep);
        a.last_row = borrow(last_row, "out.last_row", keep);
        a.next_offset = borrow(next_offset, "out.next_offset", keep);
        a.logprobs = borrow_optional(logprobs, "out.logprobs", keep);
        a.stream = stream != 0 ? stream : current_stream(target, a.target);
        py::gil_scoped_release release;
        ops::verify_batch(a);
      },
      py::arg("target"), py::arg("draft_tokens"), py::arg("draft_indptr"), py::arg("parents"),
      py::arg("draft_q"), py::arg("q_kind"), py::arg("sampling"), py::arg("temperature"),
      py::arg("top_k"), py::arg("top_p"), py::arg("min_p"), py::arg("seed"), py::arg("offset"),
      py::arg("max_emit"), py::arg("target_is_probs"), py::arg("max_depth"),
      py::arg("accept_len"), py::arg("num_emitted"), py::arg("tokens"), py::arg("final_token"),
      py::arg("final_is_bonus"), py::arg("path"), py::arg("last_row"), py::arg("next_offset"),
      py::arg("logprobs"), py::arg("stream") = 0,
      "Low-level verify_batch on preallocated outputs; use dspark.verify_batch.");
  m.def(
      "check_verify_structure",
      [](py::handle draft_tokens, py::handle draft_indptr, py::handle parents, int64_t vocab_size) {
        KeepAlive keep;
        const TensorView t = borrow(draft_tokens, "draft_tokens", keep);
        const TensorView ip = borrow(draft_indptr, "draft_indptr", keep);
        const auto pa = borrow_optional(parents, "parents", keep);
        return ops::check_verify_structure(t, ip, pa, vocab_size);
      },
      py::arg("draft_tokens"), py::arg("draft_indptr"), py::arg("parents"), py::arg("vocab_size"),
      "O(N) structural checks of host index tensors; returns the deepest tree depth.");
}

}  // namespace dspark::bindings
