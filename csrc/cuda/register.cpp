// Registers the dsa_ops operators for CUDA tensors with the CUDA kernel table.
#include "../register_ops.h"
#include "kernels.h"

TORCH_LIBRARY_IMPL(dsa_ops, CUDA, m) { dsa_ops::register_ops<dsa_ops::cuda::kernels>(m); }
