#pragma once
// Emulation only: whether the CUDA kernels' grid-stride loops take int64 indices whatever the size, so
// that tests reach the variants a GPU runs only for tensors of over 2^31 elements (see fits_int32).
namespace dsa_ops::emulation {

bool wide_indices();
void set_wide_indices(bool wide);

}  // namespace dsa_ops::emulation
