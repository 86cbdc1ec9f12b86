#pragma once
// The CUDA execution model for a host compiler, so that the kernels of csrc/cuda can run on the CPU in
// tests (tests/cuda_emulation.py builds them with DSA_OPS_CUDA_EMULATION defined). A launch runs its
// blocks one after another; a block's threads are cooperative fibers on the calling thread, switched at
// __syncthreads and warp shuffles only, so the interleaving is deterministic. What a GPU would reject or
// leave undefined is an error here: a launch beyond the hardware's limits (an empty grid, over 1024
// threads, over the default 48 KiB of dynamic shared memory), a __syncthreads or shuffle that some thread
// of the block (warp) skips or returned before, threads waiting at different barriers. Dynamic shared
// memory starts filled with 0xff bytes (NaN as float or double), so reading it before writing shows.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

namespace simt {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The running thread's position, as CUDA's built-in variables.
const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();

// The running block's dynamic shared memory.
unsigned char* dynamic_shared_bytes();

void sync_block();

// Exchanges `bytes` bytes with lane (this lane ^ lane_mask) of the warp: every lane of the warp must call
// it with the same mask.
void exchange_in_warp(unsigned mask, const void* value, void* result, std::size_t bytes, int lane_mask, int width);

// The multiprocessor count the launch-size heuristics see (default 4): tests vary it to reach the
// split and one-launch paths on small tensors.
int64_t multiprocessor_count();
void set_multiprocessor_count(int64_t count);

// The order in which the scheduler resumes a block's threads: from thread 0 up (the default) or from the
// last down. A barrier missing between one thread's write and another's read shows in one of the two
// (the reader runs first and sees the old value).
enum class ThreadOrder { kAscending, kDescending };
void set_thread_order(ThreadOrder order);

// Launches run since the library was loaded: tests tell which path an op took by how many it ran.
int64_t launch_count();

// Runs body once per thread of every block, in the execution model above; throws on the errors above.
void run_grid(dim3 grid, dim3 block, std::size_t shared_bytes, const std::function<void()>& body);

// kernel<<<grid, block, shared_bytes>>>(args...): the arguments are converted to the kernel's parameter
// types once, as a launch does, and every thread receives them.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, Args&&... args) {
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  run_grid(grid, block, shared_bytes, [&] { std::apply(kernel, params); });
}

template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(dynamic_shared_bytes());
}

template <typename A, typename B>
std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}

template <typename A, typename B>
std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

}  // namespace simt

using simt::dim3;

#define threadIdx (::simt::thread_index())
#define blockIdx (::simt::block_index())
#define blockDim (::simt::block_dim())
#define gridDim (::simt::grid_dim())

inline void __syncthreads() { simt::sync_block(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move values of up to 8 bytes");
  T result;
  simt::exchange_in_warp(mask, &value, &result, sizeof(T), lane_mask, width);
  return result;
}
