#pragma once
// The CPU kernel table (see ../ops.h for what each entry computes). No one-launch eval forward, out of
// place or in place, and no fused forward or backward: on the CPU the ops compose the other kernels.
#include "../kernel_table.h"

namespace dsa_ops::cpu {
DSA_OPS_DECLARE_KERNEL_TABLE(nullptr, nullptr, nullptr, nullptr, nullptr)
}  // namespace dsa_ops::cpu
