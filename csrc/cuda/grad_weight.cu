// The aggregation weights' gradient on CUDA: sum over U and S of grad_y[u] * x[u + k - P].
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "kernels.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

namespace {

constexpr int kTapGroup = 4;  // taps accumulated together in registers

// Memory plan: reads the C' channels of grad_y and x once from DRAM (a tap group's second and later
// taps hit L1/L2), writes (splits, N, C', K) partial sums. Block = (video, channel tile, split of S);
// lanes stride over the split's s and are summed in a fixed order: deterministic.
template <typename scalar_t, typename acc_t>
__global__ void grad_weight_partial_kernel(const scalar_t* __restrict__ grad_y, PlaneStrides gs,
                                           const scalar_t* __restrict__ x, PlaneStrides xs,
                                           acc_t* __restrict__ partial, int64_t videos, int64_t channels,
                                           int64_t spatial, int num_segments, int kernel_size, int tile, int tiles,
                                           int64_t split_length) {
  acc_t* scratch = dynamic_shared<acc_t>();
  const int lanes = blockDim.x / tile;
  const int tile_index = threadIdx.x % tile;
  const int lane = threadIdx.x / tile;
  const int64_t split = blockIdx.y;
  const int64_t video = blockIdx.x / tiles;
  const int64_t channel = int64_t(blockIdx.x % tiles) * tile + tile_index;
  const int64_t s_begin = split * split_length;
  const int64_t s_end = min(spatial, s_begin + split_length);
  const int pad = (kernel_size - 1) / 2;
  const int64_t first_row = video * num_segments;
  for (int k0 = 0; k0 < kernel_size; k0 += kTapGroup) {
    acc_t sums[kTapGroup] = {};
    if (channel < channels) {
      for (int64_t s = s_begin + lane; s < s_end; s += lanes) {
        const int64_t g_base = plane_offset(gs, first_row, channel, s);
        const int64_t x_base = plane_offset(xs, first_row, channel, s);
        for (int u = 0; u < num_segments; ++u) {
          const acc_t dy = static_cast<acc_t>(grad_y[g_base + int64_t(u) * gs.row]);
#pragma unroll
          for (int j = 0; j < kTapGroup; ++j) {
            const int v = u + k0 + j - pad;
            if (k0 + j < kernel_size && v >= 0 && v < num_segments) {
              sums[j] += dy * static_cast<acc_t>(x[x_base + int64_t(v) * xs.row]);
            }
          }
        }
      }
    }
    sum_over_lanes(sums, scratch, lane, lanes, tile_index, tile);
    if (lane == 0 && channel < channels) {
      acc_t* out = partial + ((split * videos + video) * channels + channel) * kernel_size;
#pragma unroll
      for (int j = 0; j < kTapGroup; ++j) {
        if (k0 + j < kernel_size) out[k0 + j] = sums[j];
      }
    }
  }
}

}  // namespace

WeightGradPartials grad_weight_partials(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments,
                                        int64_t channels, int64_t kernel_size) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  const auto options = x.options().dtype(accumulate_dtype(x.scalar_type()));
  const auto gs = plane_strides(grad_y);
  const auto xs = plane_strides(x);
  const auto shape = reduction_shape(xs);
  const int tiles = static_cast<int>((channels + shape.tile - 1) / shape.tile);
  const int64_t blocks = videos * tiles;
  const int64_t splits = blocks == 0 ? 1 : split_count(blocks, spatial, shape.lanes);
  auto partial = at::empty({splits, videos, channels, kernel_size}, options);
  if (blocks == 0) return {partial, splits};
  const int64_t split_length = (spatial + splits - 1) / splits;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_grad_weight", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
    launch(grad_weight_partial_kernel<scalar_t, acc_t>, grid, kThreads, kThreads * kTapGroup * sizeof(acc_t),
           grad_y.const_data_ptr<scalar_t>(), gs, x.const_data_ptr<scalar_t>(), xs, partial.mutable_data_ptr<acc_t>(),
           videos, channels, spatial, static_cast<int>(num_segments), static_cast<int>(kernel_size), shape.tile, tiles,
           split_length);
  });
  return {partial, splits};
}

at::Tensor grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments, int64_t channels,
                       int64_t kernel_size) {
  auto partials = grad_weight_partials(grad_y, x, num_segments, channels, kernel_size);
  if (partials.splits == 1) return partials.partial[0];
  auto out = at::empty(partials.partial.sizes().slice(1), partials.partial.options());
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "dsa_ops_cuda_grad_weight_splits", [&] {
    sum_splits(partials.partial, out, partials.splits, scalar_t(1));
  });
  return out;
}

}  // namespace dsa_ops::cuda
