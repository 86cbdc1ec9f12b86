// The CUDA kernel table compiled for the host (DSA_OPS_CUDA_EMULATION): the sources of csrc/cuda as they
// are, their launches run by simt.h's emulation. Built by tests/cuda_emulation.py only.
#include "../cuda/aggregate.cu"
#include "../cuda/eval_forward.cu"
#include "../cuda/fused_backward.cu"
#include "../cuda/fused_forward.cu"
#include "../cuda/generator.cu"
#include "../cuda/grad_weight.cu"
#include "../cuda/pool.cu"
