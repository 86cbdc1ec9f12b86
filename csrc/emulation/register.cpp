// Registers the emulated CUDA kernel table for CPU tensors under dsa_ops_emulated_cuda::<op> (the schemas
// are defined from Python, tests/cuda_emulation.py, as dsa_ops.ops.SCHEMAS), and the emulation's
// settings (multiprocessor count, thread order, index width) and its launch count as ops.
#include <torch/library.h>

#include <string>

#include "../cuda/kernels.h"
#include "../register_ops.h"
#include "index_width.h"
#include "simt.h"

namespace dsa_ops::emulation {

namespace {
bool wide = false;
}  // namespace

bool wide_indices() { return wide; }
void set_wide_indices(bool value) { wide = value; }

}  // namespace dsa_ops::emulation

namespace {

void set_thread_order(const std::string& order) {
  TORCH_CHECK_VALUE(order == "ascending" || order == "descending", "order must be ascending or descending, got ",
                    order);
  simt::set_thread_order(order == "ascending" ? simt::ThreadOrder::kAscending : simt::ThreadOrder::kDescending);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dsa_ops_emulated_cuda, m) {
  m.def("set_multiprocessor_count(int count) -> ()", &simt::set_multiprocessor_count);
  m.def("set_thread_order(str order) -> ()", &set_thread_order);
  m.def("set_wide_indices(bool wide) -> ()", &dsa_ops::emulation::set_wide_indices);
  m.def("launch_count() -> int", &simt::launch_count);
}

TORCH_LIBRARY_IMPL(dsa_ops_emulated_cuda, CPU, m) { dsa_ops::register_ops<dsa_ops::cuda::kernels>(m); }
