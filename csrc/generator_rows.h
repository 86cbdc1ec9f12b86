#pragma once
// The kernel generator's arithmetic, shared by the CPU loops (csrc/cpu/generator.cpp) and the CUDA
// kernel (csrc/cuda/generator.cu) as host-and-device functions. A row is one (video, channel) pair: its
// U pooled values p, H = alpha*U hidden units, K taps:
//   h = W1 p;  n = (h - mean) * invstd;  a = relu(bn_w * n + bn_b);  kernel = softmax(W2 a).
// The per-row functions work on one row; the column sums reduce a quantity over rows (every
// `step`-th row from `begin`), in a fixed order.
#include <math.h>
#include <cstdint>

#ifdef __CUDACC__
#define DSA_OPS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DSA_OPS_HOST_DEVICE inline
#endif

namespace dsa_ops {

// The generator's parameters and the BatchNorm statistics it normalises with, contiguous, in the
// accumulation type.
template <typename acc_t>
struct GeneratorView {
  const acc_t* first_weight;   // (H, U)
  const acc_t* bn_weight;      // (H)
  const acc_t* bn_bias;        // (H)
  const acc_t* second_weight;  // (K, H)
  const acc_t* mean;           // (H)
  const acc_t* invstd;         // (H)
  int segments;
  int hidden;
  int taps;
};

DSA_OPS_HOST_DEVICE float exp_of(float v) { return ::expf(v); }
DSA_OPS_HOST_DEVICE double exp_of(double v) { return ::exp(v); }
DSA_OPS_HOST_DEVICE float inverse_sqrt(float v) { return 1.0f / ::sqrtf(v); }
DSA_OPS_HOST_DEVICE double inverse_sqrt(double v) { return 1.0 / ::sqrt(v); }

// Hidden unit j of the row with pooled values p: sum_u W1[j, u] * p[u].
template <typename acc_t>
DSA_OPS_HOST_DEVICE acc_t hidden_unit(const GeneratorView<acc_t>& g, const acc_t* p, int j) {
  acc_t h = 0;
  for (int u = 0; u < g.segments; ++u) h += g.first_weight[j * g.segments + u] * p[u];
  return h;
}

// Softmax over the K values of v, in place.
template <typename acc_t>
DSA_OPS_HOST_DEVICE void softmax_(acc_t* v, int taps) {
  acc_t top = v[0];
  for (int k = 1; k < taps; ++k) top = v[k] > top ? v[k] : top;
  acc_t total = 0;
  for (int k = 0; k < taps; ++k) {
    v[k] = exp_of(v[k] - top);
    total += v[k];
  }
  for (int k = 0; k < taps; ++k) v[k] /= total;
}

// The row's K kernel weights into kernel; its normalised and activated hidden units into normalized
// and activated when those are given (the backward keeps them).
template <typename acc_t>
DSA_OPS_HOST_DEVICE void row_kernel(const GeneratorView<acc_t>& g, const acc_t* p, acc_t* kernel,
                                    acc_t* normalized = nullptr, acc_t* activated = nullptr) {
  for (int k = 0; k < g.taps; ++k) kernel[k] = 0;
  for (int j = 0; j < g.hidden; ++j) {
    const acc_t n = (hidden_unit(g, p, j) - g.mean[j]) * g.invstd[j];
    const acc_t scaled = g.bn_weight[j] * n + g.bn_bias[j];
    const acc_t a = scaled < acc_t(0) ? acc_t(0) : scaled;  // ReLU; a NaN passes, as in torch.relu
    if (normalized != nullptr) {
      normalized[j] = n;
      activated[j] = a;
    }
    for (int k = 0; k < g.taps; ++k) kernel[k] += g.second_weight[k * g.hidden + j] * a;
  }
  softmax_(kernel, g.taps);
}

// Backward, first per-row pass: given the row's grad_kernel (K), its kernel with the taps reversed
// (reversed_kernel[k] = kernel[K - 1 - k], as grad_x's aggregation takes it), normalised and activated
// units, the gradient of the softmax's input (grad_logits, K) and of the BatchNorm's output (grad_bn_out,
// H: zero where the ReLU was off).
template <typename acc_t>
DSA_OPS_HOST_DEVICE void row_backward_to_bn(const GeneratorView<acc_t>& g, const acc_t* p, const acc_t* grad_kernel,
                                            acc_t* reversed_kernel, acc_t* normalized, acc_t* activated,
                                            acc_t* grad_logits, acc_t* grad_bn_out) {
  acc_t* kernel = reversed_kernel;  // in tap order until the end
  row_kernel(g, p, kernel, normalized, activated);
  acc_t dot = 0;
  for (int k = 0; k < g.taps; ++k) dot += grad_kernel[k] * kernel[k];
  for (int k = 0; k < g.taps; ++k) grad_logits[k] = kernel[k] * (grad_kernel[k] - dot);
  for (int j = 0; j < g.hidden; ++j) {
    acc_t grad = 0;
    for (int k = 0; k < g.taps; ++k) grad += grad_logits[k] * g.second_weight[k * g.hidden + j];
    grad_bn_out[j] = activated[j] <= acc_t(0) ? acc_t(0) : grad;  // as torch's threshold_backward
  }
  for (int k = 0; k < g.taps / 2; ++k) {
    const acc_t first = kernel[k];
    kernel[k] = kernel[g.taps - 1 - k];
    kernel[g.taps - 1 - k] = first;
  }
}

// Backward, second per-row pass: the gradient of the hidden units (grad_hidden, H) and of the pooled
// values (grad_p, U). mean_grad[j] and projection[j] are bn_w[j] times the batch means of grad_bn_out[j]
// and grad_bn_out[j] * normalized[j] (training), or null (eval: the statistics are constants).
template <typename acc_t>
DSA_OPS_HOST_DEVICE void row_backward_to_input(const GeneratorView<acc_t>& g, const acc_t* normalized,
                                               const acc_t* grad_bn_out, const acc_t* mean_grad,
                                               const acc_t* projection, acc_t* grad_hidden, acc_t* grad_p) {
  for (int j = 0; j < g.hidden; ++j) {
    acc_t grad = g.bn_weight[j] * grad_bn_out[j];
    if (mean_grad != nullptr) grad -= mean_grad[j] + normalized[j] * projection[j];
    grad_hidden[j] = grad * g.invstd[j];
  }
  for (int u = 0; u < g.segments; ++u) {
    acc_t grad = 0;
    for (int j = 0; j < g.hidden; ++j) grad += grad_hidden[j] * g.first_weight[j * g.segments + u];
    grad_p[u] = grad;
  }
}

// sum over rows r = begin, begin + step, ... < rows of a[r * a_stride] * b[r * b_stride] (b null: 1).
template <typename acc_t>
DSA_OPS_HOST_DEVICE acc_t column_sum(const acc_t* a, int64_t a_stride, const acc_t* b, int64_t b_stride,
                                     int64_t begin, int64_t rows, int64_t step) {
  acc_t total = 0;
  for (int64_t r = begin; r < rows; r += step) total += b == nullptr ? a[r * a_stride] : a[r * a_stride] * b[r * b_stride];
  return total;
}

// sum over the same rows of (a[r * a_stride] - center)^2.
template <typename acc_t>
DSA_OPS_HOST_DEVICE acc_t centered_square_sum(const acc_t* a, int64_t a_stride, acc_t center, int64_t begin,
                                              int64_t rows, int64_t step) {
  acc_t total = 0;
  for (int64_t r = begin; r < rows; r += step) {
    const acc_t d = a[r * a_stride] - center;
    total += d * d;
  }
  return total;
}

}  // namespace dsa_ops
