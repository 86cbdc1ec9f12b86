#pragma once
// The dsa_ops operators, written once against a table of device kernels. Each backend (csrc/cpu,
// later csrc/cuda) fills a SegmentKernels table and registers these functions for its dispatch key.
// The ops validate their arguments, bring inputs into a readable layout and call the kernels; the
// kernels see validated (rows, C, S) planes.
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "generator.h"

namespace dsa_ops {

// The module's forward outputs: y, the pooled (N, C', U) values and the BatchNorm statistics used.
struct ModuleOutputs {
  at::Tensor y;
  at::Tensor pooled;
  at::Tensor mean;
  at::Tensor var;
};

// The module's backward outputs: grad_x (x's dtype) and the generator's parameter gradients (accumulation
// dtype).
struct ModuleGrads {
  at::Tensor x;
  at::Tensor first_weight;
  at::Tensor bn_weight;
  at::Tensor bn_bias;
  at::Tensor second_weight;
};

struct SegmentKernels {
  // (N, C', U) means over S of the first C' channels, accumulation dtype.
  at::Tensor (*pool)(const at::Tensor& x, int64_t num_segments, int64_t channels);
  // x-shaped: grad_pooled / S on the first C' channels, zero elsewhere; x's dtype.
  at::Tensor (*pool_backward)(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments);
  // x-shaped: y[u] = sum_k weight[k] * x[u + k - P] (+ x[u] when identity) (+ grad_pooled[u] / S when
  // given) on the first C' channels, weight (N, C', K) in the accumulation dtype; the others copied.
  // The backward's grad_x is this on grad_y with the taps reversed.
  at::Tensor (*aggregate)(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                          const std::optional<at::Tensor>& grad_pooled);
  // aggregate's sum written over the first C' channels of x itself (the others untouched).
  void (*aggregate_inplace)(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity);
  // The kernel generator on the pooled rows (R, U), see generator.h: training normalises with the
  // batch's statistics, eval with running_mean / running_var. One pass over the rows (two in training).
  GeneratorOutput (*generator)(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& running_mean,
                               const at::Tensor& running_var, bool training, double eps);
  // Its backward given grad_kernel (R, K) and the statistics the forward normalised with; the kernels come
  // back with their taps reversed, ready for grad_x.
  GeneratorGrads (*generator_backward)(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& mean,
                                       const at::Tensor& var, const at::Tensor& grad_kernel, bool training,
                                       double eps);
  // The eval forward in one launch (BatchNorm on running_mean / running_var, which arrive in the
  // accumulation dtype); nullopt, having done nothing, where the backend judges the shape better served
  // by composing pool, generator and aggregate (or cannot take it), and nullptr where the backend has no
  // such kernel: the op then composes them.
  std::optional<ModuleOutputs> (*eval_forward)(const at::Tensor& x, const GeneratorParams& params,
                                             const at::Tensor& running_mean, const at::Tensor& running_var,
                                             int64_t num_segments, int64_t channels, double eps, bool identity);
  // The eval forward in place on x's first C' channels in one launch (the others untouched), returning
  // the statistics used (mean, var); nullopt and nullptr as for eval_forward, the op then composing pool,
  // generator and aggregate_inplace.
  std::optional<std::tuple<at::Tensor, at::Tensor>> (*eval_forward_inplace)(
      const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
      const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps, bool identity);
  // The forward, training or eval, in two launches: pooling, then the generator in the prologue of the
  // aggregation (BatchNorm on the batch's statistics in training, on running_mean / running_var in eval);
  // nullopt and nullptr as for eval_forward, the op then composing pool, generator and aggregate.
  std::optional<ModuleOutputs> (*fused_forward)(const at::Tensor& x, const GeneratorParams& params,
                                                const at::Tensor& running_mean, const at::Tensor& running_var,
                                                int64_t num_segments, int64_t channels, bool training, double eps,
                                                bool identity);
  // The forward in place on x's first C' channels (the others untouched) in two launches: pooling, then
  // the generator in the prologue of the in-place aggregation; returns the statistics used (mean, var).
  // nullopt and nullptr as for eval_forward, the op then composing pool, generator and aggregate_inplace.
  std::optional<std::tuple<at::Tensor, at::Tensor>> (*fused_forward_inplace)(
      const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
      const at::Tensor& running_var, int64_t num_segments, int64_t channels, bool training, double eps,
      bool identity);
  // The backward in two launches: grad_weight, then the generator's backward in the prologue of grad_x's
  // aggregation. rows: the pooled (N*C', U) values, mean / var: the statistics the forward normalised
  // with, both in the accumulation dtype. nullopt and nullptr as for eval_forward, the op then composing
  // grad_weight, generator_backward and aggregate.
  std::optional<ModuleGrads> (*fused_backward)(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& rows,
                                               const GeneratorParams& params, const at::Tensor& mean,
                                               const at::Tensor& var, int64_t num_segments, bool training,
                                               double eps, bool identity);
  // (N, C', K): sum over U and S of grad_y[u] * x[u + k - P], accumulation dtype.
  at::Tensor (*grad_weight)(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments,
                            int64_t channels, int64_t kernel_size);
};

at::Tensor segment_pool(const SegmentKernels& kernels, const at::Tensor& x, int64_t num_segments,
                        int64_t channels);

at::Tensor segment_pool_backward(const SegmentKernels& kernels, const at::Tensor& grad_pooled,
                                 const at::Tensor& x, int64_t num_segments);

at::Tensor aggregate(const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& weight,
                     int64_t num_segments, bool identity);

at::Tensor aggregate_grad_input(const SegmentKernels& kernels, const at::Tensor& grad_y,
                                const at::Tensor& weight, const std::optional<at::Tensor>& grad_pooled,
                                int64_t num_segments, bool identity);

at::Tensor aggregate_grad_weight(const SegmentKernels& kernels, const at::Tensor& grad_y, const at::Tensor& x,
                                 int64_t num_segments, int64_t channels, int64_t kernel_size);

// The whole module, forward: returns (y, pooled, mean, var) where mean/var are the statistics the
// generator's BatchNorm normalised with (the batch's, biased, in training; the running ones in eval).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_forward(
    const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& first_weight,
    const at::Tensor& bn_weight, const at::Tensor& bn_bias, const at::Tensor& running_mean,
    const at::Tensor& running_var, const at::Tensor& second_weight, int64_t num_segments, int64_t channels,
    bool training, double eps, bool identity);

// The whole module's forward in place, for inference: x's first C' channels are overwritten with the
// output (the others are not touched); returns (mean, var) as dsa_forward. x must not require grad.
std::tuple<at::Tensor, at::Tensor> dsa_forward_(
    const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& first_weight,
    const at::Tensor& bn_weight, const at::Tensor& bn_bias, const at::Tensor& running_mean,
    const at::Tensor& running_var, const at::Tensor& second_weight, int64_t num_segments, int64_t channels,
    bool training, double eps, bool identity);

// The whole module, backward: (grad_x, grad_first_weight, grad_bn_weight, grad_bn_bias, grad_second_weight).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_backward(
    const SegmentKernels& kernels, const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& pooled,
    const at::Tensor& mean, const at::Tensor& var, const at::Tensor& first_weight, const at::Tensor& bn_weight,
    const at::Tensor& bn_bias, const at::Tensor& second_weight, int64_t num_segments, bool training,
    double eps, bool identity);

}  // namespace dsa_ops
