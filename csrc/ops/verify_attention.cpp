// SPDX-License-Identifier: Apache-2.0
// Layer: ops/. See verify_attention.h. Re-checks every invariant the kernels rely on (so a direct
// `_C` call can never read out of bounds on the CPU), then dispatches on the device.
#include "ops/verify_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/verify_attention.h"
#include "ops/checks.h"

#ifdef DSPARK_WITH_CUDA
#include "cuda/verify_attention.h"
#endif

namespace dspark::ops {
namespace {

constexpr auto kF32 = DType::kFloat32, kF16 = DType::kFloat16, kBF16 = DType::kBFloat16;
constexpr auto kI32 = DType::kInt32;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

int32_t at(const TensorView& t, int64_t i) { return t.ptr<const int32_t>()[i * t.strides[0]]; }

}  // namespace

std::pair<int32_t, int32_t> check_verify_attention_indices(
    TensorView qo_indptr, TensorView block_table, TensorView kv_len,
    std::optional<TensorView> parents, int64_t num_tokens, int64_t num_pages, int64_t page_size) {
  // Scalars first: page_size divides below.
  DSPARK_CHECK(page_size >= 1 && page_size <= kInt32Max, "page_size: expected an int in [1, ",
               kInt32Max, "], got ", page_size);
  check_int_range(num_pages, "num_pages", 0, kInt32Max);
  check_int_range(num_tokens, "num_tokens", 0, kInt32Max);
  check_tensor(qo_indptr, "qo_indptr", {kI32}, {-1});
  DSPARK_CHECK(qo_indptr.shape[0] >= 1, "qo_indptr: expected at least one element (R + 1), got 0");
  const int64_t R = qo_indptr.shape[0] - 1;
  check_tensor(block_table, "block_table", {kI32}, {R, -1});
  check_tensor(kv_len, "kv_len", {kI32}, {R});
  if (parents) check_tensor(*parents, "parents", {kI32}, {num_tokens});
  for (const TensorView* t : {&qo_indptr, &block_table, &kv_len})
    DSPARK_CHECK(t->device == DeviceType::kCPU,
                 "check_verify_attention_indices: index tensors must be on the CPU");
  DSPARK_CHECK(!parents || parents->device == DeviceType::kCPU,
               "check_verify_attention_indices: index tensors must be on the CPU");
  DSPARK_CHECK(at(qo_indptr, 0) == 0, "qo_indptr: expected qo_indptr[0] == 0, got ",
               at(qo_indptr, 0));
  DSPARK_CHECK(at(qo_indptr, R) == num_tokens,
               "qo_indptr: expected qo_indptr[-1] == T = ", num_tokens,
               " (query tokens in q), got ", at(qo_indptr, R));
  const int64_t max_pages = block_table.shape[1];
  int32_t max_qo = 0, max_kv = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t q0 = at(qo_indptr, r), n = int64_t(at(qo_indptr, r + 1)) - q0;
    DSPARK_CHECK(n >= 0, "qo_indptr: must be non-decreasing, got qo_indptr[", r, "] = ", q0,
                 " > qo_indptr[", r + 1, "] = ", q0 + n);
    const int32_t kl = at(kv_len, r);
    DSPARK_CHECK(kl >= n, "kv_len: kv_len[", r, "] = ", kl, " is smaller than the request's ",
                 "query count qo_len = ", n, " (kv_len must include the query tokens' own K/V)");
    DSPARK_CHECK(kl <= max_pages * page_size, "kv_len: kv_len[", r, "] = ", kl,
                 " is beyond the block table's capacity max_pages * page_size = ", max_pages, " * ",
                 page_size, " = ", max_pages * page_size);
    const int64_t used = (int64_t(kl) + page_size - 1) / page_size;
    const int32_t* row = block_table.ptr<const int32_t>() + r * block_table.strides[0];
    for (int64_t p = 0; p < used; ++p) {
      const int32_t id = row[p * block_table.strides[1]];
      DSPARK_CHECK(id >= 0 && id < num_pages, "block_table: page id out of range: block_table[", r,
                   ", ", p, "] = ", id, ", expected in [0, ", num_pages, ") (k_cache has ",
                   num_pages, " pages)");
    }
    if (parents)
      for (int64_t i = 0; i < n; ++i) {
        const int32_t p = at(*parents, q0 + i);
        DSPARK_CHECK(p >= -1 && p < i, "parents: expected -1 <= parents[t] < i (local index of ",
                     "the query in its request, topological order), got parents[", q0 + i,
                     "] = ", p, " for query ", i, " of request ", r);
      }
    max_qo = std::max(max_qo, int32_t(n));
    max_kv = std::max(max_kv, kl);
  }
  return {max_qo, max_kv};
}

void verify_attention_with(const VerifyAttentionArgs& a) {
  check_tensor(a.q, "q", {kF32, kF16, kBF16}, {-1, -1, -1});
  const int64_t T = a.q.shape[0], H = a.q.shape[1], D = a.q.shape[2];
  DSPARK_CHECK(D == 64 || D == 128 || D == 256, "q: expected head dim D in {64, 128, 256}, got ",
               D);
  check_tensor(a.k_cache, "k_cache", {a.q.dtype}, {-1, -1, -1, D});
  const int64_t num_pages = a.k_cache.shape[0], page_size = a.k_cache.shape[1];
  const int64_t Hk = a.k_cache.shape[2];
  check_tensor(a.v_cache, "v_cache", {a.q.dtype}, {num_pages, page_size, Hk, D});
  DSPARK_CHECK(Hk >= 1 && H >= 1 && H % Hk == 0, "q: expected the number of query heads H = ", H,
               " to be a positive multiple of the KV heads of k_cache, Hk = ", Hk);
  DSPARK_CHECK(page_size >= 1, "k_cache: expected page_size >= 1, got ", page_size);
  for (const auto& [t, name] :
       {std::pair{&a.q, "q"}, {&a.k_cache, "k_cache"}, {&a.v_cache, "v_cache"}})
    check_int32_sizes(*t, name);
  check_tensor(a.qo_indptr, "qo_indptr", {kI32}, {-1});
  const int64_t R = a.qo_indptr.shape[0] - 1;
  DSPARK_CHECK(R >= 0, "qo_indptr: expected at least one element (R + 1), got 0");
  check_tensor(a.block_table, "block_table", {kI32}, {R, -1});
  check_tensor(a.kv_len, "kv_len", {kI32}, {R});
  check_int32_sizes(a.block_table, "block_table");
  check_int32_sizes(a.qo_indptr, "qo_indptr");
  if (a.parents) check_tensor(*a.parents, "parents", {kI32}, {T});
  check_tensor(a.out, "out", {a.q.dtype}, {T, H, D});
  if (a.lse) check_tensor(*a.lse, "lse", {kF32}, {T, H});
  DSPARK_CHECK(!a.lse || T == 0 || (a.lse->strides[0] == H && a.lse->strides[1] == 1),
               "lse: expected a contiguous (T, H) tensor");
  DSPARK_CHECK(a.window_left >= -1 && a.window_left <= kInt32Max,
               "window_left: expected -1 (no window) or an int in [0, ", kInt32Max, "], got ",
               a.window_left);
  check_finite(a.sm_scale, "sm_scale");
  check_finite(a.soft_cap, "logits_soft_cap");
  DSPARK_CHECK(a.soft_cap >= 0.0, "logits_soft_cap: expected >= 0, got ", a.soft_cap);
  DSPARK_CHECK(std::abs(a.sm_scale) <= std::numeric_limits<float>::max() &&
                   a.soft_cap <= std::numeric_limits<float>::max(),
               "sm_scale/logits_soft_cap: expected values that fit in float32");
  check_int_range(a.max_qo_len, "max_qo_len", -1, kInt32Max);
  check_int_range(a.max_kv_len, "max_kv_len", -1, kInt32Max);
  auto same_dev = [&](const TensorView& t, const char* name) {
    check_same_device(t, name, a.q, "q");
  };
  same_dev(a.k_cache, "k_cache");
  same_dev(a.v_cache, "v_cache");
  same_dev(a.qo_indptr, "qo_indptr");
  same_dev(a.block_table, "block_table");
  same_dev(a.kv_len, "kv_len");
  same_dev(a.out, "out");
  if (a.parents) same_dev(*a.parents, "parents");
  if (a.lse) same_dev(*a.lse, "lse");
  DSPARK_CHECK(a.qo_indptr.strides[0] == 1 && a.kv_len.strides[0] == 1 &&
                   (!a.parents || a.parents->strides[0] == 1) &&
                   (R == 0 || a.block_table.strides[1] == 1),
               "qo_indptr/kv_len/parents/block_table must be contiguous");

  VerifyAttentionParams P;
  P.q = a.q.data;
  P.q_stride_t = a.q.strides[0];
  P.q_stride_h = a.q.strides[1];
  P.k = a.k_cache.data;
  P.v = a.v_cache.data;
  P.k_stride_page = a.k_cache.strides[0];
  P.k_stride_slot = a.k_cache.strides[1];
  P.k_stride_head = a.k_cache.strides[2];
  P.v_stride_page = a.v_cache.strides[0];
  P.v_stride_slot = a.v_cache.strides[1];
  P.v_stride_head = a.v_cache.strides[2];
  P.dtype = a.q.dtype;
  P.qo_indptr = a.qo_indptr.ptr<const int32_t>();
  P.block_table = a.block_table.ptr<const int32_t>();
  P.block_table_stride = a.block_table.strides[0];
  P.kv_len = a.kv_len.ptr<const int32_t>();
  P.parents = a.parents ? a.parents->ptr<const int32_t>() : nullptr;
  P.num_requests = int32_t(R);
  P.num_tokens = int32_t(T);
  P.num_heads = int32_t(H);
  P.num_kv_heads = int32_t(Hk);
  P.head_dim = int32_t(D);
  P.page_size = int32_t(page_size);
  P.max_pages = int32_t(a.block_table.shape[1]);
  P.num_pages = int32_t(num_pages);
  P.sm_scale = float(a.sm_scale);
  P.soft_cap = float(a.soft_cap);
  P.window_left = int32_t(a.window_left);
  DSPARK_CHECK(a.cuda_kernel >= 0 && a.cuda_kernel <= 2, "cuda_kernel: expected 0, 1 or 2, got ",
               a.cuda_kernel);
  P.cuda_kernel = int32_t(a.cuda_kernel);
  P.out = a.out.data;
  P.o_stride_t = a.out.strides[0];
  P.o_stride_h = a.out.strides[1];
  P.lse = a.lse ? a.lse->ptr<float>() : nullptr;
  if (R == 0 || T == 0) return;

  if (a.q.device == DeviceType::kCPU) {
    // Index safety on the host is always on: no input can make the kernel read out of bounds.
    const auto mx = check_verify_attention_indices(a.qo_indptr, a.block_table, a.kv_len, a.parents,
                                                   T, num_pages, page_size);
    P.max_qo_len = mx.first;
    P.max_kv_len = mx.second;
    cpu::verify_attention(P);
    return;
  }
#ifdef DSPARK_WITH_CUDA
  DSPARK_CHECK(a.max_qo_len >= 0 && a.max_kv_len >= 0,
               "max_qo_len/max_kv_len: required for CUDA tensors (the wrapper computes them)");
  P.max_qo_len = int32_t(a.max_qo_len);
  P.max_kv_len = int32_t(a.max_kv_len);
  cuda::verify_attention(P, a.q.device_id, a.stream);
#else
  throw std::invalid_argument(
      "q: got a CUDA tensor, but dspark was built without CUDA (rebuild with nvcc on PATH and "
      "DSPARK_CUDA=ON)");
#endif
}

void verify_attention(TensorView q, TensorView k_cache, TensorView v_cache, TensorView qo_indptr,
                      TensorView block_table, TensorView kv_len, std::optional<TensorView> parents,
                      double sm_scale, double soft_cap, int64_t window_left, int64_t max_qo_len,
                      int64_t max_kv_len, TensorView out, std::optional<TensorView> lse,
                      int64_t cuda_kernel, int64_t stream) {
  verify_attention_with(VerifyAttentionArgs{q, k_cache, v_cache, qo_indptr, block_table, kv_len,
                                            parents, sm_scale, soft_cap, window_left, cuda_kernel,
                                            max_qo_len, max_kv_len, out, lse, stream});
}

}  // namespace dspark::ops
