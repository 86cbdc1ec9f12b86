// Aggregation along the segment axis on CUDA: the forward, grad_x (the same kernel with the taps
// reversed and the pooled gradient folded in), and the in-place forward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "aggregate.cuh"
#include "kernels.h"

namespace dsa_ops::cuda {

namespace {

// Memory plan: reads x once from DRAM, writes y once (aggregate_positions over every position). One
// pass, the passthrough copy included.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void aggregate_kernel(const scalar_t* __restrict__ x, PlaneStrides xs, scalar_t* __restrict__ y,
                                 PlaneStrides ys, const acc_t* __restrict__ weight,
                                 const acc_t* __restrict__ grad_pooled, acc_t pooled_scale, index_t videos,
                                 index_t channels, index_t all_channels, index_t spatial, int num_segments,
                                 int kernel_size, bool identity, bool by_channel) {
  aggregate_positions(x, xs, y, ys, weight, grad_pooled, pooled_scale, videos, channels, all_channels, spatial,
                      num_segments, kernel_size, identity, by_channel);
}

// In place (aggregate_positions_inplace), each thread's column staged in its slice of shared memory.
// Memory plan: reads the C' channels of x once, writes them once. One pass.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void aggregate_inplace_kernel(scalar_t* __restrict__ x, PlaneStrides xs, const acc_t* __restrict__ weight,
                                         index_t videos, index_t channels, index_t spatial, int num_segments,
                                         int kernel_size, bool identity, bool by_channel) {
  aggregate_positions_inplace(x, xs, weight, dynamic_shared<acc_t>() + threadIdx.x, videos, channels, spatial,
                              num_segments, kernel_size, identity, by_channel);
}

// Threads per block of aggregate_inplace_kernel: the most (a power of two, 32 to kThreads) whose
// columns of `column_bytes` fit the default 48 KiB of shared memory; 0 when not even a warp's do.
int column_threads(int64_t column_bytes) {
  for (int threads = kThreads; threads >= 32; threads /= 2) {
    if (threads * column_bytes <= kDefaultSharedBytes) return threads;
  }
  return 0;
}

}  // namespace

at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                     const std::optional<at::Tensor>& grad_pooled) {
  const int64_t videos = weight.size(0);
  const int64_t channels = weight.size(1);
  const int64_t spatial = spatial_size(x);
  auto y = empty_output(x, x.scalar_type());
  const auto xs = plane_strides(x);
  const auto ys = plane_strides(y);
  const int64_t work = videos * x.size(1) * spatial;
  if (work > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_aggregate", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const acc_t* pooled = grad_pooled ? grad_pooled->const_data_ptr<acc_t>() : nullptr;
      by_index_width(work, kThreads, [&](auto index) {
        using index_t = decltype(index);
        launch(aggregate_kernel<scalar_t, acc_t, index_t>, grid_size(work), kThreads, 0, x.const_data_ptr<scalar_t>(),
               xs, y.mutable_data_ptr<scalar_t>(), ys, weight.const_data_ptr<acc_t>(), pooled,
               acc_t(1) / static_cast<acc_t>(spatial), index_t(videos), index_t(channels), index_t(x.size(1)),
               index_t(spatial), static_cast<int>(num_segments), static_cast<int>(weight.size(2)), identity,
               along_channels(xs));
      });
    });
  }
  return y;
}

void aggregate_inplace(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
  const int64_t videos = weight.size(0);
  const int64_t channels = weight.size(1);
  const int64_t spatial = spatial_size(x);
  const int64_t work = videos * channels * spatial;
  if (work == 0) return;
  const auto xs = plane_strides(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_aggregate_inplace", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t column_bytes = num_segments * int64_t(sizeof(acc_t));
    const int threads = column_threads(column_bytes);
    if (threads == 0) {
      TORCH_WARN_ONCE("dsa_ops: the in-place CUDA aggregation stages a video's U segments in shared memory and U=",
                      num_segments, " does not fit; it runs out of place and copies the result back");
      const auto y = aggregate(x, weight, num_segments, identity, std::nullopt);
      x.narrow(1, 0, channels).copy_(y.narrow(1, 0, channels));
      return;
    }
    by_index_width(work, threads, [&](auto index) {
      using index_t = decltype(index);
      launch(aggregate_inplace_kernel<scalar_t, acc_t, index_t>, grid_size(work, threads), threads,
             threads * column_bytes, x.mutable_data_ptr<scalar_t>(), xs, weight.const_data_ptr<acc_t>(),
             index_t(videos), index_t(channels), index_t(spatial), static_cast<int>(num_segments),
             static_cast<int>(weight.size(2)), identity, along_channels(xs));
    });
  });
}

}  // namespace dsa_ops::cuda
