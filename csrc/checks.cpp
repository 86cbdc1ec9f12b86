#include "checks.h"

#include "layout.h"

namespace dsa_ops {

void check_input(const at::Tensor& x, int64_t num_segments) {
  TORCH_CHECK_VALUE(x.dim() == 4 || x.dim() == 5,
                    "x must be 4D (N*U, C, H, W) or 5D (N*U, C, T, H, W), got ", x.dim(), "D");
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()),
                    "x must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(spatial_size(x) > 0, "x must have at least one position to pool over (T*H*W >= 1), got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(num_segments >= 1, "num_segments (U) must be >= 1, got ", num_segments);
  TORCH_CHECK_VALUE(x.size(0) % num_segments == 0, "x.size(0) must be a multiple of num_segments (U=",
                    num_segments, "), got ", x.size(0));
}

void check_channels(const at::Tensor& x, int64_t channels) {
  TORCH_CHECK_VALUE(channels >= 1 && channels <= x.size(1),
                    "channels (C') must be in [1, C=", x.size(1), "], got ", channels);
}

void check_kernel_size(int64_t kernel_size) {
  TORCH_CHECK_VALUE(kernel_size >= 1 && kernel_size % 2 == 1,
                    "kernel_size (K) must be odd and >= 1, got ", kernel_size);
}

void check_aggregate_weight(const at::Tensor& weight, const at::Tensor& x, int64_t num_segments) {
  TORCH_CHECK_VALUE(weight.dim() == 3, "weight must be 3D (N, C', K), got ", weight.dim(), "D");
  TORCH_CHECK_VALUE(at::isFloatingType(weight.scalar_type()),
                    "weight must be a floating dtype, got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), "weight must be on x's device (", x.device(), "), got ",
              weight.device());
  const int64_t videos = x.size(0) / num_segments;
  TORCH_CHECK_VALUE(weight.size(0) == videos, "weight.size(0) must equal the number of videos N = x.size(0) / U = ",
                    videos, ", got ", weight.size(0));
  check_channels(x, weight.size(1));
  check_kernel_size(weight.size(2));
}

void check_same_shape(const at::Tensor& grad, const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(grad.sizes() == x.sizes(), name, " must have x's shape ", x.sizes(), ", got ",
                    grad.sizes());
  TORCH_CHECK(grad.device() == x.device(), name, " must be on x's device (", x.device(), "), got ",
              grad.device());
  TORCH_CHECK_VALUE(grad.scalar_type() == x.scalar_type(), name, " must have x's dtype ", x.scalar_type(),
                    ", got ", grad.scalar_type());
}

void check_pooled(const at::Tensor& pooled, const at::Tensor& x, int64_t num_segments, const char* name) {
  const int64_t videos = x.size(0) / num_segments;
  TORCH_CHECK_VALUE(pooled.dim() == 3 && pooled.size(0) == videos && pooled.size(2) == num_segments,
                    name, " must have shape (N=", videos, ", C', U=", num_segments, "), got ", pooled.sizes());
  check_channels(x, pooled.size(1));
  TORCH_CHECK(pooled.device() == x.device(), name, " must be on x's device (", x.device(), "), got ",
              pooled.device());
}

void check_batch_rows(int64_t rows) {
  TORCH_CHECK_VALUE(rows > 1, "Expected more than 1 value per channel when training: the generator's BatchNorm "
                    "sees N*C' = ", rows, " rows; use more videos or channels, or eval mode");
}

}  // namespace dsa_ops
