// The module's eval forward on CUDA in one launch, out of place or in place. With BatchNorm on its
// running statistics a (video, channel) row's kernel depends on that row alone, so a block owns (video,
// tile of channels) and does pooling, generator and aggregation for it with nothing to wait for outside
// the block.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "kernels.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

namespace {

// The block's lanes pool the tile's U rows (sum_over_lanes: a fixed order), one thread per channel runs
// the generator on its row into shared memory, then the lanes aggregate the tile; tiles past C' copy.
// Memory plan: reads the tile's channels of x twice (pooling, then aggregation: the second read mostly
// from L2) and writes y once; passthrough tiles read and write once. Writes (N, C', U) pooled values.
// kInPlace: y is x and the grid covers the C' channels only (all_channels = C'); a thread copies its
// (channel, s) column's U values into its own slice of shared memory before writing any of them. (x and
// y are not __restrict__: in place they alias.)
template <typename scalar_t, typename acc_t, bool kInPlace>
__global__ void eval_forward_kernel(const scalar_t* x, PlaneStrides xs, scalar_t* y,
                                    PlaneStrides ys, acc_t* __restrict__ pooled, GeneratorView<acc_t> g,
                                    const acc_t* running_var, acc_t eps, acc_t* mean_out, acc_t* var_out,
                                    int64_t channels, int64_t all_channels, int64_t spatial, acc_t mean_scale,
                                    int tile, int tiles, bool identity) {
  extern __shared__ unsigned char scratch_bytes[];
  const int segments = g.segments;
  acc_t* scratch = reinterpret_cast<acc_t*>(scratch_bytes);  // blockDim.x values for sum_over_lanes
  acc_t* invstd = scratch + blockDim.x;                        // (aU)
  acc_t* rows = invstd + g.hidden;                             // (tile, U) pooled values
  acc_t* weights = rows + tile * segments;                     // (tile, K) kernels
  acc_t* column = weights + tile * g.taps + threadIdx.x * segments;  // in place: this thread's (U) column
  const int lanes = blockDim.x / tile;
  const int tile_index = threadIdx.x % tile;
  const int lane = threadIdx.x / tile;
  const int64_t video = blockIdx.x / tiles;
  const int64_t first_channel = int64_t(blockIdx.x % tiles) * tile;
  const int64_t channel = first_channel + tile_index;
  const int64_t x_base = plane_offset(xs, video * segments, channel, 0);
  const int64_t y_base = plane_offset(ys, video * segments, channel, 0);
  if (blockIdx.x == 0) {
    for (int j = threadIdx.x; j < g.hidden; j += blockDim.x) {
      mean_out[j] = g.mean[j];
      var_out[j] = running_var[j];
    }
  }
  if (first_channel >= channels) {  // a passthrough tile (uniform over the block)
    if (channel >= all_channels) return;
    for (int64_t s = lane; s < spatial; s += lanes) {
      copy_column(x + x_base + s * xs.spatial, xs.row, y + y_base + s * ys.spatial, ys.row, segments);
    }
    return;
  }
  const bool processed = channel < channels;
  for (int j = threadIdx.x; j < g.hidden; j += blockDim.x) invstd[j] = inverse_sqrt(running_var[j] + eps);
  for (int u = 0; u < segments; ++u) {
    acc_t sum[1] = {acc_t(0)};
    if (processed) {
      for (int64_t s = lane; s < spatial; s += lanes) sum[0] += static_cast<acc_t>(x[x_base + u * xs.row + s * xs.spatial]);
    }
    sum_over_lanes(sum, scratch, lane, lanes, tile_index, tile);
    if (lane == 0) rows[tile_index * segments + u] = sum[0] * mean_scale;  // as pool_kernel
  }
  __syncthreads();
  if (lane == 0 && processed) {
    GeneratorView<acc_t> view = g;
    view.invstd = invstd;
    const acc_t* p = rows + tile_index * segments;
    for (int u = 0; u < segments; ++u) pooled[(video * channels + channel) * segments + u] = p[u];
    row_kernel(view, p, weights + tile_index * g.taps);
  }
  __syncthreads();
  if (channel >= all_channels) return;
  const acc_t* w = weights + tile_index * g.taps;
  for (int64_t s = lane; s < spatial; s += lanes) {
    const int64_t x_at_s = x_base + s * xs.spatial;
    const int64_t y_at_s = y_base + s * ys.spatial;
    if (!processed) {
      copy_column(x + x_at_s, xs.row, y + y_at_s, ys.row, segments);
      continue;
    }
    if constexpr (kInPlace) {
      for (int v = 0; v < segments; ++v) column[v] = static_cast<acc_t>(x[x_at_s + int64_t(v) * xs.row]);
    }
    const auto x_at = [&](int v) {
      if constexpr (kInPlace) return column[v];
      return static_cast<acc_t>(x[x_at_s + int64_t(v) * xs.row]);
    };
    for (int u = 0; u < segments; ++u) {
      acc_t acc = tap_sum(w, u, segments, g.taps, x_at);
      if (identity) acc += x_at(u);
      y[y_at_s + int64_t(u) * ys.row] = static_cast<scalar_t>(acc);
    }
  }
}

// Shared memory of one eval_forward_kernel block: the lanes' sums, invstd, the tile's pooled rows and
// kernels, and in place each thread's column.
size_t eval_shared_bytes(int64_t units, int64_t segments, int64_t taps, int tile, bool in_place,
                         size_t value_bytes) {
  return (kThreads + units + tile * (segments + taps) + (in_place ? kThreads * segments : 0)) * value_bytes;
}

// What eval_forward_kernel writes besides y: the pooled (N, C', U) values and the statistics used.
struct EvalStatistics {
  at::Tensor pooled;
  at::Tensor mean;
  at::Tensor var;
};

// Launches eval_forward_kernel on x (readable) into y (x itself in place, over the C' channels only).
template <bool kInPlace>
EvalStatistics launch_eval_forward(const at::Tensor& x, const at::Tensor& y, const GeneratorParams& params,
                                   const at::Tensor& running_mean, const at::Tensor& running_var,
                                   int64_t num_segments, int64_t channels, double eps, bool identity) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t units = params.first_weight.size(0);
  const int64_t taps = params.second_weight.size(0);
  auto pooled = at::empty({videos, channels, num_segments}, running_mean.options());
  if (videos == 0) return {pooled, running_mean.clone(), running_var.clone()};  // nothing to pool
  auto mean = at::empty({units}, running_mean.options());
  auto var = at::empty({units}, running_mean.options());
  const int64_t covered = kInPlace ? channels : x.size(1);
  const auto xs = plane_strides(x);
  const auto ys = plane_strides(y);
  const auto shape = reduction_shape(xs);
  const int64_t tiles = (covered + shape.tile - 1) / shape.tile;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_eval_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t shared = eval_shared_bytes(units, num_segments, taps, shape.tile, kInPlace, sizeof(acc_t));
    // the view's invstd is set inside the kernel, to the block's shared copy
    eval_forward_kernel<scalar_t, acc_t, kInPlace>
        <<<static_cast<unsigned>(videos * tiles), kThreads, shared, at::cuda::getCurrentCUDAStream()>>>(
            x.const_data_ptr<scalar_t>(), xs, y.mutable_data_ptr<scalar_t>(), ys, pooled.mutable_data_ptr<acc_t>(),
            generator_view<acc_t>(params, running_mean, running_mean), running_var.const_data_ptr<acc_t>(),
            static_cast<acc_t>(eps), mean.mutable_data_ptr<acc_t>(), var.mutable_data_ptr<acc_t>(), channels, covered,
            spatial_size(x), acc_t(1) / static_cast<acc_t>(spatial_size(x)), shape.tile, static_cast<int>(tiles),
            identity);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {pooled, mean, var};
}

}  // namespace

EvalForward eval_forward(const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
                         const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps,
                         bool identity) {
  auto y = empty_output(x, x.scalar_type());
  auto out = launch_eval_forward<false>(x, y, params, running_mean, running_var, num_segments, channels, eps,
                                        identity);
  return {y, out.pooled, out.mean, out.var};
}

// Declines (nullopt) when a block's column slices would not fit the default shared memory.
std::optional<std::tuple<at::Tensor, at::Tensor>> eval_forward_inplace(
    const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
    const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps, bool identity) {
  const size_t shared = eval_shared_bytes(params.first_weight.size(0), num_segments, params.second_weight.size(0),
                                          reduction_shape(plane_strides(x)).tile, true,
                                          c10::elementSize(accumulate_dtype(x.scalar_type())));
  if (shared > static_cast<size_t>(kDefaultSharedBytes)) return std::nullopt;
  auto out = launch_eval_forward<true>(x, x, params, running_mean, running_var, num_segments, channels, eps,
                                       identity);
  return std::make_tuple(out.mean, out.var);
}

}  // namespace dsa_ops::cuda
