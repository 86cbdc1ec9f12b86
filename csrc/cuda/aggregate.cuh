#pragma once
// The aggregation's grid-stride loops, out of place and in place, shared by the aggregation kernels
// (aggregate.cu) and the kernels that run the generator in their prologue first (fused_forward.cu), whose
// weights are in shared memory.
#include "plane.cuh"

namespace dsa_ops::cuda {

// y[u] = sum_k weight[k] * x[u + k - P] (+ x[u] when identity) (+ grad_pooled[u] / S when given) on
// the first C' channels, y[u] = x[u] on the others. One thread per (video, channel, s) position of all
// C channels, the grid striding over them, walks the U rows of its video; the K taps of a row were
// loaded by the same thread for the previous rows and come from L1. weight (N, C', K) and grad_pooled
// (N, C', U) may be in global or shared memory.
template <typename scalar_t, typename acc_t, typename index_t>
__device__ __forceinline__ void aggregate_positions(const scalar_t* __restrict__ x, PlaneStrides xs,
                                                    scalar_t* __restrict__ y, PlaneStrides ys, const acc_t* weight,
                                                    const acc_t* grad_pooled, acc_t pooled_scale, index_t videos,
                                                    index_t channels, index_t all_channels, index_t spatial,
                                                    int num_segments, int kernel_size, bool identity,
                                                    bool by_channel) {
  const index_t total = videos * all_channels * spatial;
  for (index_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    index_t video, channel, s;
    split_position(i, by_channel, all_channels, spatial, video, channel, s);
    const int64_t x_base = plane_offset(xs, int64_t(video) * num_segments, channel, s);
    const int64_t y_base = plane_offset(ys, int64_t(video) * num_segments, channel, s);
    if (channel >= channels) {
      copy_column(x + x_base, xs.row, y + y_base, ys.row, num_segments);
      continue;
    }
    const int64_t pair = int64_t(video) * channels + channel;
    const acc_t* w = weight + pair * kernel_size;
    const auto x_at = [&](int v) { return static_cast<acc_t>(x[x_base + int64_t(v) * xs.row]); };
    for (int u = 0; u < num_segments; ++u) {
      acc_t acc = tap_sum(w, u, num_segments, kernel_size, x_at);
      if (identity) acc += x_at(u);
      if (grad_pooled != nullptr) acc += grad_pooled[pair * num_segments + u] * pooled_scale;
      y[y_base + int64_t(u) * ys.row] = static_cast<scalar_t>(acc);
    }
  }
}

// In place: x's first C' channels replaced by aggregate_positions' sum (without a pooled term). One
// thread per (video, channel, s) column of the C' channels, the grid striding over them, stages the
// column's U values in its own slice of shared memory, column[v * blockDim.x] holding segment v (a warp's
// accesses hit 32 banks), then writes the U outputs computed from there: every read of a column precedes
// its writes, and no other thread touches it.
template <typename scalar_t, typename acc_t, typename index_t>
__device__ __forceinline__ void aggregate_positions_inplace(scalar_t* __restrict__ x, PlaneStrides xs,
                                                            const acc_t* weight, acc_t* column, index_t videos,
                                                            index_t channels, index_t spatial, int num_segments,
                                                            int kernel_size, bool identity, bool by_channel) {
  const auto staged = [&](int v) { return column[v * blockDim.x]; };
  const index_t total = videos * channels * spatial;
  for (index_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    index_t video, channel, s;
    split_position(i, by_channel, channels, spatial, video, channel, s);
    const acc_t* w = weight + (int64_t(video) * channels + channel) * kernel_size;
    const int64_t base = plane_offset(xs, int64_t(video) * num_segments, channel, s);
    for (int v = 0; v < num_segments; ++v) column[v * blockDim.x] = static_cast<acc_t>(x[base + int64_t(v) * xs.row]);
    for (int u = 0; u < num_segments; ++u) {
      acc_t acc = tap_sum(w, u, num_segments, kernel_size, staged);
      if (identity) acc += staged(u);
      x[base + int64_t(u) * xs.row] = static_cast<scalar_t>(acc);
    }
  }
}

}  // namespace dsa_ops::cuda
