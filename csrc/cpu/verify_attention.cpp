// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. CPU backend of verify_attention, flash-decoding style: one task per
// (request, kv head) runs the whole GQA group of query heads for all of the request's queries
// together (M = qo_len * H / Hk rows), so every K/V tile is read from the cache once. KV is
// walked in tiles of kTile slots with an online softmax. Layouts chosen for SIMD without
// horizontal sums: Q is kept transposed (Qt [D, Mp]) so S^T = K Qt is an outer-product kernel
// across rows, the softmax runs down the columns of S^T (vectors over rows), and O += P V is an
// outer-product kernel across D. Written with GCC vector types (8 floats) so the same source
// compiles to SSE2 pairs (generic) and AVX2; no FMA is assumed (-ffp-contract=off).
// This file is compiled once per ISA (DSPARK_CPU_ISA_NS = cpu_generic / cpu_avx2).
#include "cpu/verify_attention.h"

#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "dspark/attention/store.h"
#include "dspark/attention/tree_mask.h"

// The 8-float vector type is only passed between inlined helpers of this file, so the psabi note
// about passing AVX vectors without AVX (generic build) does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace dspark::cpu {
namespace DSPARK_CPU_ISA_NS {
namespace {

typedef float v8 __attribute__((vector_size(32), aligned(4)));  // unaligned-safe 8 x float
constexpr int kTile = 32;  // KV slots per tile: Kf + Vf + S^T stay in L1/L2 for D <= 256

inline v8 load8(const float* p) { return *reinterpret_cast<const v8*>(p); }
inline void store8(float* p, v8 x) { *reinterpret_cast<v8*>(p) = x; }
inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }
inline v8 vmax(v8 a, v8 b) { return a > b ? a : b; }

// The AVX2 build fuses the micro-kernels' multiply-adds with explicit FMA (dispatch checks the
// CPU has it): -ffp-contract=off never fuses implicitly, so only these two kernels change. The
// generic build multiplies and adds.
#if defined(__AVX2__)
#define DSPARK_FMA_TARGET __attribute__((target("fma")))
DSPARK_FMA_TARGET inline v8 madd(v8 a, v8 b, v8 c) { return _mm256_fmadd_ps(a, b, c); }
#else
#define DSPARK_FMA_TARGET
inline v8 madd(v8 a, v8 b, v8 c) { return a * b + c; }
#endif

/// dexp (dspark/math.h) on 8 lanes with vector selects: GCC does not if-convert the scalar
/// version inside loops. Same constants and steps, so the result matches dexp bit for bit.
inline v8 exp8(v8 x) {
  typedef int32_t i8 __attribute__((vector_size(32)));
  const v8 lo = splat(-87.33654f), hi = splat(88.72283f), shift = splat(12582912.0f);
  const v8 xc = x < lo ? lo : (x > hi ? hi : x);
  const v8 t = xc * splat(1.44269504088896341f) + shift;
  const v8 n = t - shift;
  v8 r = xc - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  v8 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  i8 e = (i8)t - (i8)shift + 127;
  e = e > 0 ? e : 1;
  v8 y = p * (v8)(e << 23);
  y = x < lo ? splat(0.0f) : y;
  y = x > hi ? splat(kInf) : y;
  return x != x ? x : y;
}

/// S^T[j, m0:m0+8*NV] = sum_d Kf[j, d] * Qt[d, m0:...] for 4 keys j0..j0+3 (outer products).
template <int NV>
DSPARK_FMA_TARGET void qk_block(const float* Kf, const float* Qt, float* St, int D, int Mp, int j0,
                                int m0) {
  v8 acc[4][NV];
  for (int c = 0; c < 4; ++c)
    for (int v = 0; v < NV; ++v) acc[c][v] = splat(0.0f);
  const float* k0 = Kf + int64_t(j0) * D;
  for (int d = 0; d < D; ++d) {
    v8 q[NV];
    for (int v = 0; v < NV; ++v) q[v] = load8(Qt + int64_t(d) * Mp + m0 + 8 * v);
    for (int c = 0; c < 4; ++c) {
      const v8 b = splat(k0[c * D + d]);
      for (int v = 0; v < NV; ++v) acc[c][v] = madd(b, q[v], acc[c][v]);
    }
  }
  for (int c = 0; c < 4; ++c)
    for (int v = 0; v < NV; ++v) store8(St + int64_t(j0 + c) * Mp + m0 + 8 * v, acc[c][v]);
}

/// O[m0:m0+MR, d0:d0+16] += sum_j P^T[j, m] * Vf[j, d0:d0+16].
template <int MR>
DSPARK_FMA_TARGET void pv_block(const float* Pt, const float* Vf, float* O, int D, int Mp,
                                int n_keys, int m0, int d0) {
  v8 acc[MR][2];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 2; ++v) acc[r][v] = load8(O + int64_t(m0 + r) * D + d0 + 8 * v);
  for (int j = 0; j < n_keys; ++j) {
    const v8 x0 = load8(Vf + int64_t(j) * D + d0), x1 = load8(Vf + int64_t(j) * D + d0 + 8);
    const float* p = Pt + int64_t(j) * Mp + m0;
    for (int r = 0; r < MR; ++r) {
      const v8 b = splat(p[r]);
      acc[r][0] = madd(b, x0, acc[r][0]);
      acc[r][1] = madd(b, x1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 2; ++v) store8(O + int64_t(m0 + r) * D + d0 + 8 * v, acc[r][v]);
}

/// Scratch of one task, reused across the tasks a thread runs. Per-head arrays are laid out
/// head-major: head b of the task owns [b * size, (b + 1) * size).
struct Scratch {
  std::vector<float> qt, kf, vf, st, o, m, l, alpha;
  std::vector<uint32_t> words;
  std::vector<int32_t> depth, first_slot;
};

/// What one task needs to know about its request.
struct TaskView {
  int n, M, Mp, G, D, W;
  int32_t prefix, kvl;
  bool window;
  int32_t window_left;
  float soft_cap;
  const uint32_t* words;
  const int32_t* depth;
  const int32_t* first_slot;
};

/// One KV tile [t0, t0 + nk) for one kv head: S^T = K Q^T, cap, mask, online softmax, O += P V.
inline void tile_step(const TaskView& V, int32_t t0, int nk, const float* Qt, float* Kf, float* Vf,
                      float* St, float* O, float* mx, float* lx, float* al) {
  const int D = V.D, Mp = V.Mp, M = V.M, G = V.G;
  const int nk4 = (nk + 3) / 4 * 4;
  if (nk4 > nk) {
    std::memset(Kf + int64_t(nk) * D, 0, sizeof(float) * size_t(nk4 - nk) * D);
    std::memset(Vf + int64_t(nk) * D, 0, sizeof(float) * size_t(nk4 - nk) * D);
  }
  // ---- S^T = K Q^T (rows outer: a 16-row slice of Q^T and the K tile both stay in L1)
  // (4 keys x 24 rows per call: 12 independent FMA chains hide the FMA latency)
  // (the last 32 rows go as 16 + 16 rather than 24 + 8: a lone 8-row block has too few chains)
  int m0 = 0;
  while (Mp - m0 >= 16) {
    if (Mp - m0 >= 24 && Mp - m0 != 32) {
      for (int j = 0; j < nk4; j += 4) qk_block<3>(Kf, Qt, St, D, Mp, j, m0);
      m0 += 24;
    } else {
      for (int j = 0; j < nk4; j += 4) qk_block<2>(Kf, Qt, St, D, Mp, j, m0);
      m0 += 16;
    }
  }
  if (m0 < Mp)
    for (int j = 0; j < nk4; j += 4) qk_block<1>(Kf, Qt, St, D, Mp, j, m0);
  if (V.soft_cap > 0.0f) {
    for (int j = 0; j < nk; ++j) {
      float* row = St + int64_t(j) * Mp;
#pragma omp simd
      for (int m = 0; m < Mp; ++m) row[m] = attn::soft_cap(row[m], V.soft_cap);
    }
  }
  // ---- mask: only tiles that reach the queries' own slots or a window edge need it
  if (t0 + nk > V.prefix || (V.window && t0 < V.prefix)) {
    for (int j = 0; j < nk; ++j) {
      const int32_t slot = t0 + j;
      float* row = St + int64_t(j) * Mp;
      for (int m = 0; m < M; ++m) {
        const int i = m / G;
        bool vis;
        if (slot < V.prefix) {
          vis = slot >= V.first_slot[i];
        } else {
          const int jq = slot - V.prefix;
          vis = attn::mask_bit(V.words + int64_t(i) * V.W, jq) &&
                (!V.window || V.depth[i] - V.depth[jq] <= V.window_left);
        }
        if (!vis) row[m] = kNegInf;
      }
    }
  }
  for (int j = nk; j < nk4; ++j) std::fill(St + int64_t(j) * Mp, St + int64_t(j + 1) * Mp, kNegInf);
  // ---- online softmax down the columns of S^T, 8 rows per vector. mu is the new max with
  // -inf replaced by 0, so rows that have seen nothing yet give e^{-inf} = 0 rather than NaN.
  for (int v = 0; v < Mp; v += 8) {
    const v8 m_old = load8(mx + v);
    v8 m_new = m_old;
    for (int j = 0; j < nk; ++j) m_new = vmax(m_new, load8(St + int64_t(j) * Mp + v));
    const v8 mu = m_new == splat(kNegInf) ? splat(0.0f) : m_new;
    v8 sum = splat(0.0f);
    for (int j = 0; j < nk4; ++j) {
      const v8 p = exp8(load8(St + int64_t(j) * Mp + v) - mu);
      store8(St + int64_t(j) * Mp + v, p);
      sum += p;
    }
    const v8 a = m_old == splat(kNegInf) ? splat(0.0f) : exp8(m_old - m_new);
    store8(lx + v, load8(lx + v) * a + sum);
    store8(mx + v, m_new);
    store8(al + v, a);
  }
  for (int m = 0; m < M; ++m) {
    if (al[m] == 1.0f) continue;
    float* orow = O + int64_t(m) * D;
    const v8 a = splat(al[m]);
    for (int d = 0; d < D; d += 8) store8(orow + d, load8(orow + d) * a);
  }
  // ---- O += P V
  for (int d0 = 0; d0 < D; d0 += 16) {
    int r0 = 0;
    while (M - r0 >= 4) {  // 6-row blocks, ending on 4-row ones instead of single rows
      const int left = M - r0;
      if (left >= 6 && left != 8) {
        pv_block<6>(St, Vf, O, D, Mp, nk4, r0, d0);
        r0 += 6;
      } else {
        pv_block<4>(St, Vf, O, D, Mp, nk4, r0, d0);
        r0 += 4;
      }
    }
    for (; r0 < M; ++r0) pv_block<1>(St, Vf, O, D, Mp, nk4, r0, d0);
  }
}

/// Task = (request, block of `nh` kv heads starting at kvh0). A whole request per task reads each
/// cache slot's K (and V) rows of all heads as one contiguous run (one TLB page instead of Hk),
/// which is what makes scattered pages cheap; smaller blocks keep every thread busy when there are
/// few requests.
template <typename T>
void run_task(const VerifyAttentionParams& P, int32_t r, int32_t kvh0, int32_t nh, Scratch& s) {
  const int32_t q0 = P.qo_indptr[r], n = P.qo_indptr[r + 1] - q0;
  if (n <= 0) return;
  TaskView V;
  V.n = n;
  V.kvl = P.kv_len[r];
  V.prefix = V.kvl - n;
  V.G = P.num_heads / P.num_kv_heads;
  V.D = P.head_dim;
  V.M = n * V.G;
  V.Mp = (V.M + 7) / 8 * 8;
  V.W = attn::mask_words(n);
  V.window = P.window_left >= 0;
  V.window_left = P.window_left;
  V.soft_cap = P.soft_cap;
  const int D = V.D, Mp = V.Mp, M = V.M, G = V.G;
  const int32_t* parents = P.parents ? P.parents + q0 : nullptr;
  const int32_t* bt = P.block_table + int64_t(r) * P.block_table_stride;
  const T* q = static_cast<const T*>(P.q);
  const T* kc = static_cast<const T*>(P.k);
  const T* vc = static_cast<const T*>(P.v);

  // ---- per-query masks: ancestor bit rows, depths and the first visible prefix slot
  s.words.assign(size_t(n) * V.W, 0u);
  s.depth.resize(n);
  s.first_slot.resize(n);
  int32_t lo = V.prefix;  // first slot any query sees (all of the prefix without a window)
  for (int i = 0; i < n; ++i) {
    attn::ancestor_words_row(parents, i, V.W, s.words.data());
    s.depth[i] = attn::tree_depth(parents, i);
    s.first_slot[i] = attn::window_first_slot(V.prefix + s.depth[i], P.window_left);
    lo = std::min(lo, s.first_slot[i]);
  }
  lo = lo / kTile * kTile;
  V.words = s.words.data();
  V.depth = s.depth.data();
  V.first_slot = s.first_slot.data();

  // ---- Q^T per head, pre-scaled; padding rows are zero (their results are never stored)
  const size_t qsz = size_t(D) * Mp, tsz = size_t(kTile) * D;
  s.qt.assign(qsz * nh, 0.0f);
  for (int b = 0; b < nh; ++b)
    for (int m = 0; m < M; ++m) {
      const T* qr =
          q + int64_t(q0 + m / G) * P.q_stride_t + int64_t((kvh0 + b) * G + m % G) * P.q_stride_h;
      float* qt = s.qt.data() + b * qsz;
      for (int d = 0; d < D; ++d) qt[size_t(d) * Mp + m] = load_float(qr, d) * P.sm_scale;
    }
  s.o.assign(qsz * nh, 0.0f);
  s.m.assign(size_t(Mp) * nh, kNegInf);
  s.l.assign(size_t(Mp) * nh, 0.0f);
  s.alpha.resize(Mp);
  s.kf.resize(tsz * nh);
  s.vf.resize(tsz * nh);
  s.st.resize(size_t(kTile) * Mp);

  auto row_ptr = [&](const T* base, int64_t sp, int64_t ss, int64_t sh, int32_t slot, int b) {
    const int32_t page = bt[slot / P.page_size], off = slot % P.page_size;
    return base + int64_t(page) * sp + int64_t(off) * ss + int64_t(kvh0 + b) * sh;
  };
  for (int32_t t0 = lo; t0 < V.kvl; t0 += kTile) {
    const int nk = std::min(kTile, V.kvl - t0);
    // ---- gather the tile's K and V rows of every head of the block as float
    for (int j = 0; j < nk; ++j)
      for (int b = 0; b < nh; ++b) {
        const T* kr = row_ptr(kc, P.k_stride_page, P.k_stride_slot, P.k_stride_head, t0 + j, b);
        const T* vr = row_ptr(vc, P.v_stride_page, P.v_stride_slot, P.v_stride_head, t0 + j, b);
        float* kd = s.kf.data() + b * tsz + int64_t(j) * D;
        float* vd = s.vf.data() + b * tsz + int64_t(j) * D;
#pragma omp simd
        for (int d = 0; d < D; ++d) kd[d] = load_float(kr, d);
#pragma omp simd
        for (int d = 0; d < D; ++d) vd[d] = load_float(vr, d);
      }
    // Prefetch the next tile: pages are scattered, so the hardware prefetcher cannot follow
    // them and the gather above would otherwise stall on DRAM.
    for (int j = 0; j < kTile && t0 + kTile + j < V.kvl; ++j)
      for (int b = 0; b < nh; ++b) {
        const char* kr = reinterpret_cast<const char*>(
            row_ptr(kc, P.k_stride_page, P.k_stride_slot, P.k_stride_head, t0 + kTile + j, b));
        const char* vr = reinterpret_cast<const char*>(
            row_ptr(vc, P.v_stride_page, P.v_stride_slot, P.v_stride_head, t0 + kTile + j, b));
        for (int64_t c = 0; c < int64_t(D) * int64_t(sizeof(T)); c += 64) {
          __builtin_prefetch(kr + c);
          __builtin_prefetch(vr + c);
        }
      }
    for (int b = 0; b < nh; ++b)
      tile_step(V, t0, nk, s.qt.data() + b * qsz, s.kf.data() + b * tsz, s.vf.data() + b * tsz,
                s.st.data(), s.o.data() + b * qsz, s.m.data() + size_t(b) * Mp,
                s.l.data() + size_t(b) * Mp, s.alpha.data());
  }

  // ---- normalise and store
  T* out = static_cast<T*>(P.out);
  for (int b = 0; b < nh; ++b)
    for (int m = 0; m < M; ++m) {
      const int64_t t = q0 + m / G, h = int64_t(kvh0 + b) * G + m % G;
      T* orow = out + t * P.o_stride_t + h * P.o_stride_h;
      const float l = s.l[size_t(b) * Mp + m], mxv = s.m[size_t(b) * Mp + m];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* src = s.o.data() + b * qsz + int64_t(m) * D;
      for (int d = 0; d < D; ++d) store_float(orow, d, src[d] * inv);
      if (P.lse) P.lse[t * P.num_heads + h] = attn::state_lse(attn::SoftmaxState{mxv, l});
    }
}

}  // namespace

void verify_attention(const VerifyAttentionParams& P) {
  // Heads per task: the whole request when its per-head Q^T and O (2 * D * Mp floats each)
  // still fit in L2 together and there are enough requests to keep every thread busy (4 tasks per
  // thread); otherwise halve (Hk is a multiple of the block). Many rows per head (big trees)
  // therefore run one head per task, so Q^T and O stay cache-resident across KV tiles.
  const int64_t want = 4 * int64_t(num_threads());
  const int64_t rows = (int64_t(P.max_qo_len) * (P.num_heads / P.num_kv_heads) + 7) / 8 * 8;
  const int64_t head_bytes = 2 * int64_t(P.head_dim) * rows * int64_t(sizeof(float));
  constexpr int64_t kL2Budget = 256 << 10;
  int32_t nh = P.num_kv_heads;
  while (nh % 2 == 0 &&
         (int64_t(P.num_requests) * (P.num_kv_heads / nh) < want || nh * head_bytes > kL2Budget))
    nh /= 2;
  const int32_t blocks = P.num_kv_heads / nh;
  const int64_t tasks = int64_t(P.num_requests) * blocks;
  DSPARK_DISPATCH_FLOAT(P.dtype, T, [&] {
    parallel_for(0, tasks, [&](int64_t task) {
      thread_local Scratch s;
      const int32_t r = int32_t(task / blocks), hb = int32_t(task % blocks);
      run_task<T>(P, r, hb * nh, nh, s);
    });
  });
}

}  // namespace DSPARK_CPU_ISA_NS
}  // namespace dspark::cpu
