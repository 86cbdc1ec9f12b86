#include "ops.h"

#include <ATen/DeviceGuard.h>
#include <ATen/ops/cat.h>

#include <vector>

#include "checks.h"
#include "generator.h"
#include "layout.h"

namespace dsa_ops {

namespace {

at::Tensor in_accumulate_dtype(const at::Tensor& t, const at::Tensor& x) {
  return t.to(accumulate_dtype(x.scalar_type())).contiguous();
}

// The tensors in x's accumulation dtype, contiguous, in order. Those that need a cast are cast together
// (one concatenation, one cast: two launches on a GPU rather than one per tensor).
std::vector<at::Tensor> all_in_accumulate_dtype(const at::Tensor& x, std::vector<at::Tensor> tensors) {
  const auto acc = accumulate_dtype(x.scalar_type());
  std::vector<size_t> to_cast;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].scalar_type() != acc || !tensors[i].is_contiguous()) to_cast.push_back(i);
  }
  if (to_cast.size() < 2) {
    for (const auto i : to_cast) tensors[i] = in_accumulate_dtype(tensors[i], x);
    return tensors;
  }
  std::vector<at::Tensor> flat;
  for (const auto i : to_cast) flat.push_back(tensors[i].reshape(-1));
  const auto cast = at::cat(flat).to(acc);
  int64_t offset = 0;
  for (const auto i : to_cast) {
    const int64_t count = tensors[i].numel();
    tensors[i] = cast.narrow(0, offset, count).view(tensors[i].sizes());
    offset += count;
  }
  return tensors;
}

void check_parameter(const at::Tensor& p, const at::Tensor& x, at::IntArrayRef shape, const char* name) {
  TORCH_CHECK_VALUE(p.sizes() == shape, name, " must have shape ", shape, ", got ", p.sizes());
  TORCH_CHECK(p.device() == x.device(), name, " must be on x's device (", x.device(), "), got ", p.device());
  const auto acc = accumulate_dtype(x.scalar_type());
  TORCH_CHECK_VALUE(p.scalar_type() == x.scalar_type() || p.scalar_type() == acc, name, " must be ",
                    x.scalar_type(), " or ", acc, " for a ", x.scalar_type(), " input, got ", p.scalar_type());
}

// Validates the generator's parameters against x and U.
void check_generator_params(const at::Tensor& x, int64_t num_segments, const at::Tensor& first_weight,
                            const at::Tensor& bn_weight, const at::Tensor& bn_bias, const at::Tensor& second_weight) {
  TORCH_CHECK_VALUE(first_weight.dim() == 2 && first_weight.size(1) == num_segments,
                    "first_weight (generate.0.weight) must have shape (alpha*U, U=", num_segments, "), got ",
                    first_weight.sizes());
  const int64_t hidden = first_weight.size(0);
  check_parameter(first_weight, x, {hidden, num_segments}, "first_weight (generate.0.weight)");
  check_parameter(bn_weight, x, {hidden}, "bn_weight (generate.1.weight)");
  check_parameter(bn_bias, x, {hidden}, "bn_bias (generate.1.bias)");
  TORCH_CHECK_VALUE(second_weight.dim() == 2, "second_weight (generate.3.weight) must be 2D (K, alpha*U), got ",
                    second_weight.dim(), "D");
  check_kernel_size(second_weight.size(0));
  check_parameter(second_weight, x, {second_weight.size(0), hidden}, "second_weight (generate.3.weight)");
}

// The transpose of aggregation is aggregation with the taps reversed: grad_x[u] = sum_k weight[k] *
// grad_y[u - k + P] = sum_k weight[K - 1 - k] * grad_y[u + k - P].
at::Tensor reversed_taps(const at::Tensor& weight) { return weight.flip({2}).contiguous(); }

// The generator's parameters and running statistics in the accumulation dtype.
struct ModuleParams {
  GeneratorParams generator;
  at::Tensor running_mean;
  at::Tensor running_var;
};

// Validates the module's arguments (x, C', the generator's tensors and running statistics, and in
// training the rows the batch statistics are taken over) and returns them in the accumulation dtype.
ModuleParams module_params(const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& bn_weight,
                           const at::Tensor& bn_bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                           const at::Tensor& second_weight, int64_t num_segments, int64_t channels, bool training) {
  check_input(x, num_segments);
  check_channels(x, channels);
  check_generator_params(x, num_segments, first_weight, bn_weight, bn_bias, second_weight);
  const int64_t hidden_size = first_weight.size(0);
  check_parameter(running_mean, x, {hidden_size}, "running_mean (generate.1.running_mean)");
  check_parameter(running_var, x, {hidden_size}, "running_var (generate.1.running_var)");
  if (training) check_batch_rows(x.size(0) / num_segments * channels);
  auto t = all_in_accumulate_dtype(x, {first_weight, bn_weight, bn_bias, second_weight, running_mean, running_var});
  return {{t[0], t[1], t[2], t[3]}, t[4], t[5]};
}

// What the module's forward computes before aggregating: the pooled rows, the (N, C', K) kernels and
// the BatchNorm statistics used.
struct GeneratedKernels {
  at::Tensor pooled;
  at::Tensor kernel;
  at::Tensor mean;
  at::Tensor var;
};

// Pools the C' channels of input (x in a readable layout) and runs the generator on the pooled
// (N*C', U) rows.
GeneratedKernels generate_kernels(const SegmentKernels& kernels, const at::Tensor& input, const ModuleParams& params,
                                  int64_t num_segments, int64_t channels, bool training, double eps) {
  const int64_t videos = input.size(0) / num_segments;
  auto pooled = kernels.pool(input, num_segments, channels);
  auto generated = kernels.generator(pooled.view({videos * channels, num_segments}), params.generator,
                                     params.running_mean, params.running_var, training, eps);
  return {pooled, generated.kernel.view({videos, channels, params.generator.second_weight.size(0)}), generated.mean,
          generated.var};
}

}  // namespace

at::Tensor segment_pool(const SegmentKernels& kernels, const at::Tensor& x, int64_t num_segments,
                        int64_t channels) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  check_input(x, num_segments);
  check_channels(x, channels);
  return kernels.pool(readable_input(x), num_segments, channels);
}

at::Tensor segment_pool_backward(const SegmentKernels& kernels, const at::Tensor& grad_pooled,
                                 const at::Tensor& x, int64_t num_segments) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  check_input(x, num_segments);
  check_pooled(grad_pooled, x, num_segments, "grad_pooled");
  return kernels.pool_backward(in_accumulate_dtype(grad_pooled, x), readable_input(x), num_segments);
}

at::Tensor aggregate(const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& weight,
                     int64_t num_segments, bool identity) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  check_input(x, num_segments);
  check_aggregate_weight(weight, x, num_segments);
  return kernels.aggregate(readable_input(x), in_accumulate_dtype(weight, x), num_segments, identity, std::nullopt);
}

at::Tensor aggregate_grad_input(const SegmentKernels& kernels, const at::Tensor& grad_y,
                                const at::Tensor& weight, const std::optional<at::Tensor>& grad_pooled,
                                int64_t num_segments, bool identity) {
  const at::OptionalDeviceGuard device_guard(at::device_of(grad_y));
  check_input(grad_y, num_segments);
  check_aggregate_weight(weight, grad_y, num_segments);
  std::optional<at::Tensor> pooled;
  if (grad_pooled) {
    check_pooled(*grad_pooled, grad_y, num_segments, "grad_pooled");
    TORCH_CHECK_VALUE(grad_pooled->size(1) == weight.size(1), "grad_pooled.size(1) must equal weight.size(1) = ",
                      weight.size(1), ", got ", grad_pooled->size(1));
    pooled = in_accumulate_dtype(*grad_pooled, grad_y);
  }
  return kernels.aggregate(readable_input(grad_y), reversed_taps(in_accumulate_dtype(weight, grad_y)), num_segments,
                           identity, pooled);
}

at::Tensor aggregate_grad_weight(const SegmentKernels& kernels, const at::Tensor& grad_y, const at::Tensor& x,
                                 int64_t num_segments, int64_t channels, int64_t kernel_size) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  check_input(x, num_segments);
  check_same_shape(grad_y, x, "grad_y");
  check_channels(x, channels);
  check_kernel_size(kernel_size);
  return kernels.grad_weight(readable_input(grad_y), readable_input(x), num_segments, channels, kernel_size);
}

// Memory plan (forward): pool reads the C' processed channels of x; aggregate reads x once (C'
// channels aggregated, the rest copied) and writes y once. The generator works on (N*C', U) values.
// In eval, a backend with an eval_forward kernel does all of it in one launch where it judges that
// better; otherwise a backend with a fused_forward kernel runs the generator in the aggregation's
// prologue (two launches) where it judges that better.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_forward(
    const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& first_weight,
    const at::Tensor& bn_weight, const at::Tensor& bn_bias, const at::Tensor& running_mean,
    const at::Tensor& running_var, const at::Tensor& second_weight, int64_t num_segments, int64_t channels,
    bool training, double eps, bool identity) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  const auto params = module_params(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                                    num_segments, channels, training);
  const auto input = readable_input(x);
  if (!training && kernels.eval_forward != nullptr) {
    auto out = kernels.eval_forward(input, params.generator, params.running_mean, params.running_var, num_segments,
                                    channels, eps, identity);
    if (out) return {out->y, out->pooled, out->mean, out->var};
  }
  if (kernels.fused_forward != nullptr) {
    auto out = kernels.fused_forward(input, params.generator, params.running_mean, params.running_var, num_segments,
                                     channels, training, eps, identity);
    if (out) return {out->y, out->pooled, out->mean, out->var};
  }
  auto generated = generate_kernels(kernels, input, params, num_segments, channels, training, eps);
  auto y = kernels.aggregate(input, generated.kernel, num_segments, identity, std::nullopt);
  return {y, generated.pooled, generated.mean, generated.var};
}

// Memory plan (in place): pool reads the C' processed channels of x; aggregate_inplace reads them once
// more and writes them once; the other channels are not touched. In eval, a backend with an
// eval_forward_inplace kernel does all of it in one launch where it judges that better; otherwise a
// backend with a fused_forward_inplace kernel runs the generator in the in-place aggregation's prologue
// (two launches) where it judges that better. An awkwardly strided x is processed in a contiguous copy
// whose C' channels are then copied back.
std::tuple<at::Tensor, at::Tensor> dsa_forward_(
    const SegmentKernels& kernels, const at::Tensor& x, const at::Tensor& first_weight,
    const at::Tensor& bn_weight, const at::Tensor& bn_bias, const at::Tensor& running_mean,
    const at::Tensor& running_var, const at::Tensor& second_weight, int64_t num_segments, int64_t channels,
    bool training, double eps, bool identity) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  TORCH_CHECK(!x.requires_grad(), "x must not require grad for the in-place forward (dsa_forward_), which "
              "overwrites it; use the out-of-place forward (DSAConv(inplace=False)) when gradients are needed");
  const auto params = module_params(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                                    num_segments, channels, training);
  const auto input = readable_input(x);
  std::optional<std::tuple<at::Tensor, at::Tensor>> stats;
  if (!training && kernels.eval_forward_inplace != nullptr) {
    stats = kernels.eval_forward_inplace(input, params.generator, params.running_mean, params.running_var,
                                         num_segments, channels, eps, identity);
  }
  if (!stats && kernels.fused_forward_inplace != nullptr) {
    stats = kernels.fused_forward_inplace(input, params.generator, params.running_mean, params.running_var,
                                          num_segments, channels, training, eps, identity);
  }
  if (!stats) {
    auto generated = generate_kernels(kernels, input, params, num_segments, channels, training, eps);
    kernels.aggregate_inplace(input, generated.kernel, num_segments, identity);
    stats = {generated.mean, generated.var};
  }
  if (!input.is_same(x)) x.narrow(1, 0, channels).copy_(input.narrow(1, 0, channels));
  return *stats;
}

// Memory plan (backward): grad_weight reads the C' channels of grad_y and x once; aggregate reads
// grad_y once and writes grad_x once, adding the pooled gradient (dp / S) in the same pass. A backend
// with a fused_backward kernel runs the generator's backward in that aggregation's prologue (two
// launches) where it judges that better.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsa_backward(
    const SegmentKernels& kernels, const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& pooled,
    const at::Tensor& mean, const at::Tensor& var, const at::Tensor& first_weight, const at::Tensor& bn_weight,
    const at::Tensor& bn_bias, const at::Tensor& second_weight, int64_t num_segments, bool training,
    double eps, bool identity) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  check_input(x, num_segments);
  check_same_shape(grad_y, x, "grad_y");
  check_pooled(pooled, x, num_segments, "pooled");
  check_generator_params(x, num_segments, first_weight, bn_weight, bn_bias, second_weight);
  auto t = all_in_accumulate_dtype(x, {first_weight, bn_weight, bn_bias, second_weight});
  const GeneratorParams params{t[0], t[1], t[2], t[3]};

  const int64_t videos = x.size(0) / num_segments;
  const int64_t channels = pooled.size(1);
  const int64_t kernel_size = second_weight.size(0);
  auto rows = in_accumulate_dtype(pooled, x).view({videos * channels, num_segments});

  const auto dy = readable_input(grad_y);
  const auto input = readable_input(x);
  const auto batch_mean = in_accumulate_dtype(mean, x);
  const auto batch_var = in_accumulate_dtype(var, x);
  std::optional<ModuleGrads> grads;
  if (kernels.fused_backward != nullptr) {
    grads = kernels.fused_backward(dy, input, rows, params, batch_mean, batch_var, num_segments, training, eps,
                                   identity);
  }
  if (!grads) {
    auto grad_kernel = kernels.grad_weight(dy, input, num_segments, channels, kernel_size);
    auto generator = kernels.generator_backward(rows, params, batch_mean, batch_var,
                                                grad_kernel.view({videos * channels, kernel_size}), training, eps);
    auto grad_x = kernels.aggregate(dy, generator.kernel.view({videos, channels, kernel_size}), num_segments,
                                    identity, generator.pooled.view({videos, channels, num_segments}));
    grads = ModuleGrads{grad_x, generator.first_weight, generator.bn_weight, generator.bn_bias,
                        generator.second_weight};
  }
  return {grads->x, grads->first_weight.to(first_weight.scalar_type()), grads->bn_weight.to(bn_weight.scalar_type()),
          grads->bn_bias.to(bn_bias.scalar_type()), grads->second_weight.to(second_weight.scalar_type())};
}

}  // namespace dsa_ops
