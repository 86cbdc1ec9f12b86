#pragma once
// The CUDA kernel table (see ../ops.h for what each entry computes). Every kernel runs on the current
// stream of the input's device, allocates through the caching allocator and never synchronises with
// the host, so the ops can be captured in a CUDA graph.
#include "../kernel_table.h"

namespace dsa_ops::cuda {
DSA_OPS_DECLARE_KERNEL_TABLE(eval_forward, eval_forward_inplace, fused_forward, fused_forward_inplace, fused_backward)

// grad_weight before its splits of S are added: partial (splits, N, C', K), one launch.
struct WeightGradPartials {
  at::Tensor partial;
  int64_t splits;
};
WeightGradPartials grad_weight_partials(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments,
                                        int64_t channels, int64_t kernel_size);
}  // namespace dsa_ops::cuda
