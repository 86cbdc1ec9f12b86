#pragma once
// Device-side helpers of the CUDA kernels: positions of the processed (video, channel, s) plane, plane
// offsets, launch sizes, and a deterministic block reduction.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <limits>
#include <utility>

#ifdef DSA_OPS_CUDA_EMULATION
#include "../emulation/index_width.h"
#include "../emulation/simt.h"
#else
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#endif

#include "../layout.h"

namespace dsa_ops::cuda {

#ifdef DSA_OPS_CUDA_EMULATION
using simt::dynamic_shared;
using simt::launch;
using simt::max;
using simt::min;
using simt::multiprocessor_count;
#else
// kernel<<<grid, block, shared_bytes>>>(args...) on the current stream, and the launch's error check.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args) {
  kernel<<<grid, block, shared_bytes, at::cuda::getCurrentCUDAStream()>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

inline int64_t multiprocessor_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// The block's dynamic shared memory (the launch's shared_bytes), aligned for any type the kernels keep
// there (a char array alone promises one byte).
template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char dynamic_shared_bytes[];
  return reinterpret_cast<T*>(dynamic_shared_bytes);
}
#endif

constexpr int kThreads = 256;

// Plane positions are enumerated with the input's unit-stride axis fastest, so consecutive threads
// touch consecutive addresses: s fastest for contiguous inputs, the channel for channels-last ones.
inline bool along_channels(const PlaneStrides& p) { return p.spatial != 1; }

template <typename index_t>
__device__ __forceinline__ void split_position(index_t i, bool by_channel, index_t channels, index_t spatial,
                                               index_t& video, index_t& channel, index_t& s) {
  if (by_channel) {
    channel = i % channels;
    i /= channels;
    s = i % spatial;
    video = i / spatial;
  } else {
    s = i % spatial;
    i /= spatial;
    channel = i % channels;
    video = i / channels;
  }
}

__host__ __device__ __forceinline__ int64_t plane_offset(const PlaneStrides& p, int64_t row, int64_t channel,
                                                         int64_t s) {
  return row * p.row + channel * p.channel + s * p.spatial;
}

// Blocks of `threads` for a grid-stride loop over `work` items: enough to fill the device (as many
// threads as 32 blocks of kThreads per multiprocessor), never more than needed.
inline int grid_size(int64_t work, int threads = kThreads) {
  const int64_t wanted = (work + threads - 1) / threads;
  const int64_t cap = multiprocessor_count() * 32 * kThreads / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

// Whether a grid-stride loop over `work` items can index with int32 (the index plus one stride fits).
inline bool fits_int32(int64_t work, int threads = kThreads) {
#ifdef DSA_OPS_CUDA_EMULATION
  if (emulation::wide_indices()) return false;
#endif
  return work + int64_t(grid_size(work, threads)) * threads < std::numeric_limits<int32_t>::max();
}

// Calls launch_indexed(index) with an int32_t index where a grid-stride loop over `work` items in blocks
// of `threads` can index with int32 (fits_int32), with an int64_t elsewhere: the launched kernel's
// index_t is decltype(index).
template <typename LaunchIndexed>
void by_index_width(int64_t work, int threads, const LaunchIndexed& launch_indexed) {
  if (fits_int32(work, threads)) {
    launch_indexed(int32_t{});
  } else {
    launch_indexed(int64_t{});
  }
}

// The shared memory a block may use without opting in to more.
constexpr int64_t kDefaultSharedBytes = 48 * 1024;

// y[u * y_row] = x[u * x_row] for the U rows of one (video, channel, s) column: a passthrough channel.
template <typename scalar_t>
__device__ __forceinline__ void copy_column(const scalar_t* x, int64_t x_row, scalar_t* y, int64_t y_row,
                                            int num_segments) {
  for (int u = 0; u < num_segments; ++u) y[u * y_row] = x[u * x_row];
}

// sum_k w[k] * value(u + k - P) over the taps whose segment u + k - P lies in [0, U).
template <typename acc_t, typename Value>
__device__ __forceinline__ acc_t tap_sum(const acc_t* w, int u, int num_segments, int kernel_size, const Value& value) {
  const int pad = (kernel_size - 1) / 2;
  const int k_end = min(kernel_size, num_segments + pad - u);
  acc_t acc = 0;
  for (int k = max(0, pad - u); k < k_end; ++k) acc += w[k] * value(u + k - pad);
  return acc;
}

// Threads of a reduction block form (lanes x tile) with the tile index fastest: tile = 32 channels for
// channels-last inputs (a warp reads 32 adjacent channels), 1 channel for contiguous ones (a warp reads
// 32 adjacent s). Lanes split the s axis.
struct ReductionShape {
  int tile;
  int lanes;
};

inline ReductionShape reduction_shape(const PlaneStrides& p) {
  const int tile = along_channels(p) ? 32 : 1;
  return {tile, kThreads / tile};
}

// Sums values[j] (j < kCount) over the lanes of the block, in a fixed tree order: deterministic. The
// result is valid in lane 0. scratch holds kThreads * kCount values.
template <typename acc_t, int kCount>
__device__ __forceinline__ void sum_over_lanes(acc_t (&values)[kCount], acc_t* scratch, int lane, int lanes,
                                               int tile_index, int tile) {
  auto slot = [&](int l, int j) { return (l * tile + tile_index) * kCount + j; };
#pragma unroll
  for (int j = 0; j < kCount; ++j) scratch[slot(lane, j)] = values[j];
  __syncthreads();
  for (int stride = lanes / 2; stride > 0; stride /= 2) {
    if (lane < stride) {
#pragma unroll
      for (int j = 0; j < kCount; ++j) scratch[slot(lane, j)] += scratch[slot(lane + stride, j)];
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < kCount; ++j) values[j] = scratch[slot(0, j)];
  __syncthreads();  // scratch may be reused right after
}

// Splits of S so that a grid of `blocks` reductions over S fills the device twice over, each split at
// least 4 s per lane. Depends only on the shape and the device, so results are bitwise reproducible on a
// device.
inline int64_t split_count(int64_t blocks, int64_t spatial, int lanes) {
  const int64_t sms = multiprocessor_count();
  const int64_t wanted = (2 * sms + blocks - 1) / blocks;
  const int64_t most = std::max<int64_t>(1, spatial / (4 * lanes));
  return std::max<int64_t>(1, std::min<int64_t>({wanted, most, 65535}));
}

// Internal linkage: each .cu file that uses them compiles and registers its own copy of the kernel.
namespace {

// out[i] = scale * (sum over splits of partial[split][i]), the splits added in order: deterministic.
template <typename acc_t>
__global__ void sum_splits_kernel(const acc_t* __restrict__ partial, acc_t* __restrict__ out, int64_t count,
                                  int64_t splits, acc_t scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(blockDim.x) * gridDim.x) {
    acc_t total = 0;
    for (int64_t split = 0; split < splits; ++split) total += partial[split * count + i];
    out[i] = total * scale;
  }
}

// Launches sum_splits_kernel on the current stream: out (contiguous) from partial (splits, *out.shape).
template <typename acc_t>
void sum_splits(const at::Tensor& partial, const at::Tensor& out, int64_t splits, acc_t scale) {
  const int64_t count = out.numel();
  launch(sum_splits_kernel<acc_t>, grid_size(count), kThreads, 0, partial.const_data_ptr<acc_t>(),
         out.mutable_data_ptr<acc_t>(), count, splits, scale);
}

}  // namespace

}  // namespace dsa_ops::cuda
