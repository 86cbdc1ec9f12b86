#include "layout.h"

#include <ATen/ops/empty.h>
#include <optional>

namespace dsa_ops {

int64_t spatial_size(const at::Tensor& x) {
  int64_t s = 1;
  for (int64_t d = 2; d < x.dim(); ++d) s *= x.size(d);
  return s;
}

namespace {

// The single stride of the flattened spatial dims, or nullopt when they do not flatten.
std::optional<int64_t> flat_spatial_stride(const at::Tensor& x) {
  std::optional<int64_t> inner;
  int64_t expected = 0;
  for (int64_t d = x.dim() - 1; d >= 2; --d) {
    if (x.size(d) == 1) continue;
    if (!inner) {
      inner = x.stride(d);
    } else if (x.stride(d) != expected) {
      return std::nullopt;
    }
    expected = x.stride(d) * x.size(d);
  }
  return inner.value_or(1);
}

bool has_unit_stride(const at::Tensor& x, int64_t spatial_stride) {
  return spatial_stride == 1 || x.stride(1) == 1 || x.size(1) == 1;
}

}  // namespace

at::Tensor readable_input(const at::Tensor& x) {
  auto spatial = flat_spatial_stride(x);
  if (spatial && has_unit_stride(x, *spatial)) return x;
  return x.contiguous();
}

PlaneStrides plane_strides(const at::Tensor& x) {
  // An empty tensor is never read (no kernel runs), whatever strides it carries (an empty expand is
  // "contiguous" with zero strides).
  if (x.numel() == 0) return {x.size(1) * spatial_size(x), spatial_size(x), 1};
  auto spatial = flat_spatial_stride(x);
  TORCH_CHECK(spatial && has_unit_stride(x, *spatial),
              "dsa_ops: internal error, plane_strides needs a tensor from readable_input");
  // With one channel or one spatial element the stride of that axis is never stepped; 1 marks the
  // other axis as the unit-stride one when S == 1 (see has_unit_stride).
  const int64_t spatial_stride = spatial_size(x) == 1 ? 1 : *spatial;
  return {x.stride(0), x.stride(1), spatial_stride};
}

at::MemoryFormat output_memory_format(const at::Tensor& x) {
  if (x.is_contiguous()) return at::MemoryFormat::Contiguous;
  if (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d)) {
    return at::MemoryFormat::ChannelsLast3d;
  }
  if (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

at::Tensor empty_output(const at::Tensor& x, at::ScalarType dtype) {
  return at::empty(x.sizes(), x.options().dtype(dtype).memory_format(output_memory_format(x)));
}

at::ScalarType accumulate_dtype(at::ScalarType input_dtype) {
  return input_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace dsa_ops
