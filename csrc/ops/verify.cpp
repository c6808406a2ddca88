// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. See verify.h. Re-checks every invariant the kernels rely on (so a direct `_C` call
// can never crash), then dispatches on the device.
#include "ops/verify.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "cpu/verify.h"
#include "dspark/math.h"
#include "ops/checks.h"

#ifdef DSPARK_WITH_CUDA
#include "cuda/verify.h"
#endif

namespace dspark::ops {
namespace {

constexpr auto kF32 = DType::kFloat32, kF16 = DType::kFloat16, kBF16 = DType::kBFloat16;
constexpr auto kI32 = DType::kInt32, kI64 = DType::kInt64;
// max_depth beyond N only widens the -1 padding; this bounds it (python/dspark/ops/verify.py).
constexpr int64_t kMaxPadDepth = 4096;

int64_t token_at(const TensorView& t, int64_t i) {
  return t.dtype == kI64 ? t.ptr<const int64_t>()[i * t.strides[0]]
                         : t.ptr<const int32_t>()[i * t.strides[0]];
}

}  // namespace

int32_t check_verify_structure(TensorView draft_tokens, TensorView draft_indptr,
                               std::optional<TensorView> parents, int64_t vocab_size) {
  check_int_range(vocab_size, "vocab_size", 1, std::numeric_limits<int32_t>::max());
  check_tensor(draft_tokens, "draft_tokens", {kI32, kI64}, {-1});
  check_tensor(draft_indptr, "draft_indptr", {kI32}, {-1});
  DSPARK_CHECK(draft_indptr.shape[0] >= 1,
               "draft_indptr: expected at least one element (R + 1), got 0");
  if (parents) check_tensor(*parents, "parents", {kI32}, {draft_tokens.shape[0]});
  DSPARK_CHECK(draft_indptr.device == DeviceType::kCPU && draft_tokens.device == DeviceType::kCPU &&
                   (!parents || parents->device == DeviceType::kCPU),
               "check_verify_structure: index tensors must be on the CPU");
  const int64_t R = draft_indptr.shape[0] - 1, N = draft_tokens.shape[0];
  const int32_t* ip = draft_indptr.ptr<const int32_t>();
  const int64_t ips = draft_indptr.strides[0];
  DSPARK_CHECK(ip[0] == 0, "draft_indptr: expected draft_indptr[0] == 0, got ", ip[0]);
  for (int64_t r = 0; r < R; ++r)
    DSPARK_CHECK(ip[(r + 1) * ips] >= ip[r * ips], "draft_indptr: must be non-decreasing, got ",
                 "draft_indptr[", r, "] = ", ip[r * ips], " > draft_indptr[", r + 1,
                 "] = ", ip[(r + 1) * ips]);
  DSPARK_CHECK(ip[R * ips] == N,
               "draft_indptr: expected draft_indptr[-1] == len(draft_tokens) = ", N, ", got ",
               ip[R * ips]);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t t = token_at(draft_tokens, i);
    DSPARK_CHECK(
        t >= 0 && t < vocab_size, "draft_tokens: expected ids in [0, ", vocab_size,
        "), got draft_tokens[", i, "] = ", t,
        t == -1 ? " (-1 padding is not allowed: use draft_indptr for ragged requests)" : "");
  }
  int32_t max_depth = 0;
  std::vector<int32_t> depth, nchild;
  for (int64_t r = 0; r < R; ++r) {
    const int32_t n0 = ip[r * ips], n = ip[(r + 1) * ips] - n0;
    if (!parents) {
      max_depth = std::max(max_depth, n);
      continue;
    }
    depth.assign(n, 0);
    nchild.assign(n + 1, 0);
    const int32_t* pp = parents->ptr<const int32_t>();
    for (int32_t i = 0; i < n; ++i) {
      const int32_t p = pp[(n0 + i) * parents->strides[0]];
      DSPARK_CHECK(p >= -1 && p < i, "parents: expected -1 <= parents[i] < i (local index, ",
                   "topological order), got parents[", n0 + i, "] = ", p, " for node ", i,
                   " of request ", r);
      depth[i] = p < 0 ? 1 : depth[p] + 1;
      max_depth = std::max(max_depth, depth[i]);
      DSPARK_CHECK(++nchild[p + 1] <= kMaxSiblings, "parents: node ", p, " of request ", r,
                   " has more than ", kMaxSiblings, " children");
    }
  }
  return max_depth;
}

namespace {

/// Per-request value ranges (host pointers). Messages match python/dspark/ops/verify.py.
void check_verify_values(const VerifyParams& P) {
  for (int32_t r = 0; r < P.num_requests; ++r) {
    if (P.temperature) {
      const float t = P.temperature[r];
      DSPARK_CHECK(t >= 0.0f && t < kInf,
                   "temperature: expected finite values >= 0, got temperature[", r, "] = ", t);
    }
    if (P.top_k)
      DSPARK_CHECK(P.top_k[r] >= 0, "top_k: expected values >= 0, got top_k[", r,
                   "] = ", P.top_k[r]);
    if (P.top_p)
      DSPARK_CHECK(P.top_p[r] > 0.0f && P.top_p[r] <= 1.0f,
                   "top_p: expected values in (0, 1], got top_p[", r, "] = ", P.top_p[r]);
    if (P.min_p)
      DSPARK_CHECK(P.min_p[r] >= 0.0f && P.min_p[r] <= 1.0f,
                   "min_p: expected values in [0, 1], got min_p[", r, "] = ", P.min_p[r]);
    if (P.max_emit)
      DSPARK_CHECK(P.max_emit[r] >= 0, "max_emit: expected values >= 0, got max_emit[", r,
                   "] = ", P.max_emit[r]);
  }
}

}  // namespace

void verify_batch_with(const VerifyArgs& a) {
  check_tensor(a.target, "target", {kF32, kF16, kBF16}, {-1, -1});
  check_tensor(a.draft_tokens, "draft_tokens", {kI32, kI64}, {-1});
  check_tensor(a.draft_indptr, "draft_indptr", {kI32}, {-1});
  const int64_t R = a.draft_indptr.shape[0] - 1, N = a.draft_tokens.shape[0];
  const int64_t V = a.target.shape[1];
  DSPARK_CHECK(R >= 0, "draft_indptr: expected at least one element (R + 1), got 0");
  DSPARK_CHECK(a.target.shape[0] == N + R, "target: expected shape (N + R, V) = (", N + R,
               ", *) for N = ", N, " draft nodes and R = ", R, " requests, got ",
               shape_str(a.target));
  DSPARK_CHECK(V >= 1 && V < (int64_t(1) << 31), "target: vocabulary size out of range: ", V);
  DSPARK_CHECK(a.max_depth >= 0, "max_depth: expected an int >= 0, got ", a.max_depth);
  const int64_t D = a.max_depth;
  const TensorView& ref = a.target;
  auto same_dev = [&](const TensorView& t, const char* name) {
    check_same_device(t, name, ref, "target");
  };
  same_dev(a.draft_tokens, "draft_tokens");
  same_dev(a.draft_indptr, "draft_indptr");
  if (a.parents) {
    check_tensor(*a.parents, "parents", {kI32}, {N});
    same_dev(*a.parents, "parents");
  }
  if (a.draft_q) {
    check_tensor(*a.draft_q, a.q_kind == DraftQ::kLogits ? "draft_logits" : "draft_probs",
                 {kF32, kF16, kBF16}, {N, V});
    same_dev(*a.draft_q, "draft_q");
  }
  DSPARK_CHECK(bool(a.draft_q) == (a.q_kind != DraftQ::kDeterministic),
               "draft_q: q_kind and the presence of draft_probs/draft_logits disagree");
  struct Opt {
    const std::optional<TensorView>& t;
    const char* name;
    DType dtype;
  };
  for (const Opt& o : {Opt{a.temperature, "temperature", kF32}, Opt{a.top_k, "top_k", kI32},
                       Opt{a.top_p, "top_p", kF32}, Opt{a.min_p, "min_p", kF32},
                       Opt{a.max_emit, "max_emit", kI32}}) {
    if (!o.t) continue;
    check_tensor(*o.t, o.name, {o.dtype}, {R});
    check_contiguous(*o.t, o.name);
    same_dev(*o.t, o.name);
  }
  check_tensor(a.seed, "seed", {kI64}, {R});
  check_contiguous(a.seed, "seed");
  check_contiguous(a.offset, "offset");
  check_int32_sizes(a.target, "target");
  check_int32_sizes(a.draft_tokens, "draft_tokens");
  DSPARK_CHECK(D <= std::max(N, kMaxPadDepth), "max_depth: expected an int in [0, max(N, ",
               kMaxPadDepth, ")] = [0, ", std::max(N, kMaxPadDepth), "] (no path is deeper than ",
               "the N = ", N, " draft nodes; more only pads), got ", D);
  check_tensor(a.offset, "offset", {kI64}, {R});
  same_dev(a.seed, "seed");
  same_dev(a.offset, "offset");
  for (const Opt& o :
       {Opt{a.accept_len, "out.accept_len", kI32}, Opt{a.num_emitted, "out.num_emitted", kI32},
        Opt{a.final_token, "out.final_token", kI32}, Opt{a.last_row, "out.last_row", kI32},
        Opt{a.next_offset, "out.next_offset", kI64}}) {
    check_tensor(*o.t, o.name, {o.dtype}, {R});
    same_dev(*o.t, o.name);
  }
  check_tensor(a.final_is_bonus, "out.final_is_bonus", {DType::kBool}, {R});
  check_tensor(a.tokens, "out.tokens", {kI32}, {R, D + 1});
  check_tensor(a.path, "out.path", {kI32}, {R, D});
  if (a.logprobs) check_tensor(*a.logprobs, "out.logprobs", {kF32}, {R, D + 1});
  for (const TensorView* t : {&a.accept_len, &a.num_emitted, &a.final_token, &a.last_row,
                              &a.next_offset, &a.final_is_bonus, &a.tokens, &a.path})
    DSPARK_CHECK(t->ndim == 1
                     ? (t->shape[0] <= 1 || t->strides[0] == 1)
                     : (t->shape[0] <= 1 || t->shape[1] == 0 || t->strides[0] == t->shape[1]),
                 "out: output tensors must be contiguous");
  DSPARK_CHECK(a.draft_indptr.strides[0] == 1 && a.draft_tokens.strides[0] == 1 &&
                   (!a.parents || a.parents->strides[0] == 1),
               "draft_indptr/draft_tokens/parents must be contiguous");

  VerifyParams P;
  P.target = a.target.data;
  P.target_dtype = a.target.dtype;
  P.target_row_stride = a.target.strides[0];
  P.target_is_probs = a.target_is_probs;
  P.draft_tokens = a.draft_tokens.data;
  P.draft_tokens_int64 = a.draft_tokens.dtype == kI64;
  P.draft_indptr = a.draft_indptr.ptr<const int32_t>();
  P.parents = a.parents ? a.parents->ptr<const int32_t>() : nullptr;
  P.q_kind = a.q_kind;
  P.sampling = a.sampling;
  if (a.draft_q) {
    P.draft_q = a.draft_q->data;
    P.draft_q_dtype = a.draft_q->dtype;
    P.draft_q_row_stride = a.draft_q->strides[0];
  }
  // Value ranges (temperature >= 0, top_p in (0, 1], ...): check_verify_values on host inputs.
  auto f32 = [](const std::optional<TensorView>& t) {
    return t ? t->ptr<const float>() : static_cast<const float*>(nullptr);
  };
  P.temperature = f32(a.temperature);
  P.top_p = f32(a.top_p);
  P.min_p = f32(a.min_p);
  P.top_k = a.top_k ? a.top_k->ptr<const int32_t>() : nullptr;
  P.max_emit = a.max_emit ? a.max_emit->ptr<const int32_t>() : nullptr;
  P.seed = a.seed.ptr<const int64_t>();
  P.offset = a.offset.ptr<const int64_t>();
  P.num_requests = int32_t(R);
  P.vocab_size = int32_t(V);
  P.num_nodes = int32_t(N);
  P.max_depth = int32_t(D);
  P.accept_len = a.accept_len.ptr<int32_t>();
  P.num_emitted = a.num_emitted.ptr<int32_t>();
  P.tokens = a.tokens.ptr<int32_t>();
  P.final_token = a.final_token.ptr<int32_t>();
  P.final_is_bonus = a.final_is_bonus.ptr<bool>();
  P.path = a.path.ptr<int32_t>();
  P.last_row = a.last_row.ptr<int32_t>();
  P.next_offset = a.next_offset.ptr<int64_t>();
  P.logprobs = a.logprobs ? a.logprobs->ptr<float>() : nullptr;
  if (R == 0) return;

  if (a.target.device == DeviceType::kCPU) {
    // Index safety and value ranges on the host are O(N + R) and always on, so no input can make
    // the kernel read out of bounds or produce garbage silently. (CUDA inputs: checked in Python.)
    check_verify_structure(a.draft_tokens, a.draft_indptr, a.parents, V);
    check_verify_values(P);
    cpu::verify_batch(P);
    return;
  }
#ifdef DSPARK_WITH_CUDA
  cuda::verify_batch(P, a.target.device_id, a.stream);
#else
  throw std::invalid_argument(
      "target: got a CUDA tensor, but dspark was built without CUDA (rebuild with nvcc on PATH "
      "and DSPARK_CUDA=ON)");
#endif
}

void verify_batch(TensorView target, TensorView draft_tokens, TensorView draft_indptr,
                  std::optional<TensorView> parents, std::optional<TensorView> draft_q,
                  int64_t q_kind, int64_t sampling, std::optional<TensorView> temperature,
                  std::optional<TensorView> top_k, std::optional<TensorView> top_p,
                  std::optional<TensorView> min_p, TensorView seed, TensorView offset,
                  std::optional<TensorView> max_emit, bool target_is_probs, int64_t max_depth,
                  TensorView accept_len, TensorView num_emitted, TensorView tokens,
                  TensorView final_token, TensorView final_is_bonus, TensorView path,
                  TensorView last_row, TensorView next_offset, std::optional<TensorView> logprobs,
                  int64_t stream) {
  check_int_range(q_kind, "q_kind", 0, 2);
  check_int_range(sampling, "draft_sampling", 0, 1);
  verify_batch_with(VerifyArgs{target,
                               draft_tokens,
                               draft_indptr,
                               parents,
                               draft_q,
                               temperature,
                               top_k,
                               top_p,
                               min_p,
                               max_emit,
                               seed,
                               offset,
                               static_cast<DraftQ>(q_kind),
                               static_cast<DraftSampling>(sampling),
                               target_is_probs,
                               max_depth,
                               accept_len,
                               num_emitted,
                               tokens,
                               final_token,
                               final_is_bonus,
                               path,
                               last_row,
                               next_offset,
                               logprobs,
                               stream});
}

}  // namespace dspark::ops
