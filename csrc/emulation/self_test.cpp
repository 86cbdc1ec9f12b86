// Kernels that exercise the emulation itself (tests/test_cuda_emulation.py): one valid (a block sum
// through shuffles, shared memory and barriers) and one for each misuse simt.h rejects.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "simt.h"

namespace {

// out[0] = sum of 0..blockDim.x-1: each warp sums its lanes by shuffles, warp 0 adds the warp totals.
__global__ void block_sum_kernel(float* out) {
  float* partial = simt::dynamic_shared<float>();
  float v = static_cast<float>(threadIdx.x);
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) total += partial[w];
    out[blockIdx.x] = total;
  }
}

__global__ void early_return_kernel() {
  if (threadIdx.x < 16) return;
  __syncthreads();
}

__global__ void partial_barrier_kernel() {
  if (threadIdx.x < 16) __syncthreads();
}

__global__ void shuffle_kernel(float* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1); }

// Thread 0 waits for its warp in a shuffle, the others for the block at a barrier: neither completes.
__global__ void split_barriers_kernel() {
  if (threadIdx.x == 0) {
    __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  } else {
    __syncthreads();
  }
}

// A barrier missing between the writes and the reads: out[t] = t - 1 for t >= 1 only where thread t - 1
// has run first (ascending order); NaN, the unwritten shared memory, where it has not.
__global__ void missing_barrier_kernel(float* out) {
  float* values = simt::dynamic_shared<float>();
  values[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (threadIdx.x > 0) out[threadIdx.x] = values[threadIdx.x - 1];
}

__global__ void unwritten_shared_kernel(float* out) { out[threadIdx.x] = simt::dynamic_shared<float>()[threadIdx.x]; }

at::Tensor run_case(const std::string& name) {
  auto out = at::zeros({64}, at::kFloat);
  float* data = out.mutable_data_ptr<float>();
  if (name == "block_sum") {
    simt::launch(block_sum_kernel, 2, 64, 2 * sizeof(float), data);
  } else if (name == "early_return") {
    simt::launch(early_return_kernel, 1, 32, 0);
  } else if (name == "partial_barrier") {
    simt::launch(partial_barrier_kernel, 1, 32, 0);
  } else if (name == "partial_warp_shuffle") {
    simt::launch(shuffle_kernel, 1, 48, 0, data);
  } else if (name == "split_barriers") {
    simt::launch(split_barriers_kernel, 1, 64, 0);
  } else if (name == "missing_barrier") {
    simt::launch(missing_barrier_kernel, 1, 64, 64 * sizeof(float), data);
  } else if (name == "unwritten_shared") {
    simt::launch(unwritten_shared_kernel, 1, 64, 64 * sizeof(float), data);
  } else if (name == "empty_grid") {
    simt::launch(shuffle_kernel, 0, 32, 0, data);
  } else if (name == "oversized_block") {
    simt::launch(shuffle_kernel, 1, 2048, 0, data);
  } else if (name == "oversized_shared") {
    simt::launch(unwritten_shared_kernel, 1, 64, 64 * 1024, data);
  } else {
    TORCH_CHECK_VALUE(false, "unknown case ", name);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dsa_ops_emulated_cuda, m) { m.def("simt_self_test(str name) -> Tensor", &run_case); }
