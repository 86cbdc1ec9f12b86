// The kernel generator on CUDA: one launch of one block runs every pass over the (R = N*C') rows, with
// __syncthreads between passes (the generator's work is tiny; launches, not flops, are its cost). The
// sums over rows are generator.cuh's, deterministic without atomics.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "generator.cuh"
#include "kernels.h"

namespace dsa_ops::cuda {

namespace {

constexpr int kGeneratorThreads = 512;

// Memory plan: training reads the (R, U) rows twice (hidden units into (R, aU) scratch for the batch
// statistics, then the kernels), eval once; writes the (R, K) kernels and the (aU) statistics used (in
// eval copies of the running ones, g.mean pointing at the copy).
template <typename acc_t>
__global__ void generator_kernel(GeneratorView<acc_t> g, const acc_t* __restrict__ rows, int64_t count, bool training,
                                 acc_t eps, acc_t* __restrict__ hidden, const acc_t* running_mean,
                                 const acc_t* running_var, acc_t* mean, acc_t* var, acc_t* invstd,
                                 acc_t* __restrict__ kernel) {
  const int units = g.hidden;
  if (!training) {
    for (int j = threadIdx.x; j < units; j += blockDim.x) {
      mean[j] = running_mean[j];
      var[j] = running_var[j];
    }
    __syncthreads();
  } else {
    batch_statistics(g, rows, count, hidden, mean, var);
  }
  for (int j = threadIdx.x; j < units; j += blockDim.x) invstd[j] = inverse_sqrt(var[j] + eps);
  __syncthreads();
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) row_kernel(g, rows + r * g.segments, kernel + r * g.taps);
}

// Per-row values the backward keeps between its passes, and its outputs.
template <typename acc_t>
struct BackwardBuffers {
  acc_t* invstd;         // (aU)
  acc_t* batch_terms;    // (2, aU): bn_w * mean(grad_bn_out), bn_w * mean(grad_bn_out * normalized)
  acc_t* normalized;     // (R, aU)
  acc_t* activated;      // (R, aU)
  acc_t* grad_bn_out;    // (R, aU)
  acc_t* grad_hidden;    // (R, aU)
  acc_t* grad_logits;    // (R, K)
  acc_t* kernel;         // (R, K) output, taps reversed
  acc_t* grad_pooled;    // (R, U) output
  acc_t* grad_first;     // (aU, U) output
  acc_t* grad_bn_weight; // (aU) output
  acc_t* grad_bn_bias;   // (aU) output
  acc_t* grad_second;    // (K, aU) output
};

// Memory plan: reads the (R, U) rows and the (R, K) grad_kernel once; keeps (R, 4aU + K) per-row values;
// writes the kernels, grad_pooled and the parameter gradients.
template <typename acc_t>
__global__ void generator_backward_kernel(GeneratorView<acc_t> g, const acc_t* __restrict__ rows,
                                          const acc_t* __restrict__ grad_kernel, const acc_t* var, int64_t count,
                                          bool training, acc_t eps, BackwardBuffers<acc_t> b) {
  const int units = g.hidden, taps = g.taps, segments = g.segments;
  for (int j = threadIdx.x; j < units; j += blockDim.x) b.invstd[j] = inverse_sqrt(var[j] + eps);
  __syncthreads();
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    row_backward_to_bn(g, rows + r * segments, grad_kernel + r * taps, b.kernel + r * taps, b.normalized + r * units,
                       b.activated + r * units, b.grad_logits + r * taps, b.grad_bn_out + r * units);
  }
  __syncthreads();
  sum_quantities(b.grad_second, int64_t(taps) * units, acc_t(1), [&](int64_t q, int lane) {
    return column_sum(b.grad_logits + q / units, taps, b.activated + q % units, units, lane, count, kWarp);
  });
  sum_quantities(b.grad_bn_weight, units, acc_t(1), [&](int64_t j, int lane) {
    return column_sum(b.grad_bn_out + j, units, b.normalized + j, units, lane, count, kWarp);
  });
  sum_quantities(b.grad_bn_bias, units, acc_t(1), [&](int64_t j, int lane) {
    return column_sum<acc_t>(b.grad_bn_out + j, units, nullptr, 0, lane, count, kWarp);
  });
  __syncthreads();
  acc_t* mean_grad = b.batch_terms;
  acc_t* projection = b.batch_terms + units;
  for (int j = threadIdx.x; j < units; j += blockDim.x) {
    mean_grad[j] = g.bn_weight[j] * b.grad_bn_bias[j] / acc_t(count);
    projection[j] = g.bn_weight[j] * b.grad_bn_weight[j] / acc_t(count);
  }
  __syncthreads();
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    row_backward_to_input(g, b.normalized + r * units, b.grad_bn_out + r * units, training ? mean_grad : nullptr,
                          training ? projection : nullptr, b.grad_hidden + r * units, b.grad_pooled + r * segments);
  }
  __syncthreads();
  sum_quantities(b.grad_first, int64_t(units) * segments, acc_t(1), [&](int64_t q, int lane) {
    return column_sum(b.grad_hidden + q / segments, units, rows + q % segments, segments, lane, count, kWarp);
  });
}

}  // namespace

GeneratorOutput generator(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& running_mean,
                          const at::Tensor& running_var, bool training, double eps) {
  const int64_t count = rows.size(0);
  const int64_t units = params.first_weight.size(0);
  const auto options = rows.options();
  auto kernel = at::empty({count, params.second_weight.size(0)}, options);
  auto mean = at::empty({units}, options);
  auto var = at::empty({units}, options);
  auto invstd = at::empty({units}, options);
  auto hidden = at::empty({training ? count : 0, units}, options);
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "dsa_ops_cuda_generator", [&] {
    launch(generator_kernel<scalar_t>, 1, kGeneratorThreads, 0, generator_view<scalar_t>(params, mean, invstd),
           rows.const_data_ptr<scalar_t>(), count, training, static_cast<scalar_t>(eps),
           hidden.mutable_data_ptr<scalar_t>(), running_mean.const_data_ptr<scalar_t>(),
           running_var.const_data_ptr<scalar_t>(), mean.mutable_data_ptr<scalar_t>(), var.mutable_data_ptr<scalar_t>(),
           invstd.mutable_data_ptr<scalar_t>(), kernel.mutable_data_ptr<scalar_t>());
  });
  return {kernel, mean, var};
}

GeneratorGrads generator_backward(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& mean,
                                  const at::Tensor& var, const at::Tensor& grad_kernel, bool training, double eps) {
  auto tensors = generator_backward_tensors(rows, params);
  auto& grads = tensors.grads;
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "dsa_ops_cuda_generator_backward", [&] {
    BackwardBuffers<scalar_t> buffers{tensors.invstd.mutable_data_ptr<scalar_t>(),
                                      tensors.batch_terms.mutable_data_ptr<scalar_t>(),
                                      tensors.per_row[0].mutable_data_ptr<scalar_t>(),
                                      tensors.per_row[1].mutable_data_ptr<scalar_t>(),
                                      tensors.per_row[2].mutable_data_ptr<scalar_t>(),
                                      tensors.per_row[3].mutable_data_ptr<scalar_t>(),
                                      tensors.grad_logits.mutable_data_ptr<scalar_t>(),
                                      grads.kernel.mutable_data_ptr<scalar_t>(),
                                      grads.pooled.mutable_data_ptr<scalar_t>(),
                                      grads.first_weight.mutable_data_ptr<scalar_t>(),
                                      grads.bn_weight.mutable_data_ptr<scalar_t>(),
                                      grads.bn_bias.mutable_data_ptr<scalar_t>(),
                                      grads.second_weight.mutable_data_ptr<scalar_t>()};
    launch(generator_backward_kernel<scalar_t>, 1, kGeneratorThreads, 0,
           generator_view<scalar_t>(params, mean, tensors.invstd), rows.const_data_ptr<scalar_t>(),
           grad_kernel.const_data_ptr<scalar_t>(), var.const_data_ptr<scalar_t>(), rows.size(0), training,
           static_cast<scalar_t>(eps), buffers);
  });
  return grads;
}

}  // namespace dsa_ops::cuda
