// Aggregation along the segment axis on the CPU: the forward, grad_x (the same sum with the taps
// reversed and the pooled gradient folded in) and the in-place forward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "plane_loop.h"

namespace dsa_ops::cpu {

namespace {

// out[:, C':] = in[:, C':], one read and one write, line by line in parallel over rows.
template <typename scalar_t>
void copy_passthrough(const at::Tensor& in, at::Tensor& out, int64_t channels) {
  if (channels == in.size(1)) return;
  const auto is = plane_strides(in);
  const auto os = plane_strides(out);
  const bool along_channels = lines_along_channels(is);
  const int64_t in_step = line_stride(is, along_channels);
  const int64_t out_step = line_stride(os, along_channels);
  const scalar_t* src = in.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  parallel_over_rows(in.size(0), channels, in.size(1), spatial_size(in), along_channels,
                     [&](int64_t row, const Line& line) {
                       const scalar_t* from = src + offset(is, row, line.channel, line.s);
                       scalar_t* to = dst + offset(os, row, line.channel, line.s);
                       if (in_step == 1 && out_step == 1) {
                         std::copy(from, from + line.length, to);
                       } else {
                         for (int64_t i = 0; i < line.length; ++i) to[i * out_step] = from[i * in_step];
                       }
                     });
}

// The weight of tap k at line position i: one value per tap for lines along s (a line is one channel),
// one per channel for lines along the channels (tap k's C' weights, contiguous).
template <typename acc_t>
struct TapScalars {
  const acc_t* w;  // (K)
  acc_t at(int k, int64_t) const { return w[k]; }
};

template <typename acc_t>
struct TapLines {
  const acc_t* w;  // (K, C'), at the line's first channel
  int64_t tap_stride;
  acc_t at(int k, int64_t i) const { return w[k * tap_stride + i]; }
};

// out[i] (+)= sum over kTaps taps k of weights.at(first + k, i) * rows[k * row_stride + i], the taps
// added in order to 0 or (kAccumulate) to out[i]: one pass over out with the taps in registers.
template <int kTaps, bool kAccumulate, typename acc_t, typename Weights>
inline void add_taps(acc_t* out, const acc_t* rows, int64_t row_stride, const Weights& weights, int first,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    acc_t a = kAccumulate ? out[i] : acc_t(0);
#pragma GCC unroll 4
    for (int k = 0; k < kTaps; ++k) a += weights.at(first + k, i) * rows[k * row_stride + i];
    out[i] = a;
  }
}

// out[i] = sum over taps k in [begin, end) of weights.at(k, i) * rows[(k - begin) * row_stride + i], in
// tap order, up to four taps per pass over out.
template <typename acc_t, typename Weights>
void sum_taps(acc_t* out, const acc_t* rows, int64_t row_stride, const Weights& weights, int begin, int end,
              int64_t n) {
  for_tap_groups(begin, end, [&](auto count, int k) {
    constexpr int kTaps = decltype(count)::value;
    const acc_t* r = rows + (k - begin) * row_stride;
    if (k == begin) {
      add_taps<kTaps, false>(out, r, row_stride, weights, k, n);
    } else {
      add_taps<kTaps, true>(out, r, row_stride, weights, k, n);
    }
  });
}

// out = sum_k weight[k] * x[u + k - P] (+ x when identity) (+ grad_pooled / S when given) on the first
// C' channels (grad_x is this on grad_y with the taps reversed). Where x is float32 or float64 and
// unit-stride along the lines, the sums read x's rows in place, else the U rows of a line are first read
// into a (U, line) buffer in the accumulation type. Where out is also distinct from x and unit-stride,
// each output line is summed straight into out; otherwise (out may be x itself) the U output lines are
// summed into a second (U, line) buffer and stored once all of them are done.
// Memory plan: reads the C' channels of x once and writes them once; the U rows of a line stay in L1
// while each output row sums its K taps in one pass. One pass.
template <typename scalar_t>
void aggregate_into(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                    const std::optional<at::Tensor>& grad_pooled, const at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t videos = weight.size(0);
  const int64_t channels = weight.size(1);
  const int64_t kernel_size = weight.size(2);
  const int64_t pad = (kernel_size - 1) / 2;
  const int64_t spatial = spatial_size(x);
  const auto xs = plane_strides(x);
  const auto ys = plane_strides(out);
  const bool along_channels = lines_along_channels(xs);
  const int64_t x_step = line_stride(xs, along_channels);
  const int64_t y_step = line_stride(ys, along_channels);
  const bool read_in_place = std::is_same_v<scalar_t, acc_t> && x_step == 1;
  const bool write_in_place = read_in_place && y_step == 1 && !x.is_same(out);
  const auto by_tap = weights_by_tap(weight);
  const scalar_t* src = x.const_data_ptr<scalar_t>();
  const acc_t* w = weight.const_data_ptr<acc_t>();
  const acc_t* w_by_tap = by_tap.const_data_ptr<acc_t>();
  const acc_t* pooled = grad_pooled ? grad_pooled->const_data_ptr<acc_t>() : nullptr;
  const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  parallel_over_channel_blocks(videos, channels, along_channels, [&](int64_t n, int64_t c0, int64_t c1) {
    // pooled_terms[u * kLineLength + (c - c0)] = grad_pooled[n, c, u] / S
    std::vector<acc_t> pooled_terms(pooled ? num_segments * kLineLength : 0);
    for (int64_t u = 0; pooled && u < num_segments; ++u)
      for (int64_t c = c0; c < c1; ++c)
        pooled_terms[u * kLineLength + c - c0] = pooled[(n * channels + c) * num_segments + u] * scale;
    std::vector<acc_t> staged(read_in_place ? 0 : num_segments * kLineLength);
    std::vector<acc_t> sums(write_in_place ? 0 : num_segments * kLineLength);
    for_each_line(c0, c1, spatial, along_channels, [&](const Line& line) {
      // rows[v * row_stride + i]: segment v of the line, in x or staged
      const acc_t* rows = staged.data();
      int64_t row_stride = kLineLength;
      if (read_in_place) {
        rows = reinterpret_cast<const acc_t*>(src + offset(xs, n * num_segments, line.channel, line.s));
        row_stride = xs.row;
      } else {
        for (int64_t v = 0; v < num_segments; ++v) {
          load_line(staged.data() + v * kLineLength, src + offset(xs, n * num_segments + v, line.channel, line.s),
                    x_step, line.length);
        }
      }
      for (int64_t u = 0; u < num_segments; ++u) {
        acc_t* acc = write_in_place
                         ? reinterpret_cast<acc_t*>(dst + offset(ys, n * num_segments + u, line.channel, line.s))
                         : sums.data() + u * kLineLength;
        const auto taps = valid_taps(u, num_segments, kernel_size);
        const acc_t* tap_rows = rows + (u + taps.begin - pad) * row_stride;
        const int begin = static_cast<int>(taps.begin), end = static_cast<int>(taps.end);
        if (along_channels) {
          const TapLines<acc_t> weights{w_by_tap + n * kernel_size * channels + line.channel, channels};
          sum_taps(acc, tap_rows, row_stride, weights, begin, end, line.length);
        } else {
          const TapScalars<acc_t> weights{w + (n * channels + line.channel) * kernel_size};
          sum_taps(acc, tap_rows, row_stride, weights, begin, end, line.length);
        }
        if (identity) {
          const acc_t* own = rows + u * row_stride;
          for (int64_t i = 0; i < line.length; ++i) acc[i] += own[i];
        }
        if (pooled) {
          const acc_t* terms = pooled_terms.data() + u * kLineLength + (line.channel - c0);
          if (along_channels) {
            for (int64_t i = 0; i < line.length; ++i) acc[i] += terms[i];
          } else {
            const acc_t term = terms[0];
            for (int64_t i = 0; i < line.length; ++i) acc[i] += term;
          }
        }
      }
      for (int64_t u = 0; !write_in_place && u < num_segments; ++u) {
        store_line(dst + offset(ys, n * num_segments + u, line.channel, line.s), y_step,
                   sums.data() + u * kLineLength, line.length);
      }
    });
  });
}

}  // namespace

// The C' channels by aggregate_into, the others copied (one read, one write).
at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                     const std::optional<at::Tensor>& grad_pooled) {
  auto y = empty_output(x, x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_aggregate", [&] {
    aggregate_into<scalar_t>(x, weight, num_segments, identity, grad_pooled, y);
    copy_passthrough<scalar_t>(x, y, weight.size(1));
  });
  return y;
}

void aggregate_inplace(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_aggregate_inplace", [&] {
    aggregate_into<scalar_t>(x, weight, num_segments, identity, std::nullopt, x);
  });
}

}  // namespace dsa_ops::cpu
