#pragma once
// Conversions between a tensor's storage type and its accumulation type over a unit-stride run, for the
// CPU kernels' line buffers. A scalar float16 conversion (c10::Half's, for the baseline x86-64 the
// library is built for) costs about 1 ns per element, ten times the memory traffic it converts:
// float16 <-> float32 runs on the F16C instructions and float32 -> bfloat16 on AVX2 where the CPU has
// them, chosen at run time; bfloat16 -> float32 is a shift the compiler vectorises as it is.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

namespace dsa_ops::cpu {

void widen_half(float* dst, const c10::Half* src, int64_t n);
void narrow_half(c10::Half* dst, const float* src, int64_t n);
void narrow_bfloat16(c10::BFloat16* dst, const float* src, int64_t n);

// The instructions the conversions above run on, e.g. "float16: F16C, bfloat16: AVX2" (python -m dsa_ops.info).
const char* conversion_instructions();

// dst[i] = src[i] in the accumulation type, i < n.
template <typename acc_t, typename scalar_t>
inline void widen(acc_t* dst, const scalar_t* src, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    widen_half(dst, src, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<acc_t>(src[i]);
  }
}

// dst[i] = src[i] rounded to the storage type, i < n.
template <typename scalar_t, typename acc_t>
inline void narrow(scalar_t* dst, const acc_t* src, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    narrow_half(dst, src, n);
  } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    narrow_bfloat16(dst, src, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<scalar_t>(src[i]);
  }
}

}  // namespace dsa_ops::cpu
