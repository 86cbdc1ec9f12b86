#pragma once
// The CPU kernel table (see ../ops.h for what each entry computes): the eval forward in one pass over x,
// out of place and in place (eval_forward.cpp); no fused training forward or backward: there the ops
// compose the other kernels.
#include "../kernel_table.h"

namespace dsa_ops::cpu {
DSA_OPS_DECLARE_KERNEL_TABLE(eval_forward, eval_forward_inplace, nullptr, nullptr, nullptr)
}  // namespace dsa_ops::cpu
