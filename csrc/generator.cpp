#include "generator.h"

namespace dsa_ops {

at::Tensor generator_hidden(const at::Tensor& pooled, const GeneratorParams& params) {
  return at::mm(pooled, params.first_weight.t());
}

std::pair<at::Tensor, at::Tensor> batch_statistics(const at::Tensor& hidden) {
  TORCH_CHECK_VALUE(hidden.size(0) > 1,
                    "Expected more than 1 value per channel when training: the generator's BatchNorm "
                    "sees N*C' = ", hidden.size(0), " rows; use more videos or channels, or eval mode");
  const int64_t rows_dim[] = {0};
  auto [var, mean] = at::var_mean(hidden, rows_dim, /*correction=*/at::Scalar(0), /*keepdim=*/false);
  return {mean, var};
}

GeneratorState generator_forward(const at::Tensor& pooled, const at::Tensor& hidden,
                                 const GeneratorParams& params, const at::Tensor& mean,
                                 const at::Tensor& var, double eps) {
  GeneratorState state;
  state.pooled = pooled;
  state.invstd = at::rsqrt(var + eps);
  state.normalized = (hidden - mean) * state.invstd;
  state.activated = at::addcmul(params.bn_bias, state.normalized, params.bn_weight);
  state.activated.relu_();
  state.kernel = at::softmax(at::mm(state.activated, params.second_weight.t()), -1);
  return state;
}

GeneratorGrads generator_backward(const GeneratorState& state, const GeneratorParams& params,
                                  const at::Tensor& grad_kernel, bool batch_stats) {
  GeneratorGrads grads;
  const auto& kernel = state.kernel;
  auto grad_logits = kernel * (grad_kernel - (grad_kernel * kernel).sum(-1, true));
  grads.second_weight = at::mm(grad_logits.t(), state.activated);
  auto grad_bn_out = at::threshold_backward(at::mm(grad_logits, params.second_weight), state.activated, 0);
  grads.bn_weight = (grad_bn_out * state.normalized).sum(0);
  grads.bn_bias = grad_bn_out.sum(0);
  auto grad_normalized = grad_bn_out * params.bn_weight;
  at::Tensor grad_hidden;
  if (batch_stats) {
    // The batch means of grad_normalized and grad_normalized * normalized, from the sums just taken.
    const double rows = static_cast<double>(state.normalized.size(0));
    auto mean_grad = params.bn_weight * grads.bn_bias / rows;
    auto projection = params.bn_weight * grads.bn_weight / rows;
    grad_hidden = (grad_normalized - mean_grad - state.normalized * projection) * state.invstd;
  } else {
    grad_hidden = grad_normalized * state.invstd;
  }
  grads.first_weight = at::mm(grad_hidden.t(), state.pooled);
  grads.pooled = at::mm(grad_hidden, params.first_weight);
  return grads;
}

}  // namespace dsa_ops
