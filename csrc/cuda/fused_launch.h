#pragma once
// When and how the fused kernels run (fused_forward.cu, fused_backward.cu): each of their blocks repeats
// the generator's work over all (R = N*C') rows in its prologue, then aggregates.
#include "../launch_mode.h"
#include "plane.cuh"

namespace dsa_ops::cuda {

// Rows up to which (DSA_OPS_FUSED_GENERATOR=auto) the generator runs in every aggregation block rather
// than in a launch of its own: each block repeats O(R * aU * (U + K)) flops. A first guess (the paper's
// shapes at split 1/8 have R = 64 to 384), to be tuned on a GPU.
constexpr int64_t kFusedRowsMax = 1024;

// Blocks per multiprocessor of a fused kernel: enough resident threads to keep the memory system busy,
// few enough that the generator is not repeated more than needed.
constexpr int64_t kFusedBlocksPerSM = 4;

// Whether a fused kernel takes a call over `work` positions and `rows` generator rows whose block needs
// `shared_bytes`: DSA_OPS_FUSED_GENERATOR (launch_mode.h) allows it, there is work, the shared memory
// fits the default 48 KiB, and (auto) the rows are few.
inline bool fused_path(int64_t work, int64_t rows, size_t shared_bytes) {
  const auto mode = launch_mode("DSA_OPS_FUSED_GENERATOR");
  if (mode == LaunchMode::kNever || work == 0 || shared_bytes > static_cast<size_t>(kDefaultSharedBytes)) return false;
  return mode == LaunchMode::kAlways || rows <= kFusedRowsMax;
}

// A fused kernel's grid over `work` positions.
inline int fused_blocks(int64_t work) {
  return static_cast<int>(std::min<int64_t>(grid_size(work), kFusedBlocksPerSM * multiprocessor_count()));
}

}  // namespace dsa_ops::cuda
