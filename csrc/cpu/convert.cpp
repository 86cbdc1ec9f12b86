// Conversions to and from float32 over a run. float16: F16C (8 values per instruction) where the CPU has
// it, else c10::Half's scalar conversion. float32 -> bfloat16: c10::BFloat16's rounding (to nearest even,
// NaN to 0x7FC0) in integer operations, 8 values at a time on AVX2 where the CPU has it. Each pair gives
// the same bits (float16 NaN payloads aside). ATen's choice of CPU kernels bounds ours: ATEN_CPU_CAPABILITY=
// default, which turns ATen's vector kernels off, selects the scalar conversions here too.
#include "convert.h"

#include <ATen/Version.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DSA_OPS_X86_DISPATCH 1
#else
#define DSA_OPS_X86_DISPATCH 0
#endif

namespace dsa_ops::cpu {

namespace {

#if DSA_OPS_X86_DISPATCH
// ATen's capability on x86-64: "AVX2" or "AVX512", else "DEFAULT" (torch 2.4: "NO AVX").
bool aten_vectorises() {
  static const bool vectorises = at::get_cpu_capability().rfind("AVX", 0) == 0;
  return vectorises;
}

bool avx2_available() {
  static const bool available = aten_vectorises() && __builtin_cpu_supports("avx2");
  return available;
}

bool f16c_available() {
  static const bool available = aten_vectorises() && __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return available;
}

__attribute__((target("avx,f16c"))) void widen_f16c(float* dst, const c10::Half* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i].x);
}

__attribute__((target("avx,f16c"))) void narrow_f16c(c10::Half* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = c10::Half(_cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT), c10::Half::from_bits());
}

// float32 -> bfloat16, 8 values at a time, as c10::BFloat16 rounds: to nearest even, NaN to 0x7FC0.
__attribute__((target("avx2"))) void narrow_bfloat16_avx2(c10::BFloat16* dst, const float* src, int64_t n) {
  const __m256i one = _mm256_set1_epi32(1), half_ulp = _mm256_set1_epi32(0x7FFF);
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), infinity = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet_nan = _mm256_set1_epi32(0x7FC0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, half_ulp)), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, magnitude), infinity);
    const __m256i values = _mm256_blendv_epi8(rounded, quiet_nan, nan);
    // packus packs within 128-bit lanes: the permutation puts the two lanes' 4 values side by side
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(values, values), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) dst[i] = static_cast<c10::BFloat16>(src[i]);
}
#endif

}  // namespace

void widen_half(float* dst, const c10::Half* src, int64_t n) {
#if DSA_OPS_X86_DISPATCH
  if (f16c_available()) return widen_f16c(dst, src, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

void narrow_half(c10::Half* dst, const float* src, int64_t n) {
#if DSA_OPS_X86_DISPATCH
  if (f16c_available()) return narrow_f16c(dst, src, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
}

void narrow_bfloat16(c10::BFloat16* dst, const float* src, int64_t n) {
#if DSA_OPS_X86_DISPATCH
  if (avx2_available()) return narrow_bfloat16_avx2(dst, src, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::BFloat16>(src[i]);
}

const char* conversion_instructions() {
#if DSA_OPS_X86_DISPATCH
  if (f16c_available() && avx2_available()) return "float16: F16C, bfloat16: AVX2";
  if (f16c_available()) return "float16: F16C, bfloat16: scalar";
  if (avx2_available()) return "float16: scalar, bfloat16: AVX2";
#endif
  return "float16: scalar, bfloat16: scalar";
}

}  // namespace dsa_ops::cpu
