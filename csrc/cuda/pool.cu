// Segment pooling on CUDA and its backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "kernels.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

namespace {

// Memory plan: reads the C' processed channels of x once, writes (N, C', U) means: one pass. Where the
// (row, channel tile) blocks are too few to fill the device (channels-last inputs with few rows), S is
// split over blocks too, which write (splits, N, C', U) partial sums that sum_splits adds (a second
// launch over N*C'*U values). A block's lanes stride over its s and are summed in a fixed order.
template <typename scalar_t, typename acc_t>
__global__ void pool_kernel(const scalar_t* __restrict__ x, PlaneStrides xs, acc_t* __restrict__ out,
                            int64_t num_segments, int64_t channels, int64_t spatial, int64_t split_length,
                            int64_t split_stride, int tile, int tiles, acc_t scale) {
  acc_t* scratch = dynamic_shared<acc_t>();
  const int lanes = blockDim.x / tile;
  const int tile_index = threadIdx.x % tile;
  const int lane = threadIdx.x / tile;
  const int64_t row = blockIdx.x / tiles;
  const int64_t channel = int64_t(blockIdx.x % tiles) * tile + tile_index;
  const int64_t split = blockIdx.y;
  const int64_t s_end = min(spatial, (split + 1) * split_length);
  acc_t sum[1] = {acc_t(0)};
  if (channel < channels) {
    for (int64_t s = split * split_length + lane; s < s_end; s += lanes) {
      sum[0] += static_cast<acc_t>(x[plane_offset(xs, row, channel, s)]);
    }
  }
  sum_over_lanes(sum, scratch, lane, lanes, tile_index, tile);
  if (lane == 0 && channel < channels) {
    const int64_t video = row / num_segments;
    out[split * split_stride + (video * channels + channel) * num_segments + row % num_segments] = sum[0] * scale;
  }
}

// Memory plan: reads (N, C', U) gradients, writes the C' channels of grad_x once.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void pool_backward_kernel(const acc_t* __restrict__ grad_pooled, scalar_t* __restrict__ grad_x,
                                     PlaneStrides gs, index_t videos, index_t channels, index_t spatial,
                                     int num_segments, bool by_channel, acc_t scale) {
  const index_t total = videos * channels * spatial;
  for (index_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    index_t video, channel, s;
    split_position(i, by_channel, channels, spatial, video, channel, s);
    const acc_t* grad = grad_pooled + (int64_t(video) * channels + channel) * num_segments;
    for (int u = 0; u < num_segments; ++u) {
      grad_x[plane_offset(gs, int64_t(video) * num_segments + u, channel, s)] = static_cast<scalar_t>(grad[u] * scale);
    }
  }
}

}  // namespace

at::Tensor pool(const at::Tensor& x, int64_t num_segments, int64_t channels) {
  const int64_t rows = x.size(0);
  const int64_t spatial = spatial_size(x);
  auto out = at::empty({rows / num_segments, channels, num_segments},
                       x.options().dtype(accumulate_dtype(x.scalar_type())));
  const auto xs = plane_strides(x);
  const auto shape = reduction_shape(xs);
  const int tiles = static_cast<int>((channels + shape.tile - 1) / shape.tile);
  const int64_t blocks = rows * tiles;
  if (blocks == 0) return out;
  const int64_t splits = split_count(blocks, spatial, shape.lanes);
  const int64_t split_length = (spatial + splits - 1) / splits;
  auto partial = splits == 1 ? out : at::empty({splits, out.size(0), channels, num_segments}, out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_pool", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t mean_scale = acc_t(1) / static_cast<acc_t>(spatial);
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
    launch(pool_kernel<scalar_t, acc_t>, grid, kThreads, kThreads * sizeof(acc_t), x.const_data_ptr<scalar_t>(), xs,
           partial.mutable_data_ptr<acc_t>(), num_segments, channels, spatial, split_length, out.numel(), shape.tile,
           tiles, splits == 1 ? mean_scale : acc_t(1));
    if (splits > 1) sum_splits(partial, out, splits, mean_scale);
  });
  return out;
}

at::Tensor pool_backward(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments) {
  const int64_t videos = grad_pooled.size(0);
  const int64_t channels = grad_pooled.size(1);
  const int64_t spatial = spatial_size(x);
  auto grad_x = empty_output(x, x.scalar_type());
  const auto gs = plane_strides(grad_x);
  const int64_t work = videos * channels * spatial;
  if (work > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_pool_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
      by_index_width(work, kThreads, [&](auto index) {
        using index_t = decltype(index);
        launch(pool_backward_kernel<scalar_t, acc_t, index_t>, grid_size(work), kThreads, 0,
               grad_pooled.const_data_ptr<acc_t>(), grad_x.mutable_data_ptr<scalar_t>(), gs, index_t(videos),
               index_t(channels), index_t(spatial), static_cast<int>(num_segments), along_channels(gs), scale);
      });
    });
  }
  if (channels < x.size(1)) grad_x.narrow(1, channels, x.size(1) - channels).zero_();
  return grad_x;
}

}  // namespace dsa_ops::cuda
