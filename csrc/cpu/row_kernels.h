// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. The hot whole-row loops of verify_batch as small out-of-line functions with scalar
// parameters. This shape is deliberate: the same loops written as generic lambdas inlined into the
// walk stayed scalar under GCC 12 (captured values reached through memory defeat the vectoriser;
// measured 40x slower); here every loop is a plain `s += expr(x[v])` over registers.
#pragma once
#include <cstdint>

#include "dspark/dtype.h"
#include "dspark/math.h"

// Per-ISA copies: this header is only included by the ISA-variant TUs (see CMakeLists.txt).
namespace dspark::cpu::DSPARK_CPU_ISA_NS {

/// How a raw target value x becomes the processed probability p0 = w(x) >= thr ? w(x) * iz : 0.
enum class WeightKind : int32_t { kLogits = 0, kProbs = 1, kProbsTempered = 2 };

struct WeightParams {
  WeightKind kind = WeightKind::kLogits;
  float max = 0.0f, inv_temp = 1.0f, thr = 0.0f, inv_z = 1.0f;
};

/// Draft probability from a raw draft value: given probabilities, or softmax of logits.
struct DraftParams {
  bool logits = false;
  float max = 0.0f, inv_z = 1.0f;
};

#define DSPARK_CPU_KERNEL __attribute__((noinline))

/// sum_{v in [lo, hi)} p0(v)
template <typename T>
DSPARK_CPU_KERNEL float sum_p0(const T* x, int32_t lo, int32_t hi, WeightParams wp) {
  const float m = wp.max, it = wp.inv_temp, thr = wp.thr, iz = wp.inv_z;
  float s = 0.0f;
  switch (wp.kind) {
    case WeightKind::kLogits:
#pragma omp simd reduction(+ : s)
      for (int32_t v = lo; v < hi; ++v) {
        const float w = dexp((load_float(x, v) - m) * it);
        s += select_bits(mask_if(w >= thr), w, 0.0f);
      }
      break;
    case WeightKind::kProbs:
#pragma omp simd reduction(+ : s)
      for (int32_t v = lo; v < hi; ++v) {
        const float w = load_float(x, v);
        s += select_bits(mask_if(w >= thr), w, 0.0f);
      }
      break;
    case WeightKind::kProbsTempered:
      for (int32_t v = lo; v < hi; ++v) {
        const float y = load_float(x, v);
        const float w = y > 0.0f ? dexp(it * dlog(y)) : 0.0f;
        s += w >= thr ? w : 0.0f;
      }
      break;
  }
  return s * iz;
}

/// sum_{v in [lo, hi)} max(0, p0(v) - qscale * q(v)) * inv_s  (the residual after one rejection)
template <typename T, typename TQ>
DSPARK_CPU_KERNEL float sum_residual1(const T* x, const TQ* q, int32_t lo, int32_t hi,
                                      WeightParams wp, DraftParams dp, float qscale, float inv_s) {
  const float m = wp.max, it = wp.inv_temp, thr = wp.thr, iz = wp.inv_z;
  const float qm = dp.max, qiz = dp.inv_z * qscale;
  float s = 0.0f;
  if (wp.kind == WeightKind::kLogits && dp.logits) {
#pragma omp simd reduction(+ : s)
    for (int32_t v = lo; v < hi; ++v) {
      const float w = dexp((load_float(x, v) - m) * it);
      const float d =
          select_bits(mask_if(w >= thr), w * iz, 0.0f) - dexp(load_float(q, v) - qm) * qiz;
      s += d > 0.0f ? d : 0.0f;
    }
  } else if (wp.kind == WeightKind::kLogits) {
#pragma omp simd reduction(+ : s)
    for (int32_t v = lo; v < hi; ++v) {
      const float w = dexp((load_float(x, v) - m) * it);
      const float d = select_bits(mask_if(w >= thr), w * iz, 0.0f) - load_float(q, v) * qscale;
      s += d > 0.0f ? d : 0.0f;
    }
  } else if (wp.kind == WeightKind::kProbs && !dp.logits) {
#pragma omp simd reduction(+ : s)
    for (int32_t v = lo; v < hi; ++v) {
      const float w = load_float(x, v);
      const float d = select_bits(mask_if(w >= thr), w * iz, 0.0f) - load_float(q, v) * qscale;
      s += d > 0.0f ? d : 0.0f;
    }
  } else {  // rarer mixes: scalar
    for (int32_t v = lo; v < hi; ++v) {
      const float y = load_float(x, v);
      const float w = wp.kind == WeightKind::kProbs ? y : (y > 0.0f ? dexp(it * dlog(y)) : 0.0f);
      const float qv = dp.logits ? dexp(load_float(q, v) - qm) * qiz : load_float(q, v) * qscale;
      const float d = (w >= thr ? w * iz : 0.0f) - qv;
      s += d > 0.0f ? d : 0.0f;
    }
  }
  return s * inv_s;
}

/// out[v - lo] = w(v) (unthresholded weights) for the top-k/top-p selection; returns max w.
template <typename T>
DSPARK_CPU_KERNEL float fill_weights(const T* x, int32_t n, WeightParams wp, float* out) {
  const float m = wp.max, it = wp.inv_temp;
  float mx = 0.0f;
  if (wp.kind == WeightKind::kLogits) {
#pragma omp simd reduction(max : mx)
    for (int32_t v = 0; v < n; ++v) {
      out[v] = dexp((load_float(x, v) - m) * it);
      mx = mx < out[v] ? out[v] : mx;
    }
  } else {
    for (int32_t v = 0; v < n; ++v) {
      const float y = load_float(x, v);
      out[v] = wp.kind == WeightKind::kProbs ? y : (y > 0.0f ? dexp(it * dlog(y)) : 0.0f);
      mx = mx < out[v] ? out[v] : mx;
    }
  }
  return mx;
}

/// sum of w[v] >= thr over a weight buffer.
DSPARK_CPU_KERNEL inline float sum_above(const float* w, int32_t n, float thr) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int32_t v = 0; v < n; ++v) s += select_bits(mask_if(w[v] >= thr), w[v], 0.0f);
  return s;
}

/// One pass over a logits row: max, lowest argmax and sum exp((x - max) * it). Each L1-sized chunk
/// is read twice (max, then exp-sum) but memory once; chunks merge with the online-softmax rule.
template <typename T>
DSPARK_CPU_KERNEL void max_sumexp(const T* x, int32_t n, float it, float& max_out, int32_t& arg_out,
                                  double& z_out) {
  constexpr int32_t kBlock = 2048;
  float m = kNegInf;
  int32_t arg = 0;
  double z = 0.0;
  for (int32_t lo = 0; lo < n; lo += kBlock) {
    const int32_t hi = lo + kBlock < n ? lo + kBlock : n;
    float cm = kNegInf;
#pragma omp simd reduction(max : cm)
    for (int32_t v = lo; v < hi; ++v) cm = cm < load_float(x, v) ? load_float(x, v) : cm;
    if (!(cm > kNegInf)) continue;  // all -inf (or NaN): contributes nothing
    float cs = 0.0f;
#pragma omp simd reduction(+ : cs)
    for (int32_t v = lo; v < hi; ++v) cs += dexp((load_float(x, v) - cm) * it);
    if (cm > m) {
      for (int32_t v = lo; v < hi; ++v)
        if (load_float(x, v) == cm) {
          arg = v;
          break;
        }
      z = z * double(dexp((m - cm) * it)) + cs;
      m = cm;
    } else {
      z += double(cs) * double(dexp((cm - m) * it));
    }
  }
  max_out = m;
  arg_out = arg;
  z_out = z;
}

/// sum of exp(x - m) (softmax normaliser of a logits row, raw scale).
template <typename T>
DSPARK_CPU_KERNEL float sum_exp(const T* x, int32_t lo, int32_t hi, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int32_t v = lo; v < hi; ++v) s += dexp(load_float(x, v) - m);
  return s;
}

}  // namespace dspark::cpu::DSPARK_CPU_ISA_NS
