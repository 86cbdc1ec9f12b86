#pragma once
// Argument validation shared by every compiled op; messages name the argument and the allowed values.
#include <ATen/core/Tensor.h>

namespace dsa_ops {

// x: a 4D (N*U, C, H, W) or 5D (N*U, C, T, H, W) floating tensor with T*H*W >= 1, whose batch is a
// multiple of U.
void check_input(const at::Tensor& x, int64_t num_segments);

// channels: the processed channel count C', 1 <= C' <= C.
void check_channels(const at::Tensor& x, int64_t channels);

// kernel_size: K, odd and >= 1.
void check_kernel_size(int64_t kernel_size);

// weight: (N, C', K) floating, on x's device, K odd.
void check_aggregate_weight(const at::Tensor& weight, const at::Tensor& x, int64_t num_segments);

// grad: same sizes, device and dtype as x, with the given name.
void check_same_shape(const at::Tensor& grad, const at::Tensor& x, const char* name);

// rows: the generator's batch in training, more than one (BatchNorm1d's rule).
void check_batch_rows(int64_t rows);

// pooled-shaped tensors: (N, C', U) on x's device.
void check_pooled(const at::Tensor& pooled, const at::Tensor& x, int64_t num_segments, const char* name);

}  // namespace dsa_ops
