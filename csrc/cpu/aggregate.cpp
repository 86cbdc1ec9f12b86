// Aggregation along the segment axis on the CPU, and its two backward kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <vector>

#include "kernels.h"
#include "plane_loop.h"

namespace dsa_ops::cpu {

namespace {

void copy_passthrough(at::Tensor& out, const at::Tensor& in, int64_t channels) {
  const int64_t rest = in.size(1) - channels;
  if (rest > 0) out.narrow(1, channels, rest).copy_(in.narrow(1, channels, rest));
}

}  // namespace

// Memory plan: reads x once (the C' channels' K taps come from rows the task streams through
// together) and writes y once; the other C - C' channels are copied. One pass.
at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
  const int64_t videos = weight.size(0);
  const int64_t channels = weight.size(1);
  const int64_t kernel_size = weight.size(2);
  const int64_t pad = (kernel_size - 1) / 2;
  const int64_t spatial = spatial_size(x);
  auto y = empty_output(x, x.scalar_type());
  const auto xs = plane_strides(x);
  const auto ys = plane_strides(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_aggregate", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    const acc_t* w = weight.const_data_ptr<acc_t>();
    scalar_t* dst = y.mutable_data_ptr<scalar_t>();
    parallel_over_channel_blocks(videos, channels, [&](int64_t n, int64_t c0, int64_t c1) {
      for (int64_t u = 0; u < num_segments; ++u) {
        const int64_t row = n * num_segments + u;
        const auto taps = valid_taps(u, num_segments, kernel_size);
        for_each_in_plane(c0, c1, spatial, channel_minor(xs), [&](int64_t c, int64_t s) {
          const acc_t* wc = w + (n * channels + c) * kernel_size;
          acc_t acc = 0;
          for (int64_t k = taps.begin; k < taps.end; ++k) {
            acc += wc[k] * static_cast<acc_t>(src[offset(xs, row + k - pad, c, s)]);
          }
          if (identity) acc += static_cast<acc_t>(src[offset(xs, row, c, s)]);
          dst[offset(ys, row, c, s)] = static_cast<scalar_t>(acc);
        });
      }
    });
  });
  copy_passthrough(y, x, channels);
  return y;
}

// Memory plan: reads grad_y once and writes grad_x once; the pooled gradient (grad_pooled / S) is
// added in the same pass, the other C - C' channels are copied. One pass.
at::Tensor grad_input(const at::Tensor& grad_y, const at::Tensor& weight,
                      const std::optional<at::Tensor>& grad_pooled, int64_t num_segments, bool identity) {
  const int64_t videos = weight.size(0);
  const int64_t channels = weight.size(1);
  const int64_t kernel_size = weight.size(2);
  const int64_t pad = (kernel_size - 1) / 2;
  const int64_t spatial = spatial_size(grad_y);
  auto grad_x = empty_output(grad_y, grad_y.scalar_type());
  const auto gys = plane_strides(grad_y);
  const auto gxs = plane_strides(grad_x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_y.scalar_type(), "dsa_ops_cpu_grad_input", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = grad_y.const_data_ptr<scalar_t>();
    const acc_t* w = weight.const_data_ptr<acc_t>();
    const acc_t* pooled = grad_pooled ? grad_pooled->const_data_ptr<acc_t>() : nullptr;
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial);
    scalar_t* dst = grad_x.mutable_data_ptr<scalar_t>();
    parallel_over_channel_blocks(videos, channels, [&](int64_t n, int64_t c0, int64_t c1) {
      for (int64_t u = 0; u < num_segments; ++u) {
        const int64_t row = n * num_segments + u;
        const int64_t k_begin = std::max<int64_t>(0, u + pad - num_segments + 1);
        const int64_t k_end = std::min<int64_t>(kernel_size, u + pad + 1);
        for_each_in_plane(c0, c1, spatial, channel_minor(gys), [&](int64_t c, int64_t s) {
          const acc_t* wc = w + (n * channels + c) * kernel_size;
          acc_t acc = 0;
          for (int64_t k = k_begin; k < k_end; ++k) {
            acc += wc[k] * static_cast<acc_t>(src[offset(gys, row - k + pad, c, s)]);
          }
          if (identity) acc += static_cast<acc_t>(src[offset(gys, row, c, s)]);
          if (pooled) acc += pooled[(n * channels + c) * num_segments + u] * scale;
          dst[offset(gxs, row, c, s)] = static_cast<scalar_t>(acc);
        });
      }
    });
  });
  copy_passthrough(grad_x, grad_y, channels);
  return grad_x;
}

// Memory plan: reads the C' channels of grad_y and x once each, writes (N, C', K) sums. Each
// (video, channel) sum is owned by one task and added in a fixed order: deterministic.
at::Tensor grad_weight(const at::Tensor& grad_y, const at::Tensor& x, int64_t num_segments, int64_t channels,
                       int64_t kernel_size) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t pad = (kernel_size - 1) / 2;
  const int64_t spatial = spatial_size(x);
  auto out = at::empty({videos, channels, kernel_size}, x.options().dtype(accumulate_dtype(x.scalar_type())));
  const auto gys = plane_strides(grad_y);
  const auto xs = plane_strides(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_grad_weight", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    acc_t* dst = out.mutable_data_ptr<acc_t>();
    parallel_over_channel_blocks(videos, channels, [&](int64_t n, int64_t c0, int64_t c1) {
      std::vector<acc_t> sums((c1 - c0) * kernel_size, acc_t(0));
      for (int64_t u = 0; u < num_segments; ++u) {
        const int64_t row = n * num_segments + u;
        const auto taps = valid_taps(u, num_segments, kernel_size);
        for (int64_t k = taps.begin; k < taps.end; ++k) {
          for_each_in_plane(c0, c1, spatial, channel_minor(xs), [&](int64_t c, int64_t s) {
            sums[(c - c0) * kernel_size + k] += static_cast<acc_t>(dy[offset(gys, row, c, s)]) *
                                                static_cast<acc_t>(src[offset(xs, row + k - pad, c, s)]);
          });
        }
      }
      std::copy(sums.begin(), sums.end(), dst + (n * channels + c0) * kernel_size);
    });
  });
  return out;
}

}  // namespace dsa_ops::cpu
