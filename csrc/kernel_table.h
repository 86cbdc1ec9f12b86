#pragma once
// Declares a backend's kernel entry points (see SegmentKernels in ops.h) and its kernels() table in the
// namespace where it is expanded: DSA_OPS_DECLARE_KERNEL_TABLE(EVAL_FORWARD, EVAL_FORWARD_INPLACE,
// FUSED_FORWARD, FUSED_FORWARD_INPLACE, FUSED_BACKWARD) inside namespace dsa_ops::<backend>, EVAL_FORWARD
// being eval_forward where the backend has a one-launch eval forward and nullptr where it has not, the
// others likewise.
#include "ops.h"

#define DSA_OPS_DECLARE_KERNEL_TABLE(EVAL_FORWARD, EVAL_FORWARD_INPLACE, FUSED_FORWARD, FUSED_FORWARD_INPLACE,      \
                                     FUSED_BACKWARD)                                                                 \
  at::Tensor pool(const at::Tensor& x, int64_t num_segments, int64_t channels);                                      \
  at::Tensor pool_backward(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments);                \
  at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,           \
                       const std::optional<at::Tensor>& grad_pooled);                                                \
  void aggregate_inplace(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity);        \
  GeneratorOutput generator(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& running_mean,   \
                            const at::Tensor& running_var, bool training, double eps);                               \
  GeneratorGrads generator_backward(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& mean,   \
                                    const at::Tensor& var, const at::Tensor& grad_kernel, bool training,             \
                                    double eps);                                                                     \
  std::optional<ModuleOutputs> eval_forward(const at::Tensor& x, const GeneratorParams& params,                      \
                                          const at::Tensor& running_mean, const at::Tensor& running_var,             \
                                          int64_t num_segments, int64_t channels, double eps, bool identity);        \
  std::optional<std::tuple<at::Tensor, at::Tensor>> eval_forward_inplace(                                            \
      const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,                            \
      const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps, bool identity);             \
  std::optional<ModuleOutputs> fused_forward(const at::Tensor& x, const GeneratorParams& params,                     \
                                            const at::Tensor& running_mean, const at::Tensor& running_var,           \
                                            int64_t num_segments, int64_t channels, bool training, double eps,       \
                                            bool identity);                                                          \
  std::optional<std::tuple<at::Tensor, at::Tensor>> fused_forward_inplace(                                           \
      const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,                            \
      const at::Tensor& running_var, int64_t num_segments, int64_t channels, bool training, double eps,              \
      bool identity);                                                                                                \
  std::optional<ModuleGrads> fused_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& rows,   \
                                            const GeneratorParams& params, const at::Tensor& mean,                   \
                                            const at::Tensor& var, int64_t num_segments, bool training, double eps,  \
                                            bool identity);                                                          \
  at::Tensor grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments, int64_t channels,      \
                         int64_t kernel_size);                                                                       \
  inline const SegmentKernels& kernels() {                                                                           \
    static const SegmentKernels table{pool,          pool_backward,         aggregate,     aggregate_inplace,        \
                                      generator,     generator_backward,    EVAL_FORWARD,  EVAL_FORWARD_INPLACE,     \
                                      FUSED_FORWARD, FUSED_FORWARD_INPLACE, FUSED_BACKWARD, grad_weight};            \
    return table;                                                                                                    \
  }
