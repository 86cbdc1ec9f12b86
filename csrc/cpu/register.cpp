// Registers the dsa_ops operators for CPU tensors with the CPU kernel table.
#include <torch/library.h>

#include "kernels.h"

namespace dsa_ops::cpu {
namespace {

at::Tensor segment_pool_cpu(const at::Tensor& x, int64_t num_segments, int64_t channels) {
  return segment_pool(kernels(), x, num_segments, channels);
}

at::Tensor segment_pool_backward_cpu(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments) {
  return segment_pool_backward(kernels(), grad_pooled, x, num_segments);
}

at::Tensor aggregate_cpu(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
  return dsa_ops::aggregate(kernels(), x, weight, num_segments, identity);
}

at::Tensor aggregate_grad_input_cpu(const at::Tensor& grad_y, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& grad_pooled, int64_t num_segments,
                                    bool identity) {
  return aggregate_grad_input(kernels(), grad_y, weight, grad_pooled, num_segments, identity);
}

at::Tensor aggregate_grad_weight_cpu(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments,
                                     int64_t channels, int64_t kernel_size) {
  return aggregate_grad_weight(kernels(), grad_y, x, num_segments, channels, kernel_size);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_forward_cpu(
    const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& running_mean, const at::Tensor& running_var, const at::Tensor& second_weight,
    int64_t num_segments, int64_t channels, bool training, double eps, bool identity) {
  return dsa_forward(kernels(), x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                     num_segments, channels, training, eps, identity);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& mean,
    const at::Tensor& var, const at::Tensor& first_weight, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& second_weight, int64_t num_segments, bool training, double eps, bool identity) {
  return dsa_backward(kernels(), grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight,
                      num_segments, training, eps, identity);
}

}  // namespace

TORCH_LIBRARY_IMPL(dsa_ops, CPU, m) {
  m.impl("segment_pool", &segment_pool_cpu);
  m.impl("segment_pool_backward", &segment_pool_backward_cpu);
  m.impl("aggregate", &aggregate_cpu);
  m.impl("aggregate_grad_input", &aggregate_grad_input_cpu);
  m.impl("aggregate_grad_weight", &aggregate_grad_weight_cpu);
  m.impl("dsa_forward", &dsa_forward_cpu);
  m.impl("dsa_backward", &dsa_backward_cpu);
}

}  // namespace dsa_ops::cpu
