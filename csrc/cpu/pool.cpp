// Segment pooling on the CPU and its backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include <array>
#include <vector>

#include "kernels.h"
#include "plane_loop.h"

namespace dsa_ops::cpu {

// Memory plan: reads the C' processed channels of x once, writes (N, C', U) means. One pass. Sums are
// kept per channel for lines along the channels, in kLanes lanes for a (row, channel) plane along s, and
// reduced in a fixed order: deterministic.
at::Tensor pool(const at::Tensor& x, int64_t num_segments, int64_t channels) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  auto out = at::empty({videos, channels, num_segments}, x.options().dtype(accumulate_dtype(x.scalar_type())));
  const auto xs = plane_strides(x);
  const bool along_channels = lines_along_channels(xs);
  const int64_t stride = line_stride(xs, along_channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_pool", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    acc_t* dst = out.mutable_data_ptr<acc_t>();
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
    parallel_over_channel_blocks(videos, channels, along_channels, [&](int64_t n, int64_t c0, int64_t c1) {
      if (along_channels) {
        std::vector<acc_t> sums(num_segments * kLineLength, acc_t(0));
        auto row_sums = [&](int64_t u) { return sums.data() + u * kLineLength; };
        for_each_line(c0, c1, spatial, true, [&](const Line& line) {
          for (int64_t u = 0; u < num_segments; ++u) {
            add_line(row_sums(u), src + offset(xs, n * num_segments + u, line.channel, line.s), stride, line.length);
          }
        });
        for (int64_t u = 0; u < num_segments; ++u)
          for (int64_t c = c0; c < c1; ++c) dst[(n * channels + c) * num_segments + u] = row_sums(u)[c - c0] * scale;
        return;
      }
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t u = 0; u < num_segments; ++u) {
          const scalar_t* plane = src + offset(xs, n * num_segments + u, c, 0);
          dst[(n * channels + c) * num_segments + u] = plane_sum<acc_t>(plane, spatial) * scale;
        }
      }
    });
  });
  return out;
}

// Memory plan: reads (N, C', U) gradients, writes grad_x once (zeros beyond the first C' channels).
at::Tensor pool_backward(const at::Tensor& grad_pooled, const at::Tensor& x, int64_t num_segments) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t channels = grad_pooled.size(1);
  const int64_t spatial = spatial_size(x);
  auto grad_x = empty_output(x, x.scalar_type());
  const auto gs = plane_strides(grad_x);
  const bool along_channels = lines_along_channels(gs);
  const int64_t stride = line_stride(gs, along_channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_pool_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* grad = grad_pooled.const_data_ptr<acc_t>();
    scalar_t* dst = grad_x.mutable_data_ptr<scalar_t>();
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
    parallel_over_channel_blocks(videos, channels, along_channels, [&](int64_t n, int64_t c0, int64_t c1) {
      std::array<acc_t, kLineLength> values;
      for_each_line(c0, c1, spatial, along_channels, [&](const Line& line) {
        for (int64_t u = 0; u < num_segments; ++u) {
          for (int64_t i = 0; i < line.length; ++i) {
            const int64_t c = along_channels ? line.channel + i : line.channel;
            values[i] = grad[(n * channels + c) * num_segments + u] * scale;
          }
          store_line(dst + offset(gs, n * num_segments + u, line.channel, line.s), stride, values.data(), line.length);
        }
      });
    });
  });
  if (channels < x.size(1)) grad_x.narrow(1, channels, x.size(1) - channels).zero_();
  return grad_x;
}

}  // namespace dsa_ops::cpu
