#pragma once
// The kernel generator on the pooled rows, (R = N*C', U) -> (R, K):
// Linear(U -> aU, no bias) -> BatchNorm1d(aU) -> ReLU -> Linear(aU -> K, no bias) -> Softmax.
// Each backend runs it as one pass over the rows per kernel table entry (see ops.h), on tensors in
// the accumulation dtype (float32, or float64 for double inputs); the arithmetic is generator_rows.h.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "generator_rows.h"

namespace dsa_ops {

struct GeneratorParams {
  at::Tensor first_weight;  // (aU, U)
  at::Tensor bn_weight;     // (aU)
  at::Tensor bn_bias;       // (aU)
  at::Tensor second_weight; // (K, aU)
};

struct GeneratorOutput {
  at::Tensor kernel;  // (R, K), softmax output
  at::Tensor mean;    // (aU) the statistics BatchNorm normalised with: the batch's (biased variance)
  at::Tensor var;     // (aU) in training, the running ones in eval
};

struct GeneratorGrads {
  at::Tensor kernel;  // (R, K), recomputed with the taps reversed, as the backward's grad_x aggregates
  at::Tensor pooled;  // (R, U)
  at::Tensor first_weight;
  at::Tensor bn_weight;
  at::Tensor bn_bias;
  at::Tensor second_weight;
};

// What a backend's generator_backward allocates: its outputs, and the values it keeps between passes.
struct GeneratorBackwardTensors {
  GeneratorGrads grads;
  at::Tensor invstd;       // (aU)
  at::Tensor batch_terms;  // (2, aU): bn_w * mean(grad_bn_out), bn_w * mean(grad_bn_out * normalized)
  at::Tensor per_row;      // (4, R, aU): normalized, activated, grad_bn_out, grad_hidden
  at::Tensor grad_logits;  // (R, K)
};

inline GeneratorBackwardTensors generator_backward_tensors(const at::Tensor& rows, const GeneratorParams& params) {
  const int64_t count = rows.size(0);
  const int64_t segments = rows.size(1);
  const int64_t units = params.first_weight.size(0);
  const int64_t taps = params.second_weight.size(0);
  const auto options = rows.options();
  return {{at::empty({count, taps}, options), at::empty({count, segments}, options),
           at::empty({units, segments}, options), at::empty({units}, options), at::empty({units}, options),
           at::empty({taps, units}, options)},
          at::empty({units}, options),
          at::empty({2, units}, options),
          at::empty({4, count, units}, options),
          at::empty({count, taps}, options)};
}

// The view of the parameters the row functions read, mean pointing at an (aU) buffer and invstd null,
// for a kernel that points it at its own copy.
template <typename acc_t>
GeneratorView<acc_t> generator_view(const GeneratorParams& params, const at::Tensor& mean) {
  return {params.first_weight.const_data_ptr<acc_t>(), params.bn_weight.const_data_ptr<acc_t>(),
          params.bn_bias.const_data_ptr<acc_t>(), params.second_weight.const_data_ptr<acc_t>(),
          mean.const_data_ptr<acc_t>(), nullptr,
          static_cast<int>(params.first_weight.size(1)), static_cast<int>(params.first_weight.size(0)),
          static_cast<int>(params.second_weight.size(0))};
}

// The same with invstd pointing at an (aU) buffer.
template <typename acc_t>
GeneratorView<acc_t> generator_view(const GeneratorParams& params, const at::Tensor& mean, const at::Tensor& invstd) {
  auto view = generator_view<acc_t>(params, mean);
  view.invstd = invstd.const_data_ptr<acc_t>();
  return view;
}

}  // namespace dsa_ops
