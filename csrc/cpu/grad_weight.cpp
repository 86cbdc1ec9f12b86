// The aggregation weights' gradient on the CPU: sum over U and S of grad_y[u] * x[u + k - P].
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "plane_loop.h"

namespace dsa_ops::cpu {

namespace {

// sums[k * kLineLength + i] += dy[i] * rows[k * row_stride + i] for kTaps taps, in one pass.
template <int kTaps, typename acc_t>
inline void add_tap_products(acc_t* sums, const acc_t* dy, const acc_t* rows, int64_t row_stride, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t d = dy[i];
#pragma GCC unroll 4
    for (int k = 0; k < kTaps; ++k) sums[k * kLineLength + i] += d * rows[k * row_stride + i];
  }
}

// The line of `count` (<= 4) rows of x `row_stride` apart, from `first`, in the accumulation type: x's
// own values where they already are, else widened into `buffer` (4 lines). x's lines are unit-stride:
// readable_input leaves a stride on the line's axis only where lines hold one element.
template <typename acc_t>
struct XLines {
  const acc_t* rows;
  int64_t row_stride;
};

template <typename acc_t, typename scalar_t>
inline XLines<acc_t> x_lines(const scalar_t* first, int64_t row_stride, int count, int64_t n, acc_t* buffer) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    return {first, row_stride};
  } else {
    for (int k = 0; k < count; ++k) widen(buffer + k * kLineLength, first + k * row_stride, n);
    return {buffer, kLineLength};
  }
}

}  // namespace

// Memory plan: reads the C' channels of grad_y and x once each, writes (N, C', K) sums. Each (video,
// channel) is reduced by one task in a fixed order: deterministic. Lines along s keep kLanes partial
// sums per tap; lines along the channels one per (tap, channel).
at::Tensor grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments, int64_t channels,
                       int64_t kernel_size) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t pad = (kernel_size - 1) / 2;
  const int64_t spatial = spatial_size(x);
  auto out = at::empty({videos, channels, kernel_size}, x.options().dtype(accumulate_dtype(x.scalar_type())));
  const auto gys = plane_strides(grad_y);
  const auto xs = plane_strides(x);
  const bool along_channels = lines_along_channels(xs);
  const int64_t gy_step = line_stride(gys, along_channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_grad_weight", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    acc_t* dst = out.mutable_data_ptr<acc_t>();
    const bool dy_direct = std::is_same_v<scalar_t, acc_t> && gy_step == 1;
    parallel_over_channel_blocks(videos, channels, along_channels, [&](int64_t n, int64_t c0, int64_t c1) {
      std::array<acc_t, kLineLength> dy_line;
      std::array<acc_t, 4 * kLineLength> x_buffer;
      // grad_y's line of row `row` in the accumulation type: in place where it already is, else converted
      auto dy_of = [&](int64_t row, const Line& line) -> const acc_t* {
        const scalar_t* at = dy + offset(gys, row, line.channel, line.s);
        if (dy_direct) return reinterpret_cast<const acc_t*>(at);
        load_line(dy_line.data(), at, gy_step, line.length);
        return dy_line.data();
      };
      if (along_channels) {
        std::vector<acc_t> sums(kernel_size * kLineLength, acc_t(0));
        for_each_line(c0, c1, spatial, true, [&](const Line& line) {
          for (int64_t u = 0; u < num_segments; ++u) {
            const int64_t row = n * num_segments + u;
            const acc_t* g = dy_of(row, line);
            const auto taps = valid_taps(u, num_segments, kernel_size);
            const scalar_t* rows = src + offset(xs, row + taps.begin - pad, line.channel, line.s);
            for_tap_groups(static_cast<int>(taps.begin), static_cast<int>(taps.end), [&](auto count, int k) {
              constexpr int kTaps = decltype(count)::value;
              const auto xv = x_lines(rows + (k - taps.begin) * xs.row, xs.row, kTaps, line.length, x_buffer.data());
              add_tap_products<kTaps>(sums.data() + k * kLineLength, g, xv.rows, xv.row_stride, line.length);
            });
          }
        });
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t k = 0; k < kernel_size; ++k)
            dst[(n * channels + c) * kernel_size + k] = sums[k * kLineLength + c - c0];
        return;
      }
      std::vector<acc_t> lanes(kernel_size * kLanes);  // (K, kLanes)
      for (int64_t c = c0; c < c1; ++c) {
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        for_each_line(c, c + 1, spatial, false, [&](const Line& line) {
          for (int64_t u = 0; u < num_segments; ++u) {
            const int64_t row = n * num_segments + u;
            const acc_t* g = dy_of(row, line);
            const auto taps = valid_taps(u, num_segments, kernel_size);
            for (int64_t k = taps.begin; k < taps.end; ++k) {
              const acc_t* x_line =
                  x_lines(src + offset(xs, row + k - pad, c, line.s), 0, 1, line.length, x_buffer.data()).rows;
              add_lane_sums(lanes.data() + k * kLanes, line.length, [&](int64_t i) { return g[i] * x_line[i]; });
            }
          }
        });
        for (int64_t k = 0; k < kernel_size; ++k) {
          dst[(n * channels + c) * kernel_size + k] = fold_sum(lanes.data() + k * kLanes, kLanes);
        }
      }
    });
  });
  return out;
}

}  // namespace dsa_ops::cpu
