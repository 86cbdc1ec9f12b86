// Aggregation along the segment axis on the CPU, and its two backward kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <array>
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

// out = sum_k weight[k] * x[u + k - P] (+ x when identity) (+ grad_pooled / S when given) on the first
// C' channels (grad_x is this on grad_y with the taps reversed). out may be x itself: for each line
// position the U rows of a video are all read into a (U, line) buffer before any of them is written.
// Memory plan: reads the C' channels of x once and writes them once; the U rows of a line stay in L1
// while their K taps are summed. One pass.
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
    std::vector<acc_t> rows_acc(num_segments * kLineLength);
    for_each_line(c0, c1, spatial, along_channels, [&](const Line& line) {
      for (int64_t u = 0; u < num_segments; ++u) {
        acc_t* acc = rows_acc.data() + u * kLineLength;
        const int64_t row = n * num_segments + u;
        const auto taps = valid_taps(u, num_segments, kernel_size);
        std::fill_n(acc, line.length, acc_t(0));
        for (int64_t k = taps.begin; k < taps.end; ++k) {
          const scalar_t* tap = src + offset(xs, row + k - pad, line.channel, line.s);
          if (along_channels) {
            add_scaled(acc, w_by_tap + (n * kernel_size + k) * channels + line.channel, tap, x_step, line.length);
          } else {
            add_scaled(acc, w[(n * channels + line.channel) * kernel_size + k], tap, x_step, line.length);
          }
        }
        if (identity) add_scaled(acc, acc_t(1), src + offset(xs, row, line.channel, line.s), x_step, line.length);
        if (pooled) {
          const acc_t* terms = pooled_terms.data() + u * kLineLength + (line.channel - c0);
          for (int64_t i = 0; i < line.length; ++i) acc[i] += along_channels ? terms[i] : terms[0];
        }
      }
      for (int64_t u = 0; u < num_segments; ++u) {
        store_line(dst + offset(ys, n * num_segments + u, line.channel, line.s), y_step,
                   rows_acc.data() + u * kLineLength, line.length);
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

// Memory plan: reads the C' channels of grad_y and x once each, writes (N, C', K) sums. Partial sums
// are kept per (tap, line position) and reduced in a fixed order, each (video, channel) by one task:
// deterministic.
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
  const int64_t x_step = line_stride(xs, along_channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_grad_weight", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    acc_t* dst = out.mutable_data_ptr<acc_t>();
    parallel_over_channel_blocks(videos, channels, along_channels, [&](int64_t n, int64_t c0, int64_t c1) {
      std::vector<acc_t> sums(kernel_size * kLineLength);
      std::array<acc_t, kLineLength> dy_line;
      auto accumulate = [&](const Line& line) {
        for (int64_t u = 0; u < num_segments; ++u) {
          const int64_t row = n * num_segments + u;
          load_line(dy_line.data(), dy + offset(gys, row, line.channel, line.s), gy_step, line.length);
          const auto taps = valid_taps(u, num_segments, kernel_size);
          for (int64_t k = taps.begin; k < taps.end; ++k) {
            add_scaled(sums.data() + k * kLineLength, static_cast<const acc_t*>(dy_line.data()),
                       src + offset(xs, row + k - pad, line.channel, line.s), x_step, line.length);
          }
        }
      };
      if (along_channels) {
        std::fill(sums.begin(), sums.end(), acc_t(0));
        for_each_line(c0, c1, spatial, true, accumulate);
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t k = 0; k < kernel_size; ++k)
            dst[(n * channels + c) * kernel_size + k] = sums[k * kLineLength + c - c0];
        return;
      }
      for (int64_t c = c0; c < c1; ++c) {
        std::fill(sums.begin(), sums.end(), acc_t(0));
        for_each_line(c, c + 1, spatial, false, accumulate);
        for (int64_t k = 0; k < kernel_size; ++k) {
          acc_t total = 0;
          for (int64_t i = 0; i < kLineLength; ++i) total += sums[k * kLineLength + i];
          dst[(n * channels + c) * kernel_size + k] = total;
        }
      }
    });
  });
  return out;
}

}  // namespace dsa_ops::cpu
