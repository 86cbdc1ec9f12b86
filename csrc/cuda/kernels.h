#pragma once
// The CUDA kernel table (see ../ops.h for what each entry computes). Every kernel runs on the current
// stream of the input's device, allocates through the caching allocator and never synchronises with
// the host, so the ops can be captured in a CUDA graph.
#include "../kernel_table.h"

namespace dsa_ops::cuda {
DSA_OPS_DECLARE_KERNEL_TABLE(eval_forward, eval_forward_inplace, fused_forward)
}  // namespace dsa_ops::cuda
