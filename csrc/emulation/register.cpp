// Registers the emulated CUDA kernel table for CPU tensors under dsa_ops_emulated_cuda::<op> (the schemas
// are defined from Python, tests/cuda_emulation.py, as dsa_ops.ops.SCHEMAS), and the emulated
// multiprocessor count as an op.
#include <torch/library.h>

#include "../cuda/kernels.h"
#include "../register_ops.h"
#include "simt.h"

TORCH_LIBRARY_FRAGMENT(dsa_ops_emulated_cuda, m) {
  m.def("set_multiprocessor_count(int count) -> ()", &simt::set_multiprocessor_count);
}

TORCH_LIBRARY_IMPL(dsa_ops_emulated_cuda, CPU, m) { dsa_ops::register_ops<dsa_ops::cuda::kernels>(m); }
