#pragma once
// The CUDA kernel table (see ../ops.h for what each entry computes). Every kernel runs on the current
// stream of the input's device, allocates through the caching allocator and never synchronises with
// the host, so the ops can be captured in a CUDA graph.
#include "../ops.h"

namespace dsa_ops::cuda {

at::Tensor pool(const at::Tensor& x, int64_t num_segments, int64_t channels);
at::Tensor pool_backward(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments);
at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity);
at::Tensor grad_input(const at::Tensor& grad_y, const at::Tensor& weight,
                      const std::optional<at::Tensor>& grad_pooled, int64_t num_segments, bool identity);
at::Tensor grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments, int64_t channels,
                       int64_t kernel_size);

inline const SegmentKernels& kernels() {
  static const SegmentKernels table{pool, pool_backward, aggregate, grad_input, grad_weight};
  return table;
}

}  // namespace dsa_ops::cuda
