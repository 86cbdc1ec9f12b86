// The eval forward on the CPU in one pass over x, out of place and in place, for inputs whose channel
// planes are unit-stride along s (contiguous, or a slice of it): per (video, channel), its U planes are
// pooled, its kernel generated (the BatchNorm with the running statistics) and the planes aggregated
// while they are still in cache. Channels-last inputs, whose planes are strided, and
// DSA_OPS_EVAL_ONE_LAUNCH=never take the composed path (pool, generator, aggregate).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "../launch_mode.h"
#include "aggregation.h"
#include "batch_norm.h"
#include "kernels.h"

namespace dsa_ops::cpu {

namespace {

struct EvalStatistics {
  at::Tensor pooled;  // (N, C', U)
  at::Tensor mean;    // (aU) copies of the running statistics, as the composed path returns them
  at::Tensor var;
};

bool takes_one_pass(const at::Tensor& x) {
  return launch_mode("DSA_OPS_EVAL_ONE_LAUNCH") != LaunchMode::kNever && !lines_along_channels(plane_strides(x));
}

// Memory plan: reads the C' channels of x from memory once (a channel's U*S values are aggregated from
// cache right after they are pooled: 25 KB for I3D layer3 in float32), writes them into out once and
// the (N, C', U) pooled values. One pass; pooling adds in pool's order, so both paths give the same bits.
template <typename scalar_t>
EvalStatistics pool_generate_aggregate(const at::Tensor& x, const at::Tensor& out, const GeneratorParams& params,
                                       const at::Tensor& running_mean, const at::Tensor& running_var,
                                       int64_t num_segments, int64_t channels, double eps, bool identity) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  const int64_t taps = params.second_weight.size(0);
  const auto options = running_mean.options();
  EvalStatistics stats{at::empty({videos, channels, num_segments}, options), running_mean.clone(),
                       running_var.clone()};
  auto invstd = at::empty(stats.var.sizes(), options);
  invstd_of<acc_t>(stats.var, eps, invstd);
  const auto g = generator_view<acc_t>(params, stats.mean, invstd);
  auto kernel = at::empty({videos, channels, taps}, options);  // filled channel by channel below
  const Aggregation<scalar_t> aggregation(x, kernel, num_segments, identity, std::nullopt, out);  // lines along s
  const auto xs = plane_strides(x);
  const scalar_t* src = x.const_data_ptr<scalar_t>();
  acc_t* pooled = stats.pooled.mutable_data_ptr<acc_t>();
  acc_t* weights = kernel.mutable_data_ptr<acc_t>();
  const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
  parallel_over_channel_blocks(videos, channels, false, [&](int64_t n, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      acc_t* row = pooled + (n * channels + c) * num_segments;
      for (int64_t u = 0; u < num_segments; ++u) {
        row[u] = plane_sum<acc_t>(src + offset(xs, n * num_segments + u, c, 0), spatial) * scale;
      }
      row_kernel(g, row, weights + (n * channels + c) * taps);
      aggregation.block(n, c, c + 1);
    }
  });
  return stats;
}

EvalStatistics eval_pass(const at::Tensor& x, const at::Tensor& out, const GeneratorParams& params,
                         const at::Tensor& running_mean, const at::Tensor& running_var, int64_t num_segments,
                         int64_t channels, double eps, bool identity) {
  EvalStatistics stats;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_eval_forward", [&] {
    stats = pool_generate_aggregate<scalar_t>(x, out, params, running_mean, running_var, num_segments, channels, eps,
                                              identity);
    if (!x.is_same(out)) copy_passthrough<scalar_t>(x, out, channels);
  });
  return stats;
}

}  // namespace

std::optional<ModuleOutputs> eval_forward(const at::Tensor& x, const GeneratorParams& params,
                                        const at::Tensor& running_mean, const at::Tensor& running_var,
                                        int64_t num_segments, int64_t channels, double eps, bool identity) {
  if (!takes_one_pass(x)) return std::nullopt;
  auto y = empty_output(x, x.scalar_type());
  auto stats = eval_pass(x, y, params, running_mean, running_var, num_segments, channels, eps, identity);
  return ModuleOutputs{y, stats.pooled, stats.mean, stats.var};
}

std::optional<std::tuple<at::Tensor, at::Tensor>> eval_forward_inplace(
    const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
    const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps, bool identity) {
  if (!takes_one_pass(x)) return std::nullopt;
  auto stats = eval_pass(x, x, params, running_mean, running_var, num_segments, channels, eps, identity);
  return std::make_tuple(stats.mean, stats.var);
}

}  // namespace dsa_ops::cpu
