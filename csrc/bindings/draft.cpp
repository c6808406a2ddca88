// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_draft: the fused DSpark draft step.
#include <pybind11/pybind11.h>

#include "bindings/dlpack.h"
#include "bindings/register.h"
#include "ops/draft_step.h"

namespace dspark::bindings {
namespace py = pybind11;

void register_draft(py::module_& m) {
  m.def(
      "draft_step",
      [](py::handle base_logits, py::handle w1, py::handle w2, py::handle anchors,
         py::handle temperature, py::handle seed, py::handle offset, py::handle hidden,
         py::handle conf_weight, double conf_bias, int64_t candidates, py::handle tokens,
         py::handle draft_logits, py::handle confidence, py::handle next_offset, int64_t stream) {
        KeepAlive keep;
        ops::DraftStepArgs a;
        a.base_logits = borrow(base_logits, "base_logits", keep);
        a.w1 = borrow(w1, "w1", keep);
        a.w2 = borrow(w2, "w2", keep);
        a.anchors = borrow(anchors, "anchors", keep);
        a.temperature = borrow_optional(temperature, "temperature", keep);
        a.seed = borrow(seed, "seed", keep);
        a.offset = borrow(offset, "offset", keep);
        a.hidden = borrow_optional(hidden, "hidden", keep);
        a.conf_weight = borrow_optional(conf_weight, "conf_weight", keep);
        a.conf_bias = conf_bias;
        a.candidates = candidates;
        a.tokens = borrow(tokens, "out.tokens", keep);
        a.draft_logits = borrow(draft_logits, "out.draft_logits", keep);
        a.confidence = borrow_optional(confidence, "out.confidence", keep);
        a.next_offset = borrow(next_offset, "out.next_offset", keep);
        a.stream = stream != 0 ? stream : current_stream(base_logits, a.base_logits);
        py::gil_scoped_release release;
        ops::draft_step(a);
      },
      py::arg("base_logits"), py::arg("w1"), py::arg("w2"), py::arg("anchors"),
      py::arg("temperature"), py::arg("seed"), py::arg("offset"), py::arg("hidden"),
      py::arg("conf_weight"), py::arg("conf_bias"), py::arg("candidates"), py::arg("tokens"),
      py::arg("draft_logits"), py::arg("confidence"), py::arg("next_offset"),
      py::arg("stream") = 0, "Low-level fused draft step on preallocated outputs; use dspark.draft_step.");
}

}  // namespace dspark::bindings
