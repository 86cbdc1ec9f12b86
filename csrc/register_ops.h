#pragma once
// Registers every dsa_ops operator for one dispatch key with a backend's kernel table:
//   TORCH_LIBRARY_IMPL(dsa_ops, CPU, m) { register_ops<cpu::kernels>(m); }
// Each op runs with autocast off: it keeps its own dtypes (accumulation in float32, float64 for double)
// rather than letting the ATen calls inside it (the generator's matmuls) drop to bfloat16.
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "ops.h"

namespace dsa_ops {

template <const SegmentKernels& (*Table)()>
struct OpsWith {
  static at::Tensor segment_pool(const at::Tensor& x, int64_t num_segments, int64_t channels) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::segment_pool(Table(), x, num_segments, channels);
  }
  static at::Tensor segment_pool_backward(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::segment_pool_backward(Table(), grad_pooled, x, num_segments);
  }
  static at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::aggregate(Table(), x, weight, num_segments, identity);
  }
  static at::Tensor aggregate_grad_input(const at::Tensor& grad_y, const at::Tensor& weight,
                                         const std::optional<at::Tensor>& grad_pooled, int64_t num_segments,
                                         bool identity) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::aggregate_grad_input(Table(), grad_y, weight, grad_pooled, num_segments, identity);
  }
  static at::Tensor aggregate_grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments,
                                          int64_t channels, int64_t kernel_size) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::aggregate_grad_weight(Table(), grad_y, x, num_segments, channels, kernel_size);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_forward(
      const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
      const at::Tensor& running_mean, const at::Tensor& running_var, const at::Tensor& second_weight,
      int64_t num_segments, int64_t channels, bool training, double eps, bool identity) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::dsa_forward(Table(), x, first_weight, bn_weight, bn_bias, running_mean, running_var,
                                second_weight, num_segments, channels, training, eps, identity);
  }
  static std::tuple<at::Tensor, at::Tensor> dsa_forward_(
      const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
      const at::Tensor& running_mean, const at::Tensor& running_var, const at::Tensor& second_weight,
      int64_t num_segments, int64_t channels, bool training, double eps, bool identity) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::dsa_forward_(Table(), x, first_weight, bn_weight, bn_bias, running_mean, running_var,
                                 second_weight, num_segments, channels, training, eps, identity);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_backward(
      const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& mean,
      const at::Tensor& var, const at::Tensor& first_weight, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
      const at::Tensor& second_weight, int64_t num_segments, bool training, double eps, bool identity) {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return dsa_ops::dsa_backward(Table(), grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias,
                                 second_weight, num_segments, training, eps, identity);
  }
};

template <const SegmentKernels& (*Table)()>
void register_ops(torch::Library& m) {
  using Ops = OpsWith<Table>;
  m.impl("segment_pool", &Ops::segment_pool);
  m.impl("segment_pool_backward", &Ops::segment_pool_backward);
  m.impl("aggregate", &Ops::aggregate);
  m.impl("aggregate_grad_input", &Ops::aggregate_grad_input);
  m.impl("aggregate_grad_weight", &Ops::aggregate_grad_weight);
  m.impl("dsa_forward", &Ops::dsa_forward);
  m.impl("dsa_forward_", &Ops::dsa_forward_);
  m.impl("dsa_backward", &Ops::dsa_backward);
}

}  // namespace dsa_ops
