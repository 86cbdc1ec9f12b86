// Registers the dsa_ops operators for CPU tensors with the CPU kernel table.
#include "../register_ops.h"
#include "kernels.h"

TORCH_LIBRARY_IMPL(dsa_ops, CPU, m) { dsa_ops::register_ops<dsa_ops::cpu::kernels>(m); }
