// The module's forward on CUDA in two launches, training or eval, out of place or in place: pooling,
// then one kernel whose every block first runs the generator on all (R = N*C') pooled rows (batch
// statistics included) into shared memory and then aggregates with those kernels. Where R is small the
// repeated generator work is cheap next to a launch of its own; elsewhere (fused_forward and
// fused_forward_inplace decline, fused_launch.h) the op composes pool, generator and aggregate (or
// aggregate_inplace). Results are bitwise those of the composed path: the same row functions, the same
// fixed-order sums (generator.cuh) and the same aggregation loops (aggregate.cuh).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "aggregate.cuh"
#include "fused_launch.h"
#include "generator.cuh"
#include "kernels.h"

namespace dsa_ops::cuda {

namespace {

// The prologue of the fused kernels, run by every thread of the block: the generator on all (R, U)
// pooled rows, BatchNorm on the batch's statistics (training) or the running ones (eval). Block 0 writes
// the (aU) statistics used. Shared memory: mean, var, invstd (aU each), then (R, max(aU, K)) values: the
// hidden units for the batch statistics (training), then the kernels, whose (R, K) start it returns.
template <typename acc_t>
__device__ const acc_t* block_kernels(const GeneratorView<acc_t>& g, const acc_t* __restrict__ pooled, int64_t count,
                                      bool training, acc_t eps, const acc_t* running_var, acc_t* mean_out,
                                      acc_t* var_out) {
  const int units = g.hidden;
  acc_t* mean = dynamic_shared<acc_t>();
  acc_t* var = mean + units;
  acc_t* invstd = var + units;
  acc_t* per_row = invstd + units;
  if (training) {
    batch_statistics(g, pooled, count, per_row, mean, var);
  } else {
    for (int j = threadIdx.x; j < units; j += blockDim.x) {
      mean[j] = g.mean[j];
      var[j] = running_var[j];
    }
  }
  for (int j = threadIdx.x; j < units; j += blockDim.x) {
    invstd[j] = inverse_sqrt(var[j] + eps);
    if (blockIdx.x == 0) {
      mean_out[j] = mean[j];
      var_out[j] = var[j];
    }
  }
  __syncthreads();
  GeneratorView<acc_t> view = g;
  view.mean = mean;
  view.invstd = invstd;
  acc_t* kernel = per_row;  // the hidden units are no longer needed
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    row_kernel(view, pooled + r * g.segments, kernel + r * g.taps);
  }
  __syncthreads();
  return kernel;
}

// The generator's shared values (block_kernels) in values of the accumulation type.
__host__ __device__ inline int64_t prologue_values(int64_t units, int64_t taps, int64_t count) {
  return 3 * units + count * (units > taps ? units : taps);
}

// Memory plan: every block reads the (R, U) pooled rows (from L2) and the parameters; x is read once
// from DRAM and y written once (aggregate_positions); block 0 writes the (aU) statistics used.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void fused_forward_kernel(const scalar_t* __restrict__ x, PlaneStrides xs, scalar_t* __restrict__ y,
                                     PlaneStrides ys, GeneratorView<acc_t> g, const acc_t* __restrict__ pooled,
                                     bool training, acc_t eps, const acc_t* running_var, acc_t* mean_out,
                                     acc_t* var_out, index_t videos, index_t channels, index_t all_channels,
                                     index_t spatial, bool identity, bool by_channel) {
  const acc_t* kernel =
      block_kernels(g, pooled, int64_t(videos) * channels, training, eps, running_var, mean_out, var_out);
  aggregate_positions(x, xs, y, ys, kernel, static_cast<const acc_t*>(nullptr), acc_t(0), videos, channels,
                      all_channels, spatial, g.segments, g.taps, identity, by_channel);
}

// In place: block_kernels, then aggregate_positions_inplace over the C' channels, each thread's column
// staged in shared memory after the generator's values (U * blockDim.x more).
// Memory plan: as fused_forward_kernel's prologue; then reads x's C' channels once from DRAM and
// rewrites them once; the passthrough channels are not touched.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void fused_inplace_kernel(scalar_t* __restrict__ x, PlaneStrides xs, GeneratorView<acc_t> g,
                                     const acc_t* __restrict__ pooled, bool training, acc_t eps,
                                     const acc_t* running_var, acc_t* mean_out, acc_t* var_out, index_t videos,
                                     index_t channels, index_t spatial, bool identity, bool by_channel) {
  const int64_t count = int64_t(videos) * channels;
  const acc_t* kernel = block_kernels(g, pooled, count, training, eps, running_var, mean_out, var_out);
  acc_t* column = dynamic_shared<acc_t>() + prologue_values(g.hidden, g.taps, count) + threadIdx.x;
  aggregate_positions_inplace(x, xs, kernel, column, videos, channels, spatial, g.segments, g.taps, identity,
                              by_channel);
}

// A fused forward's launch: its grid, shared memory and the statistics block 0 writes.
struct FusedForward {
  int blocks;
  size_t shared_bytes;
  at::Tensor mean;
  at::Tensor var;
};

// The launch of a fused forward over `work` positions whose blocks need `extra_values` of the
// accumulation type after the generator's, or nullopt where fused_path declines.
std::optional<FusedForward> fused_forward_launch(const at::Tensor& x, const GeneratorParams& params,
                                                 const at::Tensor& running_mean, int64_t num_segments,
                                                 int64_t channels, int64_t work, int64_t extra_values) {
  const int64_t count = x.size(0) / num_segments * channels;
  const int64_t units = params.first_weight.size(0);
  const int64_t values = prologue_values(units, params.second_weight.size(0), count) + extra_values;
  const size_t shared = values * c10::elementSize(accumulate_dtype(x.scalar_type()));
  if (!fused_path(work, count, shared)) return std::nullopt;
  return FusedForward{fused_blocks(work), shared, at::empty({units}, running_mean.options()),
                      at::empty({units}, running_mean.options())};
}

}  // namespace

std::optional<ModuleOutputs> fused_forward(const at::Tensor& x, const GeneratorParams& params,
                                           const at::Tensor& running_mean, const at::Tensor& running_var,
                                           int64_t num_segments, int64_t channels, bool training, double eps,
                                           bool identity) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  const int64_t work = videos * x.size(1) * spatial;
  const auto plan = fused_forward_launch(x, params, running_mean, num_segments, channels, work, 0);
  if (!plan) return std::nullopt;
  auto pooled = pool(x, num_segments, channels);
  auto y = empty_output(x, x.scalar_type());
  const auto xs = plane_strides(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_fused_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    by_index_width(work, kThreads, [&](auto index) {
      using index_t = decltype(index);
      launch(fused_forward_kernel<scalar_t, acc_t, index_t>, plan->blocks, kThreads, plan->shared_bytes,
             x.const_data_ptr<scalar_t>(), xs, y.mutable_data_ptr<scalar_t>(), plane_strides(y),
             generator_view<acc_t>(params, running_mean), pooled.const_data_ptr<acc_t>(), training,
             static_cast<acc_t>(eps), running_var.const_data_ptr<acc_t>(), plan->mean.mutable_data_ptr<acc_t>(),
             plan->var.mutable_data_ptr<acc_t>(), index_t(videos), index_t(channels),
             index_t(x.size(1)), index_t(spatial), identity, along_channels(xs));
    });
  });
  return ModuleOutputs{y, pooled, plan->mean, plan->var};
}

std::optional<std::tuple<at::Tensor, at::Tensor>> fused_forward_inplace(
    const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
    const at::Tensor& running_var, int64_t num_segments, int64_t channels, bool training, double eps,
    bool identity) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  const int64_t work = videos * channels * spatial;
  const auto plan = fused_forward_launch(x, params, running_mean, num_segments, channels, work,
                                         int64_t(kThreads) * num_segments);
  if (!plan) return std::nullopt;
  const auto pooled = pool(x, num_segments, channels);
  const auto xs = plane_strides(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_fused_forward_", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    by_index_width(work, kThreads, [&](auto index) {
      using index_t = decltype(index);
      launch(fused_inplace_kernel<scalar_t, acc_t, index_t>, plan->blocks, kThreads, plan->shared_bytes,
             x.mutable_data_ptr<scalar_t>(), xs, generator_view<acc_t>(params, running_mean),
             pooled.const_data_ptr<acc_t>(), training, static_cast<acc_t>(eps), running_var.const_data_ptr<acc_t>(),
             plan->mean.mutable_data_ptr<acc_t>(), plan->var.mutable_data_ptr<acc_t>(), index_t(videos),
             index_t(channels), index_t(spatial), identity, along_channels(xs));
    });
  });
  return std::make_tuple(plan->mean, plan->var);
}

}  // namespace dsa_ops::cuda
