// The module's eval forward on CUDA in one launch, out of place or in place, where the shape suits it
// (eval_launch; elsewhere the op composes pool, generator and aggregation). With BatchNorm on its
// running statistics a (video, channel) row's kernel depends on that row alone, so a block owns (video,
// tile of channels) and does pooling, generator and aggregation for it with nothing to wait for outside
// the block.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "kernels.h"
#include "../launch_mode.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

namespace {

// Blocks per multiprocessor below which (DSA_OPS_EVAL_ONE_LAUNCH=auto) the one-launch eval gives way to
// pool + generator + aggregate: a block owns a whole (video, channel tile), so a small grid leaves most
// of the device idle, while the composed kernels spread over every (row, channel) and every position.
// A first guess, to be tuned on a GPU.
constexpr int64_t kOneLaunchBlocksPerSM = 2;

// The most dynamic shared memory a block of the slab variant (kSlab) may take: eight blocks of kThreads,
// an SM's 2048 threads, still fit in Hopper's 228 KB per SM (each block also reserves 1 KB), so holding
// the slab costs no occupancy there (Ampere's A100, 164 KB: six blocks). I3D layer3's float32 slab (U=4,
// S=8*14*14) takes 25 KB. A first guess, to be tuned on a GPU.
constexpr int64_t kSlabSharedBytes = 27 * 1024;

// The block's lanes pool the tile's U rows (sum_over_lanes: a fixed order), one thread per channel runs
// the generator on its row into shared memory, then each thread writes the U outputs of its (channel, s)
// columns from values in shared memory: the aggregated sum on the C' channels, the values themselves
// (bit for bit) on the others. kSlab (where the tile's U*S values fit, eval_launch): pooling keeps every
// value it reads of a tile with processed channels in shared memory, and aggregation reads them there.
// Otherwise each thread stages a column's U values there just before writing it. Either way a thread's U
// loads are in flight together although x and y may alias (they do in place), and every read of a column
// precedes its writes. Memory plan: reads the tile's C' channels of x once with kSlab, else twice
// (pooling, then aggregation: the second read mostly from L2), and writes y once; passthrough tiles read
// and write once. Writes (N, C', U) pooled values. In place y is x and the grid covers the C' channels
// only (all_channels = C').
template <typename scalar_t, typename acc_t, bool kSlab>
__global__ void eval_forward_kernel(const scalar_t* x, PlaneStrides xs, scalar_t* y, PlaneStrides ys,
                                    acc_t* __restrict__ pooled, GeneratorView<acc_t> g, const acc_t* running_var,
                                    acc_t eps, acc_t* mean_out, acc_t* var_out, int64_t channels,
                                    int64_t all_channels, int64_t spatial, acc_t mean_scale, int tile, int tiles,
                                    bool identity) {
  const int segments = g.segments;
  acc_t* scratch = dynamic_shared<acc_t>();                    // blockDim.x values for sum_over_lanes
  acc_t* invstd = scratch + blockDim.x;                        // (aU)
  acc_t* rows = invstd + g.hidden;                             // (tile, U) pooled values
  acc_t* weights = rows + tile * segments;                     // (tile, K) kernels
  // Staged columns, (U, blockDim.x): segment v of this thread's column at column[v * blockDim.x], a
  // warp's accesses in consecutive words. The slab, (U, S, tile): value (v, s) of channel tile_index at
  // slab[(v * spatial + s) * tile], consecutive threads at consecutive words. They share the memory.
  scalar_t* values = reinterpret_cast<scalar_t*>(weights + tile * g.taps);
  scalar_t* column = values + threadIdx.x;
  const int lanes = blockDim.x / tile;
  const int tile_index = threadIdx.x % tile;
  const int lane = threadIdx.x / tile;
  const int64_t video = blockIdx.x / tiles;
  const int64_t first_channel = int64_t(blockIdx.x % tiles) * tile;
  const int64_t channel = first_channel + tile_index;
  const int64_t x_base = plane_offset(xs, video * segments, channel, 0);
  const int64_t y_base = plane_offset(ys, video * segments, channel, 0);
  const bool processed = channel < channels;
  scalar_t* slab = values + tile_index;
  if (blockIdx.x == 0) {
    for (int j = threadIdx.x; j < g.hidden; j += blockDim.x) {
      mean_out[j] = g.mean[j];
      var_out[j] = running_var[j];
    }
  }
  if (first_channel < channels) {  // a tile with processed channels (uniform over the block)
    for (int j = threadIdx.x; j < g.hidden; j += blockDim.x) invstd[j] = inverse_sqrt(running_var[j] + eps);
    for (int u = 0; u < segments; ++u) {
      acc_t sum[1] = {acc_t(0)};
      // kSlab holds the passthrough channels of a tile with processed ones too
      if (processed || (kSlab && channel < all_channels)) {
        for (int64_t s = lane; s < spatial; s += lanes) {
          const scalar_t value = x[x_base + u * xs.row + s * xs.spatial];
          if (kSlab) slab[(u * spatial + s) * tile] = value;
          if (processed) sum[0] += static_cast<acc_t>(value);
        }
      }
      sum_over_lanes(sum, scratch, lane, lanes, tile_index, tile);
      if (lane == 0) rows[tile_index * segments + u] = sum[0] * mean_scale;  // as an unsplit pool_kernel
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
  }
  if (channel >= all_channels) return;
  const acc_t* w = weights + tile_index * g.taps;
  // Segment v of this thread's column s at values_at_s[v * segment_stride]: in the slab where the tile's
  // values are held there (each read by the thread that stored it), else staged from x first.
  const bool held = kSlab && first_channel < channels;
  const int64_t segment_stride = held ? spatial * tile : int64_t(blockDim.x);
  for (int64_t s = lane; s < spatial; s += lanes) {
    const scalar_t* values_at_s = held ? slab + s * tile : column;
    const int64_t y_at_s = y_base + s * ys.spatial;
    if (!held) {
      for (int v = 0; v < segments; ++v) column[v * blockDim.x] = x[x_base + s * xs.spatial + int64_t(v) * xs.row];
    }
    const auto value = [&](int v) { return static_cast<acc_t>(values_at_s[v * segment_stride]); };
    for (int u = 0; u < segments; ++u) {
      scalar_t out = values_at_s[u * segment_stride];
      if (processed) {
        acc_t acc = tap_sum(w, u, segments, g.taps, value);
        if (identity) acc += value(u);
        out = static_cast<scalar_t>(acc);
      }
      y[y_at_s + int64_t(u) * ys.row] = out;
    }
  }
}

// What eval_forward_kernel writes besides y: the pooled (N, C', U) values and the statistics used.
struct EvalStatistics {
  at::Tensor pooled;
  at::Tensor mean;
  at::Tensor var;
};

// How eval_forward_kernel runs over the first `covered` channels of x (all of them out of place, C' in
// place): blocks, their dynamic shared memory (the lanes' sums, invstd, the tile's pooled rows and
// kernels, then the slab or the threads' staged columns), the reduction shape and whether the tiles'
// values are held in a slab.
struct EvalLaunch {
  int64_t covered;
  int64_t blocks;
  int64_t tiles;
  size_t shared_bytes;
  ReductionShape shape;
  bool slab;
};

// eval_forward_kernel's launch, or nullopt where the op composes pool, generator and aggregation instead:
// a block would need more than the default shared memory, or DSA_OPS_EVAL_ONE_LAUNCH says so. The slab
// variant where a tile's U*S values fit in kSlabSharedBytes with the rest.
std::optional<EvalLaunch> eval_launch(const at::Tensor& x, const GeneratorParams& params, int64_t num_segments,
                                      int64_t covered) {
  const auto mode = launch_mode("DSA_OPS_EVAL_ONE_LAUNCH");
  if (mode == LaunchMode::kNever) return std::nullopt;
  const auto shape = reduction_shape(plane_strides(x));
  const int64_t tiles = (covered + shape.tile - 1) / shape.tile;
  const int64_t blocks = x.size(0) / num_segments * tiles;
  const size_t generator_bytes =
      (kThreads + params.first_weight.size(0) + shape.tile * (num_segments + params.second_weight.size(0))) *
      c10::elementSize(accumulate_dtype(x.scalar_type()));
  const size_t column_bytes = kThreads * num_segments * x.element_size();
  const size_t slab_bytes = std::max<size_t>(num_segments * spatial_size(x) * shape.tile * x.element_size(),
                                             column_bytes);
  const bool slab = generator_bytes + slab_bytes <= static_cast<size_t>(kSlabSharedBytes);
  const size_t shared = generator_bytes + (slab ? slab_bytes : column_bytes);
  if (shared > static_cast<size_t>(kDefaultSharedBytes)) return std::nullopt;
  if (mode == LaunchMode::kAuto &&
      blocks < kOneLaunchBlocksPerSM * multiprocessor_count()) {
    return std::nullopt;
  }
  return EvalLaunch{covered, blocks, tiles, shared, shape, slab};
}

// Launches eval_forward_kernel on x (readable) into y (x itself in place, over the C' channels only).
EvalStatistics launch_eval_forward(const EvalLaunch& plan, const at::Tensor& x, const at::Tensor& y,
                                   const GeneratorParams& params, const at::Tensor& running_mean,
                                   const at::Tensor& running_var, int64_t num_segments, int64_t channels,
                                   double eps, bool identity) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t units = params.first_weight.size(0);
  const int64_t spatial = spatial_size(x);
  auto pooled = at::empty({videos, channels, num_segments}, running_mean.options());
  if (videos == 0) return {pooled, running_mean.clone(), running_var.clone()};  // nothing to pool
  auto mean = at::empty({units}, running_mean.options());
  auto var = at::empty({units}, running_mean.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_eval_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch(plan.slab ? eval_forward_kernel<scalar_t, acc_t, true> : eval_forward_kernel<scalar_t, acc_t, false>,
           static_cast<unsigned>(plan.blocks), kThreads, plan.shared_bytes,
           x.const_data_ptr<scalar_t>(), plane_strides(x), y.mutable_data_ptr<scalar_t>(), plane_strides(y),
           pooled.mutable_data_ptr<acc_t>(), generator_view<acc_t>(params, running_mean),
           running_var.const_data_ptr<acc_t>(), static_cast<acc_t>(eps), mean.mutable_data_ptr<acc_t>(),
           var.mutable_data_ptr<acc_t>(), channels, plan.covered, spatial, acc_t(1) / static_cast<acc_t>(spatial),
           plan.shape.tile, static_cast<int>(plan.tiles), identity);
  });
  return {pooled, mean, var};
}

}  // namespace

std::optional<ModuleOutputs> eval_forward(const at::Tensor& x, const GeneratorParams& params,
                                        const at::Tensor& running_mean, const at::Tensor& running_var,
                                        int64_t num_segments, int64_t channels, double eps, bool identity) {
  const auto plan = eval_launch(x, params, num_segments, x.size(1));
  if (!plan) return std::nullopt;
  auto y = empty_output(x, x.scalar_type());
  auto out = launch_eval_forward(*plan, x, y, params, running_mean, running_var, num_segments, channels, eps,
                                 identity);
  return ModuleOutputs{y, out.pooled, out.mean, out.var};
}

std::optional<std::tuple<at::Tensor, at::Tensor>> eval_forward_inplace(
    const at::Tensor& x, const GeneratorParams& params, const at::Tensor& running_mean,
    const at::Tensor& running_var, int64_t num_segments, int64_t channels, double eps, bool identity) {
  const auto plan = eval_launch(x, params, num_segments, channels);
  if (!plan) return std::nullopt;
  auto out = launch_eval_forward(*plan, x, x, params, running_mean, running_var, num_segments, channels, eps,
                                 identity);
  return std::make_tuple(out.mean, out.var);
}

}  // namespace dsa_ops::cuda
