// SPDX-License-Identifier: Apache-2.0
// Layer: cpu/. Run-time ISA dispatch: kernels are compiled for baseline x86-64 and for AVX2 (built
// without FP contraction; verify/draft_step compute the same per-element values in both).
#include <cstdlib>
#include <cstring>

#include "cpu/draft_step.h"
#include "cpu/verify.h"
#include "cpu/verify_attention.h"

namespace dspark::cpu {

static bool has_avx2() {
#if defined(__x86_64__) && defined(DSPARK_HAVE_AVX2_VARIANT)
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
#else
  return false;
#endif
}

const char* isa_name() { return has_avx2() ? "avx2" : "generic"; }

void verify_batch(const VerifyParams& P) {
#if defined(DSPARK_HAVE_AVX2_VARIANT)
  if (has_avx2()) return cpu_avx2::verify_batch(P);
#endif
  cpu_generic::verify_batch(P);
}

void draft_step(const DraftStepParams& P) {
#if defined(DSPARK_HAVE_AVX2_VARIANT)
  if (has_avx2()) return cpu_avx2::draft_step(P);
#endif
  cpu_generic::draft_step(P);
}

void verify_attention(const VerifyAttentionParams& P) {
#if defined(DSPARK_HAVE_AVX2_VARIANT)
  static const bool fma = __builtin_cpu_supports("fma");  // its micro-kernels use FMA
  // DSPARK_CPU_ISA=generic forces the baseline build (tests compare it with the AVX2 one).
  static const bool force_generic = [] {
    const char* e = std::getenv("DSPARK_CPU_ISA");
    return e != nullptr && std::strcmp(e, "generic") == 0;
  }();
  if (has_avx2() && fma && !force_generic) return cpu_avx2::verify_attention(P);
#endif
  cpu_generic::verify_attention(P);
}

}  // namespace dspark::cpu
