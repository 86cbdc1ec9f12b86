#pragma once
// The BatchNorm's inverse standard deviations on the CPU, 1 / sqrt(var + eps), computed one way for the
// generator's kernels and the eval forward's one pass, so that the two eval paths give the same bits.
#include <ATen/core/Tensor.h>

#include "../generator_rows.h"

namespace dsa_ops::cpu {

template <typename acc_t>
void invstd_of(const at::Tensor& var, double eps, const at::Tensor& invstd) {
  const acc_t* v = var.const_data_ptr<acc_t>();
  acc_t* out = invstd.mutable_data_ptr<acc_t>();
  for (int64_t j = 0; j < var.numel(); ++j) out[j] = inverse_sqrt(v[j] + static_cast<acc_t>(eps));
}

}  // namespace dsa_ops::cpu
