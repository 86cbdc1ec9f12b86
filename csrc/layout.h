#pragma once
// How the kernels see an input: a (rows, channels, S) plane with one stride per axis, where
// rows = N*U, S = T*H*W (T = 1 for 4D inputs). Device-agnostic; used by every compiled backend.
#include <ATen/core/Tensor.h>

namespace dsa_ops {

struct PlaneStrides {
  int64_t row;
  int64_t channel;
  int64_t spatial;
};

// Product of the spatial sizes (dims 2..end).
int64_t spatial_size(const at::Tensor& x);

// x itself when its spatial dims flatten to one stride and the channel or the spatial stride is 1
// (contiguous, channels_last / channels_last_3d, and channel or batch slices of those); otherwise
// x.contiguous(), the one copy the package makes of an awkwardly strided input.
at::Tensor readable_input(const at::Tensor& x);

// The plane strides of a tensor accepted by readable_input.
PlaneStrides plane_strides(const at::Tensor& x);

// The memory format of the outputs: channels-last when x is channels-last (and not also contiguous).
at::MemoryFormat output_memory_format(const at::Tensor& x);

// An uninitialised tensor with x's sizes, the given dtype and output_memory_format(x).
at::Tensor empty_output(const at::Tensor& x, at::ScalarType dtype);

// The accumulation dtype: float64 for double inputs, float32 otherwise.
at::ScalarType accumulate_dtype(at::ScalarType input_dtype);

}  // namespace dsa_ops
