#pragma once
// Loop helpers of the CPU kernels: work is split into (video, block of channels) tasks, and inside a
// task the (channel, s) plane of a row is walked in memory order (s fastest for contiguous inputs,
// channel fastest for channels-last), so each task streams through its rows once.
#include <ATen/Parallel.h>

#include <algorithm>

#include "../layout.h"

namespace dsa_ops::cpu {

constexpr int64_t kChannelBlock = 16;

inline int64_t offset(const PlaneStrides& p, int64_t row, int64_t channel, int64_t s) {
  return row * p.row + channel * p.channel + s * p.spatial;
}

inline bool channel_minor(const PlaneStrides& p) { return p.channel == 1 && p.spatial != 1; }

// f(channel, s) for channels [c0, c1) and s in [0, S), in memory order.
template <typename F>
inline void for_each_in_plane(int64_t c0, int64_t c1, int64_t spatial, bool by_channel_minor, const F& f) {
  if (by_channel_minor) {
    for (int64_t s = 0; s < spatial; ++s)
      for (int64_t c = c0; c < c1; ++c) f(c, s);
  } else {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t s = 0; s < spatial; ++s) f(c, s);
  }
}

// f(video, c0, c1) over all videos and channel blocks, in parallel. Each output element is owned by
// one task, so results do not depend on the thread count.
template <typename F>
inline void parallel_over_channel_blocks(int64_t videos, int64_t channels, const F& f) {
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, videos * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t video = task / blocks;
      const int64_t c0 = (task % blocks) * kChannelBlock;
      f(video, c0, std::min(c0 + kChannelBlock, channels));
    }
  });
}

// The range of k for which segment u + k - P lies inside [0, U).
struct TapRange {
  int64_t begin;
  int64_t end;
};

inline TapRange valid_taps(int64_t u, int64_t num_segments, int64_t kernel_size) {
  const int64_t pad = (kernel_size - 1) / 2;
  return {std::max<int64_t>(0, pad - u), std::min<int64_t>(kernel_size, num_segments + pad - u)};
}

}  // namespace dsa_ops::cpu
