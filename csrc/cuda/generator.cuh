#pragma once
// Device-side passes of the kernel generator over all (R = N*C') rows, shared by the generator's own
// kernels (generator.cu) and the kernels that run it in their prologue (fused_forward.cu). Sums over
// rows are taken per quantity by one warp: its lanes stride the rows in a fixed order and a fixed
// shuffle tree adds them, so results are deterministic without atomics, and the same in every kernel
// that calls these whatever its block size.
#include "../generator_rows.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

constexpr int kWarp = 32;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_total(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// out[q] = (sum over lanes of partial(q, lane)) / divisor for q in [0, count), a warp per quantity.
template <typename acc_t, typename Partial>
__device__ void sum_quantities(acc_t* out, int64_t count, acc_t divisor, const Partial& partial) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t q = threadIdx.x / kWarp; q < count; q += blockDim.x / kWarp) {
    const acc_t total = warp_total(partial(q, lane));
    if (lane == 0) out[q] = total / divisor;
  }
}

// The BatchNorm's batch statistics over the (count, U) rows: hidden (count, aU) receives the hidden
// units, mean and var (aU) their mean and biased variance. Called by every thread of the block; the
// results are visible to all of them on return.
template <typename acc_t>
__device__ void batch_statistics(const GeneratorView<acc_t>& g, const acc_t* rows, int64_t count, acc_t* hidden,
                                 acc_t* mean, acc_t* var) {
  const int units = g.hidden;
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    for (int j = 0; j < units; ++j) hidden[r * units + j] = hidden_unit(g, rows + r * g.segments, j);
  }
  __syncthreads();
  sum_quantities(mean, units, acc_t(count), [&](int64_t j, int lane) {
    return column_sum<acc_t>(hidden + j, units, nullptr, 0, lane, count, kWarp);
  });
  __syncthreads();
  sum_quantities(var, units, acc_t(count), [&](int64_t j, int lane) {
    return centered_square_sum(hidden + j, units, mean[j], lane, count, kWarp);
  });
  __syncthreads();
}

}  // namespace dsa_ops::cuda
