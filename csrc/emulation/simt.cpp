// The fiber scheduler behind simt.h. A block's threads are ucontext fibers on the launching thread; the
// scheduler resumes each unfinished fiber in turn (in the set ThreadOrder), and a fiber runs until it returns or waits at a
// barrier (__syncthreads, or one of the two warp barriers around a shuffle's exchange). A round of
// resumes in which no thread arrives at a barrier, passes one or returns is a deadlock.
#include "simt.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace simt {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kMaxGridY = 65535;
constexpr unsigned kMaxGridX = 2147483647u;
constexpr std::size_t kMaxSharedBytes = 48 * 1024;
constexpr std::size_t kStackBytes = 256 * 1024;

std::atomic<int64_t> emulated_multiprocessors{4};
std::atomic<int64_t> launches{0};
std::atomic<ThreadOrder> thread_order{ThreadOrder::kAscending};

// Fiber stacks, kept for the next launch, each above a guard page so that an overflow faults.
class StackPool {
 public:
  ~StackPool() {
    for (void* mapping : mappings_) munmap(mapping, guard_ + kStackBytes);
  }
  char* stack(std::size_t i) {
    while (mappings_.size() <= i) {
      void* mapping = mmap(nullptr, guard_ + kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mapping == MAP_FAILED) throw std::runtime_error("simt: cannot map a fiber stack");
      mprotect(mapping, guard_, PROT_NONE);
      mappings_.push_back(mapping);
    }
    return static_cast<char*>(mappings_[i]) + guard_;
  }

 private:
  std::size_t guard_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<void*> mappings_;
};

struct Barrier {
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  ucontext_t context;
  bool finished = false;
};

struct Block {
  dim3 grid, dims, index;
  const std::function<void()>* body = nullptr;
  std::vector<unsigned char> shared;
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int threads = 0;
  int current = 0;
  int finished = 0;
  uint64_t progress = 0;  // arrivals at barriers, barriers passed, threads returned
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<int> warp_finished;
  std::vector<uint64_t> warp_slots;  // one shuffle value per thread
  std::string error;
};

thread_local Block* running = nullptr;
thread_local dim3 running_thread;
thread_local StackPool stacks;

std::string where(const Block& b) {
  return "block (" + std::to_string(b.index.x) + ", " + std::to_string(b.index.y) + "), thread " +
         std::to_string(b.current);
}

void yield(Block& b) { swapcontext(&b.fibers[b.current].context, &b.scheduler); }

// Records the error and leaves the fiber for good: the scheduler abandons the block and throws.
[[noreturn]] void fail(Block& b, const std::string& message) {
  if (b.error.empty()) b.error = message + " (" + where(b) + ")";
  b.fibers[b.current].finished = true;
  setcontext(&b.scheduler);
  throw std::logic_error("simt: setcontext returned");
}

void wait_at(Block& b, Barrier& barrier, int participants) {
  const uint64_t generation = barrier.generation;
  ++b.progress;
  if (++barrier.arrived == participants) {
    barrier.arrived = 0;
    ++barrier.generation;
    return;
  }
  while (barrier.generation == generation) yield(b);
}

void fiber_main() {
  Block& b = *running;
  std::string thrown;  // failed outside the handler: the fiber must not leave a catch block by a switch
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    thrown = e.what();
  }
  if (!thrown.empty()) fail(b, "kernel threw: " + thrown);
  const int warp = b.current / kWarp;
  if (b.block_barrier.arrived > 0) fail(b, "a thread returned while others wait at __syncthreads");
  if (b.warp_barriers[warp].arrived > 0) fail(b, "a thread returned while its warp waits in a shuffle");
  b.fibers[b.current].finished = true;
  ++b.finished;
  ++b.warp_finished[warp];
  ++b.progress;
}  // returns to the scheduler through uc_link

void run_block(Block& b) {
  std::fill(b.shared.begin(), b.shared.end(), static_cast<unsigned char>(0xff));
  b.finished = 0;
  b.block_barrier = Barrier{};
  std::fill(b.warp_barriers.begin(), b.warp_barriers.end(), Barrier{});
  std::fill(b.warp_finished.begin(), b.warp_finished.end(), 0);
  for (int t = 0; t < b.threads; ++t) {
    Fiber& f = b.fibers[t];
    f.finished = false;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stacks.stack(t);
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  while (b.finished < b.threads && b.error.empty()) {
    const uint64_t before = b.progress;
    const bool descending = thread_order.load() == ThreadOrder::kDescending;
    for (int i = 0; i < b.threads && b.error.empty(); ++i) {
      const int t = descending ? b.threads - 1 - i : i;
      if (b.fibers[t].finished) continue;
      b.current = t;
      running_thread = dim3(static_cast<unsigned>(t));
      swapcontext(&b.scheduler, &b.fibers[t].context);
    }
    if (b.error.empty() && b.finished < b.threads && b.progress == before) {
      b.error = "deadlock: the threads still running wait at different barriers (block (" +
                std::to_string(b.index.x) + ", " + std::to_string(b.index.y) + "))";
    }
  }
  if (!b.error.empty()) throw std::runtime_error("simt: " + b.error);
}

void check_launch(dim3 grid, dim3 block, std::size_t shared_bytes) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error("simt: invalid launch: " + what);
  };
  require(grid.x >= 1 && grid.x <= kMaxGridX, "gridDim.x = " + std::to_string(grid.x) + " outside [1, 2^31 - 1]");
  require(grid.y >= 1 && grid.y <= kMaxGridY, "gridDim.y = " + std::to_string(grid.y) + " outside [1, 65535]");
  require(grid.z == 1, "gridDim.z must be 1 here");
  require(block.x >= 1 && block.x <= kMaxThreads, "blockDim.x = " + std::to_string(block.x) + " outside [1, 1024]");
  require(block.y == 1 && block.z == 1, "blocks must be one-dimensional here");
  require(shared_bytes <= kMaxSharedBytes,
          std::to_string(shared_bytes) + " bytes of dynamic shared memory, over the default 49152");
}

}  // namespace

const dim3& thread_index() { return running_thread; }
const dim3& block_index() { return running->index; }
const dim3& block_dim() { return running->dims; }
const dim3& grid_dim() { return running->grid; }
unsigned char* dynamic_shared_bytes() { return running->shared.data(); }

void sync_block() {
  Block& b = *running;
  if (b.finished > 0) fail(b, "__syncthreads after another thread of the block returned");
  wait_at(b, b.block_barrier, b.threads);
}

void exchange_in_warp(unsigned mask, const void* value, void* result, std::size_t bytes, int lane_mask, int width) {
  Block& b = *running;
  if (mask != 0xffffffffu || width != kWarp) fail(b, "only full-warp shuffles (mask 0xffffffff, width 32) are emulated");
  if (b.threads % kWarp != 0) fail(b, "a full-warp shuffle in a block whose last warp is partial");
  if (lane_mask < 0 || lane_mask >= kWarp) fail(b, "shuffle lane mask outside [0, 32)");
  const int warp = b.current / kWarp;
  if (b.warp_finished[warp] > 0) fail(b, "a shuffle after a lane of the warp returned");
  std::memcpy(&b.warp_slots[b.current], value, bytes);
  wait_at(b, b.warp_barriers[warp], kWarp);
  std::memcpy(result, &b.warp_slots[warp * kWarp + ((b.current % kWarp) ^ lane_mask)], bytes);
  wait_at(b, b.warp_barriers[warp], kWarp);  // every lane has read before any writes its next value
}

int64_t multiprocessor_count() { return emulated_multiprocessors.load(); }

int64_t launch_count() { return launches.load(); }

void set_multiprocessor_count(int64_t count) {
  if (count < 1) throw std::invalid_argument("simt: the multiprocessor count must be at least 1");
  emulated_multiprocessors.store(count);
}

void set_thread_order(ThreadOrder order) { thread_order.store(order); }

void run_grid(dim3 grid, dim3 block, std::size_t shared_bytes, const std::function<void()>& body) {
  check_launch(grid, block, shared_bytes);
  ++launches;
  if (running != nullptr) throw std::runtime_error("simt: a launch from inside a kernel");
  Block b;
  b.grid = grid;
  b.dims = block;
  b.body = &body;
  b.threads = static_cast<int>(block.x);
  b.shared.resize(shared_bytes);
  b.fibers.resize(b.threads);
  const int warps = (b.threads + kWarp - 1) / kWarp;
  b.warp_barriers.resize(warps);
  b.warp_finished.resize(warps);
  b.warp_slots.resize(b.threads);
  struct Running {
    explicit Running(Block* block) { running = block; }
    ~Running() { running = nullptr; }
  } in_launch(&b);
  for (unsigned y = 0; y < grid.y; ++y) {
    for (unsigned x = 0; x < grid.x; ++x) {
      b.index = dim3(x, y);
      run_block(b);
    }
  }
}

}  // namespace simt
