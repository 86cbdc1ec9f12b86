#pragma once
// Loop helpers of the CPU kernels. Work is split into (video, block of channels) tasks. Inside a task
// a row's (channel, s) plane is cut into lines: runs of elements adjacent in memory, along s for
// inputs whose spatial stride is 1 (contiguous) and along the channels otherwise (channels-last).
// For each line the kernels step through the U rows of the video while the line's rows are in L1,
// converting to the accumulation type into small stack buffers the compiler vectorises over.
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>

#include "../layout.h"
#include "convert.h"

namespace dsa_ops::cpu {

// Longest line; the accumulation buffers of a line live on the stack.
constexpr int64_t kLineLength = 256;

inline bool lines_along_channels(const PlaneStrides& p) { return p.spatial != 1; }

inline int64_t line_stride(const PlaneStrides& p, bool along_channels) {
  return along_channels ? p.channel : p.spatial;
}

inline int64_t offset(const PlaneStrides& p, int64_t row, int64_t channel, int64_t s) {
  return row * p.row + channel * p.channel + s * p.spatial;
}

// `length` elements starting at (channel, s), along the channels or along s.
struct Line {
  int64_t channel;
  int64_t s;
  int64_t length;
};

// f(line) over the plane positions of channels [c0, c1), in memory order.
template <typename F>
inline void for_each_line(int64_t c0, int64_t c1, int64_t spatial, bool along_channels, const F& f) {
  if (along_channels) {
    for (int64_t s = 0; s < spatial; ++s) f(Line{c0, s, c1 - c0});
  } else {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t s = 0; s < spatial; s += kLineLength) f(Line{c, s, std::min(kLineLength, spatial - s)});
  }
}

// f(video, c0, c1) over all videos and channel blocks, in parallel. Each output element is owned by
// one task and tasks do not depend on the thread count, so results do not either.
template <typename F>
inline void parallel_over_channel_blocks(int64_t videos, int64_t channels, bool along_channels, const F& f) {
  const int64_t block = along_channels ? kLineLength : 16;
  const int64_t blocks = (channels + block - 1) / block;
  at::parallel_for(0, videos * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t video = task / blocks;
      const int64_t c0 = (task % blocks) * block;
      f(video, c0, std::min(c0 + block, channels));
    }
  });
}

// f(row, line) over every row and the plane positions of channels [c0, c1), in parallel over rows;
// lines along s are whole channels here (no accumulation buffer bounds them).
template <typename F>
inline void parallel_over_rows(int64_t rows, int64_t c0, int64_t c1, int64_t spatial, bool along_channels,
                               const F& f) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      if (along_channels) {
        for (int64_t s = 0; s < spatial; ++s) f(row, Line{c0, s, c1 - c0});
      } else {
        for (int64_t c = c0; c < c1; ++c) f(row, Line{c, 0, spatial});
      }
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

// f(std::integral_constant<int, count>{}, k) over the taps [begin, end) in groups of up to four, each
// group `count` taps from tap k: a kernel can keep a group's taps in registers over one pass.
template <typename F>
inline void for_tap_groups(int begin, int end, const F& f) {
  for (int k = begin; k < end; k += 4) {
    switch (std::min(4, end - k)) {
      case 1:
        f(std::integral_constant<int, 1>{}, k);
        break;
      case 2:
        f(std::integral_constant<int, 2>{}, k);
        break;
      case 3:
        f(std::integral_constant<int, 3>{}, k);
        break;
      default:
        f(std::integral_constant<int, 4>{}, k);
    }
  }
}

// acc[i] += src[i * stride], converted to acc_t; n <= kLineLength.
template <typename acc_t, typename scalar_t>
inline void add_line(acc_t* acc, const scalar_t* src, int64_t stride, int64_t n) {
  if constexpr (!std::is_same_v<acc_t, scalar_t>) {
    if (stride == 1) {
      acc_t values[kLineLength];
      widen(values, src, n);
      for (int64_t i = 0; i < n; ++i) acc[i] += values[i];
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[i * stride]);
}

template <typename acc_t, typename scalar_t>
inline void load_line(acc_t* dst, const scalar_t* src, int64_t stride, int64_t n) {
  if (stride == 1) {
    widen(dst, src, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<acc_t>(src[i * stride]);
  }
}

template <typename scalar_t, typename acc_t>
inline void store_line(scalar_t* dst, int64_t stride, const acc_t* src, int64_t n) {
  if (stride == 1) {
    narrow(dst, src, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * stride] = static_cast<scalar_t>(src[i]);
  }
}

// Partial sums of a reduction along a line: lane j adds the positions i with i % kLanes == j, so that
// the compiler can keep the lanes in vector registers while the order stays fixed (deterministic).
constexpr int kLanes = 8;

// lanes[j] += sum over i < n, i % kLanes == j, of term(i); the line's sums are kept in registers and
// added to lanes once.
template <typename acc_t, typename Term>
inline void add_lane_sums(acc_t* lanes, int64_t n, const Term& term) {
  acc_t line[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) line[j] += term(i + j);
  }
  for (int j = 0; i + j < n; ++j) line[j] += term(i + j);
  for (int j = 0; j < kLanes; ++j) lanes[j] += line[j];
}

// The sum of v[0], ..., v[n - 1] (n >= 1), added pairwise in a fixed order (v[i] += v[i + half] over
// halving widths: vectorisable, deterministic); overwrites v.
template <typename acc_t>
inline acc_t fold_sum(acc_t* v, int64_t n) {
  while (n > 1) {
    const int64_t half = n / 2;
    const int64_t odd = n - 2 * half;
    for (int64_t i = 0; i < half; ++i) v[odd + i] += v[odd + half + i];
    n = odd + half;
  }
  return v[0];
}

// The sum of the n values of a unit-stride plane, in add_lane_sums' lanes folded by fold_sum: pooling's
// order, which the eval forward shares (the two paths pool to the same bits). Values stored in a narrower
// type are widened kLineLength at a time into a buffer first.
template <typename acc_t, typename scalar_t>
inline acc_t plane_sum(const scalar_t* plane, int64_t n) {
  acc_t lanes[kLanes] = {};
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    add_lane_sums(lanes, n, [&](int64_t i) { return plane[i]; });
  } else {
    acc_t values[kLineLength];
    for (int64_t s = 0; s < n; s += kLineLength) {
      const int64_t length = std::min(kLineLength, n - s);
      widen(values, plane + s, length);
      add_lane_sums(lanes, length, [&](int64_t i) { return values[i]; });
    }
  }
  return fold_sum(lanes, kLanes);
}

// (N, C', K) -> (N, K, C'): per-channel weights contiguous along the channels, for lines along them.
inline at::Tensor weights_by_tap(const at::Tensor& weight) { return weight.transpose(1, 2).contiguous(); }

}  // namespace dsa_ops::cpu
