// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. See draft_step.h.
#include "ops/draft_step.h"

#include <cmath>
#include <limits>
#include <utility>

#include "cpu/draft_step.h"
#include "dspark/draft/markov_step.h"
#include "ops/checks.h"

#ifdef DSPARK_WITH_CUDA
#include "cuda/draft_step.h"
#endif

namespace dspark::ops {
namespace {

/// Host-side value ranges (CPU inputs only: CUDA inputs would need a device-to-host copy).
void check_host_values(const DraftStepArgs& a, int64_t R, int64_t V) {
  for (int64_t i = 0; i < R; ++i) {
    const int64_t x = a.anchors.dtype == DType::kInt64 ? a.anchors.ptr<const int64_t>()[i]
                                                       : a.anchors.ptr<const int32_t>()[i];
    DSPARK_CHECK(x >= 0 && x < V, "anchors: expected ids in [0, ", V, "), got anchors[", i,
                 "] = ", x);
    if (!a.temperature) continue;
    const float t = a.temperature->ptr<const float>()[i];
    DSPARK_CHECK(std::isfinite(t) && t >= 0.0f, "temperature: expected finite values >= 0, got ",
                 "temperature[", i, "] = ", t);
  }
}

}  // namespace

void draft_step_with(const DraftStepArgs& a) {
  constexpr auto kF32 = DType::kFloat32, kF16 = DType::kFloat16, kBF16 = DType::kBFloat16;
  check_tensor(a.base_logits, "base_logits", {kF32, kF16, kBF16}, {-1, -1, -1});
  const int64_t R = a.base_logits.shape[0], G = a.base_logits.shape[1], V = a.base_logits.shape[2];
  DSPARK_CHECK(R >= 1 && G >= 1 && V >= 1,
               "base_logits: expected a non-empty (R, G, V) tensor, got ",
               shape_str(a.base_logits));
  check_tensor(a.w1, "w1", {kF32, kF16, kBF16}, {V, -1});
  const int64_t r = a.w1.shape[1];
  check_tensor(a.w2, "w2", {a.w1.dtype}, {V, r});
  DSPARK_CHECK(a.w1.strides[0] == r && a.w2.strides[0] == r, "w1, w2: expected contiguous rows");
  check_tensor(a.anchors, "anchors", {DType::kInt32, DType::kInt64}, {R});
  check_tensor(a.seed, "seed", {DType::kInt64}, {R});
  check_tensor(a.offset, "offset", {DType::kInt64}, {R});
  for (const TensorView* t : {&a.w1, &a.w2, &a.anchors, &a.seed, &a.offset})
    check_same_device(*t, "w1/w2/anchors/seed/offset", a.base_logits, "base_logits");
  if (a.temperature) {
    check_tensor(*a.temperature, "temperature", {kF32}, {R});
    check_same_device(*a.temperature, "temperature", a.base_logits, "base_logits");
  }
  int64_t d = 0;
  DSPARK_CHECK(bool(a.hidden) == bool(a.conf_weight),
               "hidden, conf_weight: pass both (confidence head) or neither");
  if (a.hidden) {
    check_tensor(*a.hidden, "hidden", {kF32, kF16, kBF16}, {R, G, -1});
    d = a.hidden->shape[2];
    check_tensor(*a.conf_weight, "conf_weight", {kF32}, {d + r});
    check_same_device(*a.hidden, "hidden", a.base_logits, "base_logits");
    check_same_device(*a.conf_weight, "conf_weight", a.base_logits, "base_logits");
  }
  check_tensor(a.tokens, "out.tokens", {DType::kInt32}, {R, G});
  check_tensor(a.draft_logits, "out.draft_logits", {kF32}, {R, G, V});
  check_tensor(a.next_offset, "out.next_offset", {DType::kInt64}, {R});
  DSPARK_CHECK(a.tokens.strides[0] == G && a.draft_logits.strides[1] == V &&
                   a.draft_logits.strides[0] == G * V && a.next_offset.strides[0] == 1,
               "out: output tensors must be contiguous");
  DSPARK_CHECK(bool(a.confidence) == bool(a.hidden),
               "out.confidence: expected a tensor exactly when hidden/conf_weight are given (got ",
               a.confidence ? "confidence without hidden" : "hidden without confidence", ")");
  if (a.confidence) {
    check_tensor(*a.confidence, "out.confidence", {kF32}, {R, G});
    DSPARK_CHECK(a.confidence->strides[0] == G, "out.confidence: expected a contiguous tensor");
  }
  check_int32_sizes(a.base_logits, "base_logits");
  check_int32_sizes(a.w1, "w1");
  if (a.hidden) check_int32_sizes(*a.hidden, "hidden");
  check_int_range(a.candidates, "candidates", 0, std::numeric_limits<int32_t>::max());
  check_finite(a.conf_bias, "conf_bias");
  for (const auto& [t, name] : {std::pair{&a.anchors, "anchors"},
                                {&a.seed, "seed"},
                                {&a.offset, "offset"},
                                {&a.w1, "w1"},
                                {&a.w2, "w2"}})
    check_contiguous(*t, name);
  if (a.temperature) check_contiguous(*a.temperature, "temperature");
  for (const TensorView* t : {&a.tokens, &a.draft_logits, &a.next_offset})
    check_same_device(*t, "out", a.base_logits, "base_logits");
  if (a.confidence)
    check_same_device(*a.confidence, "out.confidence", a.base_logits, "base_logits");
  if (a.base_logits.device == DeviceType::kCPU) check_host_values(a, R, V);

  DraftStepParams P;
  P.base_logits = a.base_logits.data;
  P.base_dtype = a.base_logits.dtype;
  P.base_stride_r = a.base_logits.strides[0];
  P.base_stride_g = a.base_logits.strides[1];
  P.w1 = a.w1.data;
  P.w2 = a.w2.data;
  P.w_dtype = a.w1.dtype;
  P.anchors = a.anchors.data;
  P.anchors_int64 = a.anchors.dtype == DType::kInt64;
  P.temperature = a.temperature ? a.temperature->ptr<const float>() : nullptr;
  P.seed = a.seed.ptr<const int64_t>();
  P.offset = a.offset.ptr<const int64_t>();
  if (a.hidden) {
    P.hidden = a.hidden->data;
    P.hidden_dtype = a.hidden->dtype;
    P.hidden_stride_r = a.hidden->strides[0];
    P.hidden_stride_g = a.hidden->strides[1];
    P.conf_weight = a.conf_weight->ptr<const float>();
    P.conf_bias = float(a.conf_bias);
    DSPARK_CHECK(a.hidden->strides[2] == 1, "hidden: the last dimension must be contiguous");
  }
  P.num_requests = int32_t(R);
  P.steps = int32_t(G);
  P.vocab_size = int32_t(V);
  P.rank = int32_t(r);
  P.hidden_size = int32_t(d);
  P.candidates = int32_t(a.candidates);
  P.tokens = a.tokens.ptr<int32_t>();
  P.draft_logits = a.draft_logits.ptr<float>();
  P.confidence = a.confidence ? a.confidence->ptr<float>() : nullptr;
  P.next_offset = a.next_offset.ptr<int64_t>();
  if (a.base_logits.device == DeviceType::kCPU) {
    cpu::draft_step(P);
    return;
  }
#ifdef DSPARK_WITH_CUDA
  DSPARK_CHECK(a.candidates == 0, "candidates: top-K candidate drafting is CPU-only for now");
  cuda::draft_step(P, a.base_logits.device_id, a.stream);
#else
  throw std::invalid_argument("base_logits: got a CUDA tensor, but dspark was built without CUDA");
#endif
}

void draft_step(TensorView base_logits, TensorView w1, TensorView w2, TensorView anchors,
                std::optional<TensorView> temperature, TensorView seed, TensorView offset,
                std::optional<TensorView> hidden, std::optional<TensorView> conf_weight,
                double conf_bias, int64_t candidates, TensorView tokens, TensorView draft_logits,
                std::optional<TensorView> confidence, TensorView next_offset, int64_t stream) {
  draft_step_with(DraftStepArgs{base_logits, w1, w2, anchors, seed, offset, temperature, hidden,
                                conf_weight, conf_bias, candidates, tokens, draft_logits,
                                next_offset, confidence, stream});
}

}  // namespace dspark::ops
