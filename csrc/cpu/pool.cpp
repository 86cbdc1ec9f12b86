// Segment pooling on the CPU and its backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <vector>

#include "kernels.h"
#include "plane_loop.h"

namespace dsa_ops::cpu {

// Memory plan: reads the C' processed channels of x once, writes (N, C', U) means. One pass.
at::Tensor pool(const at::Tensor& x, int64_t num_segments, int64_t channels) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t spatial = spatial_size(x);
  auto out = at::empty({videos, channels, num_segments}, x.options().dtype(accumulate_dtype(x.scalar_type())));
  const auto xs = plane_strides(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_pool", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    acc_t* dst = out.mutable_data_ptr<acc_t>();
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
    parallel_over_channel_blocks(videos, channels, [&](int64_t n, int64_t c0, int64_t c1) {
      std::vector<acc_t> sums(c1 - c0);
      for (int64_t u = 0; u < num_segments; ++u) {
        std::fill(sums.begin(), sums.end(), acc_t(0));
        const int64_t row = n * num_segments + u;
        for_each_in_plane(c0, c1, spatial, channel_minor(xs), [&](int64_t c, int64_t s) {
          sums[c - c0] += static_cast<acc_t>(src[offset(xs, row, c, s)]);
        });
        for (int64_t c = c0; c < c1; ++c) dst[(n * channels + c) * num_segments + u] = sums[c - c0] * scale;
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_pool_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* grad = grad_pooled.const_data_ptr<acc_t>();
    scalar_t* dst = grad_x.mutable_data_ptr<scalar_t>();
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
    parallel_over_channel_blocks(videos, channels, [&](int64_t n, int64_t c0, int64_t c1) {
      for (int64_t u = 0; u < num_segments; ++u) {
        const int64_t row = n * num_segments + u;
        for_each_in_plane(c0, c1, spatial, channel_minor(gs), [&](int64_t c, int64_t s) {
          dst[offset(gs, row, c, s)] = static_cast<scalar_t>(grad[(n * channels + c) * num_segments + u] * scale);
        });
      }
    });
  });
  if (channels < x.size(1)) grad_x.narrow(1, channels, x.size(1) - channels).zero_();
  return grad_x;
}

}  // namespace dsa_ops::cpu
