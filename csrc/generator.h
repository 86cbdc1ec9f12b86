#pragma once
// The kernel generator on the pooled rows, (R = N*C', U) -> (R, K):
// Linear(U -> aU, no bias) -> BatchNorm1d(aU) -> ReLU -> Linear(aU -> K, no bias) -> Softmax.
// Tiny (R x aU), written with ATen ops so that every device runs the same code, in the accumulation
// dtype (float32, or float64 for double inputs).
#include <ATen/ATen.h>

namespace dsa_ops {

struct GeneratorParams {
  at::Tensor first_weight;  // (aU, U)
  at::Tensor bn_weight;     // (aU)
  at::Tensor bn_bias;       // (aU)
  at::Tensor second_weight; // (K, aU)
};

struct GeneratorState {
  at::Tensor pooled;      // (R, U)
  at::Tensor normalized;  // (R, aU), BatchNorm's (h - mean) * invstd
  at::Tensor activated;   // (R, aU), after ReLU
  at::Tensor kernel;      // (R, K), softmax output
  at::Tensor invstd;      // (aU)
};

struct GeneratorGrads {
  at::Tensor pooled;
  at::Tensor first_weight;
  at::Tensor bn_weight;
  at::Tensor bn_bias;
  at::Tensor second_weight;
};

// The first Linear's output (R, aU): BatchNorm's input.
at::Tensor generator_hidden(const at::Tensor& pooled, const GeneratorParams& params);

// BatchNorm1d's batch mean and biased variance of hidden over its rows (training mode).
std::pair<at::Tensor, at::Tensor> batch_statistics(const at::Tensor& hidden);

// The generator given the BatchNorm statistics to normalise with (batch or running).
GeneratorState generator_forward(const at::Tensor& pooled, const at::Tensor& hidden,
                                 const GeneratorParams& params, const at::Tensor& mean,
                                 const at::Tensor& var, double eps);

// Gradients of the generator given grad_kernel (R, K). batch_stats: the statistics were the batch's
// own (training), so BatchNorm's backward runs through them.
GeneratorGrads generator_backward(const GeneratorState& state, const GeneratorParams& params,
                                  const at::Tensor& grad_kernel, bool batch_stats);

}  // namespace dsa_ops
