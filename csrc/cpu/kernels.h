#pragma once
// The CPU kernel table (see ../ops.h for what each entry computes).
#include "../kernel_table.h"

namespace dsa_ops::cpu {
DSA_OPS_DECLARE_KERNEL_TABLE()
}  // namespace dsa_ops::cpu
