// The kernel generator on the CPU: the row functions of generator_rows.h in parallel over rows, the
// sums over rows (BatchNorm statistics, parameter gradients) one quantity per task in row order, so
// results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include "batch_norm.h"
#include "kernels.h"

namespace dsa_ops::cpu {

namespace {

constexpr int64_t kRowGrain = 64;

// f(r) for every row r in [0, rows), in parallel.
template <typename F>
void for_each_row(int64_t rows, const F& f) {
  at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) f(r);
  });
}

// out[q] = f(q) for every quantity q in [0, count), in parallel.
template <typename acc_t, typename F>
void for_each_quantity(acc_t* out, int64_t count, const F& f) {
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) out[q] = f(q);
  });
}

}  // namespace

// Memory plan: training reads the (R, U) rows twice (hidden units for the batch statistics, then the
// kernels) and keeps (R, aU) hidden values; eval reads them once. Writes (R, K).
GeneratorOutput generator(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& running_mean,
                          const at::Tensor& running_var, bool training, double eps) {
  const int64_t count = rows.size(0);
  const int64_t segments = rows.size(1);
  const int64_t units = params.first_weight.size(0);
  const int64_t taps = params.second_weight.size(0);
  auto kernel = at::empty({count, taps}, rows.options());
  auto mean = training ? at::empty({units}, rows.options()) : running_mean.clone();
  auto var = training ? at::empty({units}, rows.options()) : running_var.clone();
  auto invstd = at::empty({units}, rows.options());
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "dsa_ops_cpu_generator", [&] {
    const auto g = generator_view<scalar_t>(params, mean, invstd);
    const scalar_t* p = rows.const_data_ptr<scalar_t>();
    if (training) {
      auto values = at::empty({count, units}, rows.options());
      scalar_t* h = values.mutable_data_ptr<scalar_t>();
      for_each_row(count, [&](int64_t r) {
        for (int j = 0; j < units; ++j) h[r * units + j] = hidden_unit(g, p + r * segments, j);
      });
      scalar_t* m = mean.mutable_data_ptr<scalar_t>();
      for_each_quantity(m, units, [&](int64_t j) {
        return column_sum<scalar_t>(h + j, units, nullptr, 0, 0, count, 1) / count;
      });
      for_each_quantity(var.mutable_data_ptr<scalar_t>(), units, [&](int64_t j) {
        return centered_square_sum(h + j, units, m[j], 0, count, 1) / count;
      });
    }
    invstd_of<scalar_t>(var, eps, invstd);
    scalar_t* out = kernel.mutable_data_ptr<scalar_t>();
    for_each_row(count, [&](int64_t r) { row_kernel(g, p + r * segments, out + r * taps); });
  });
  return {kernel, mean, var};
}

// Memory plan: reads the (R, U) rows and (R, K) grad_kernel once; keeps per-row values (R, 4aU + K);
// writes the kernels (R, K), grad_pooled (R, U) and the parameter gradients.
GeneratorGrads generator_backward(const at::Tensor& rows, const GeneratorParams& params, const at::Tensor& mean,
                                  const at::Tensor& var, const at::Tensor& grad_kernel, bool training, double eps) {
  const int64_t count = rows.size(0);
  const int64_t segments = rows.size(1);
  const int64_t units = params.first_weight.size(0);
  const int64_t taps = params.second_weight.size(0);
  auto buffers = generator_backward_tensors(rows, params);
  auto& grads = buffers.grads;
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "dsa_ops_cpu_generator_backward", [&] {
    invstd_of<scalar_t>(var, eps, buffers.invstd);
    const auto g = generator_view<scalar_t>(params, mean, buffers.invstd);
    const scalar_t* p = rows.const_data_ptr<scalar_t>();
    const scalar_t* gk = grad_kernel.const_data_ptr<scalar_t>();
    scalar_t* normalized = buffers.per_row[0].mutable_data_ptr<scalar_t>();
    scalar_t* activated = buffers.per_row[1].mutable_data_ptr<scalar_t>();
    scalar_t* grad_bn_out = buffers.per_row[2].mutable_data_ptr<scalar_t>();
    scalar_t* grad_hidden = buffers.per_row[3].mutable_data_ptr<scalar_t>();
    scalar_t* logits = buffers.grad_logits.mutable_data_ptr<scalar_t>();
    scalar_t* kernel = grads.kernel.mutable_data_ptr<scalar_t>();
    for_each_row(count, [&](int64_t r) {
      row_backward_to_bn(g, p + r * segments, gk + r * taps, kernel + r * taps, normalized + r * units,
                         activated + r * units, logits + r * taps, grad_bn_out + r * units);
    });
    for_each_quantity(grads.second_weight.mutable_data_ptr<scalar_t>(), taps * units, [&](int64_t q) {
      return column_sum(logits + q / units, taps, activated + q % units, units, 0, count, 1);
    });
    scalar_t* grad_bn_weight = grads.bn_weight.mutable_data_ptr<scalar_t>();
    scalar_t* grad_bn_bias = grads.bn_bias.mutable_data_ptr<scalar_t>();
    for_each_quantity(grad_bn_weight, units, [&](int64_t j) {
      return column_sum(grad_bn_out + j, units, normalized + j, units, 0, count, 1);
    });
    for_each_quantity(grad_bn_bias, units, [&](int64_t j) {
      return column_sum<scalar_t>(grad_bn_out + j, units, nullptr, 0, 0, count, 1);
    });
    scalar_t* mean_grad = buffers.batch_terms[0].mutable_data_ptr<scalar_t>();
    scalar_t* projection = buffers.batch_terms[1].mutable_data_ptr<scalar_t>();
    for (int64_t j = 0; j < units; ++j) {
      mean_grad[j] = g.bn_weight[j] * grad_bn_bias[j] / count;
      projection[j] = g.bn_weight[j] * grad_bn_weight[j] / count;
    }
    scalar_t* grad_p = grads.pooled.mutable_data_ptr<scalar_t>();
    for_each_row(count, [&](int64_t r) {
      row_backward_to_input(g, normalized + r * units, grad_bn_out + r * units, training ? mean_grad : nullptr,
                            training ? projection : nullptr, grad_hidden + r * units, grad_p + r * segments);
    });
    for_each_quantity(grads.first_weight.mutable_data_ptr<scalar_t>(), units * segments, [&](int64_t q) {
      return column_sum(grad_hidden + q / segments, units, p + q % segments, segments, 0, count, 1);
    });
  });
  return grads;
}

}  // namespace dsa_ops::cpu
