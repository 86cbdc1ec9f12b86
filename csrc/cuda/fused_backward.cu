// The module's backward on CUDA in two launches: grad_weight's partial sums over splits of S, then one
// kernel whose every block first runs the generator's backward on all (R = N*C') rows (the BatchNorm's
// batch terms included) into shared memory, then aggregates grad_y into grad_x with the reversed kernels
// and the pooled gradient; block 0 also writes the parameter gradients. Where fused_backward declines
// (fused_launch.h, or a generator larger than a thread's local arrays) the op composes grad_weight,
// generator_backward and aggregate. Deterministic: every sum runs in a fixed order. The BatchNorm's sums
// over rows are added in another order than generator_backward's, so the two paths agree to rounding.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "aggregate.cuh"
#include "fused_launch.h"
#include "generator.cuh"
#include "kernels.h"

namespace dsa_ops::cuda {

namespace {

// A thread keeps a row's values in local arrays of these sizes; a larger generator takes the composed path.
constexpr int kMaxHidden = 32;
constexpr int kMaxTaps = 15;

// Block 0's per-row values for the parameter gradients, and those gradients.
template <typename acc_t>
struct ParameterGrads {
  acc_t* activated;      // (R, aU)
  acc_t* grad_hidden;    // (R, aU)
  acc_t* grad_logits;    // (R, K)
  acc_t* first_weight;   // (aU, U) output
  acc_t* bn_weight;      // (aU) output
  acc_t* bn_bias;        // (aU) output
  acc_t* second_weight;  // (K, aU) output
};

// The BatchNorm's sums over rows: sums[j] = sum_r grad_bn_out[r, j] * normalized[r, j] and sums[aU + j] =
// sum_r grad_bn_out[r, j]. Thread t adds rows t, t + blockDim.x, ... in order; the threads' sums are
// added by warp shuffles, then warp by warp in order. warp_sums holds (blockDim.x / 32, 2 aU) values.
template <typename acc_t>
__device__ void batch_norm_sums(const GeneratorView<acc_t>& g, const acc_t* rows, const acc_t* grad_kernel,
                                int64_t count, acc_t* warp_sums, acc_t* sums) {
  const int units = g.hidden;
  acc_t weight_sum[kMaxHidden] = {};
  acc_t bias_sum[kMaxHidden] = {};
  acc_t kernel[kMaxTaps], grad_logits[kMaxTaps];
  acc_t normalized[kMaxHidden], activated[kMaxHidden], grad_bn_out[kMaxHidden];
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    row_backward_to_bn(g, rows + r * g.segments, grad_kernel + r * g.taps, kernel, normalized, activated, grad_logits,
                       grad_bn_out);
    for (int j = 0; j < units; ++j) {
      weight_sum[j] += grad_bn_out[j] * normalized[j];
      bias_sum[j] += grad_bn_out[j];
    }
  }
  const int warp = threadIdx.x / kWarp;
  for (int q = 0; q < 2 * units; ++q) {
    const acc_t total = warp_total(q < units ? weight_sum[q] : bias_sum[q - units]);
    if (threadIdx.x % kWarp == 0) warp_sums[warp * 2 * units + q] = total;
  }
  __syncthreads();
  for (int q = threadIdx.x; q < 2 * units; q += blockDim.x) {
    acc_t total = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x) / kWarp; ++w) total += warp_sums[w * 2 * units + q];
    sums[q] = total;
  }
  __syncthreads();
}

// Memory plan: every block reads the (R, U) pooled rows and the (splits, R, K) grad_weight partial sums
// (from L2) and the parameters; grad_y is read once from DRAM and grad_x written once
// (aggregate_positions); block 0 also writes (R, 2 aU + K) per-row values and reads them back for the
// parameter gradients. Shared memory: invstd, mean_grad, projection (aU each), the BatchNorm sums (2 aU),
// the warps' partial sums (warps, 2 aU), and per row grad_kernel (K), the reversed kernel (K) and
// grad_pooled (U).
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void fused_backward_kernel(const scalar_t* __restrict__ grad_y, PlaneStrides gs,
                                      scalar_t* __restrict__ grad_x, PlaneStrides xs, GeneratorView<acc_t> g,
                                      const acc_t* __restrict__ rows, const acc_t* __restrict__ partial,
                                      int64_t splits, const acc_t* var, acc_t eps,
                                      bool training, ParameterGrads<acc_t> p, index_t videos, index_t channels,
                                      index_t all_channels, index_t spatial, bool identity, bool by_channel) {
  const int units = g.hidden, taps = g.taps, segments = g.segments;
  const int64_t count = int64_t(videos) * channels;
  acc_t* invstd = dynamic_shared<acc_t>();
  acc_t* mean_grad = invstd + units;
  acc_t* projection = mean_grad + units;
  acc_t* sums = projection + units;
  acc_t* warp_sums = sums + 2 * units;
  acc_t* grad_kernel = warp_sums + (blockDim.x / kWarp) * 2 * units;
  acc_t* kernel = grad_kernel + count * taps;
  acc_t* grad_pooled = kernel + count * taps;
  for (int64_t i = threadIdx.x; i < count * taps; i += blockDim.x) {
    acc_t total = 0;
    for (int64_t split = 0; split < splits; ++split) total += partial[split * count * taps + i];
    grad_kernel[i] = total;
  }
  for (int j = threadIdx.x; j < units; j += blockDim.x) invstd[j] = inverse_sqrt(var[j] + eps);
  __syncthreads();
  GeneratorView<acc_t> view = g;
  view.invstd = invstd;
  const bool parameters = blockIdx.x == 0;
  if (training || parameters) batch_norm_sums(view, rows, grad_kernel, count, warp_sums, sums);
  if (training) {
    for (int j = threadIdx.x; j < units; j += blockDim.x) {
      mean_grad[j] = g.bn_weight[j] * sums[units + j] / acc_t(count);
      projection[j] = g.bn_weight[j] * sums[j] / acc_t(count);
    }
    __syncthreads();
  }
  acc_t normalized[kMaxHidden], activated[kMaxHidden], grad_bn_out[kMaxHidden], grad_hidden[kMaxHidden];
  acc_t grad_logits[kMaxTaps];
  for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
    row_backward_to_bn(view, rows + r * segments, grad_kernel + r * taps, kernel + r * taps, normalized, activated,
                       grad_logits, grad_bn_out);
    row_backward_to_input(view, normalized, grad_bn_out, training ? mean_grad : nullptr,
                          training ? projection : nullptr, grad_hidden, grad_pooled + r * segments);
    if (parameters) {
      for (int j = 0; j < units; ++j) {
        p.activated[r * units + j] = activated[j];
        p.grad_hidden[r * units + j] = grad_hidden[j];
      }
      for (int k = 0; k < taps; ++k) p.grad_logits[r * taps + k] = grad_logits[k];
    }
  }
  __syncthreads();
  if (parameters) {
    sum_quantities(p.second_weight, int64_t(taps) * units, acc_t(1), [&](int64_t q, int lane) {
      return column_sum(p.grad_logits + q / units, taps, p.activated + q % units, units, lane, count, kWarp);
    });
    sum_quantities(p.first_weight, int64_t(units) * segments, acc_t(1), [&](int64_t q, int lane) {
      return column_sum(p.grad_hidden + q / segments, units, rows + q % segments, segments, lane, count, kWarp);
    });
    for (int j = threadIdx.x; j < units; j += blockDim.x) {
      p.bn_weight[j] = sums[j];
      p.bn_bias[j] = sums[units + j];
    }
  }
  aggregate_positions(grad_y, gs, grad_x, xs, static_cast<const acc_t*>(kernel),
                      static_cast<const acc_t*>(grad_pooled), acc_t(1) / static_cast<acc_t>(spatial), videos, channels,
                      all_channels, spatial, segments, taps, identity, by_channel);
}

}  // namespace

std::optional<ModuleGrads> fused_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& rows,
                                          const GeneratorParams& params, const at::Tensor& mean, const at::Tensor& var,
                                          int64_t num_segments, bool training, double eps, bool identity) {
  const int64_t videos = x.size(0) / num_segments;
  const int64_t count = rows.size(0);
  const int64_t units = params.first_weight.size(0);
  const int64_t taps = params.second_weight.size(0);
  const int64_t spatial = spatial_size(x);
  const int64_t work = videos * x.size(1) * spatial;
  if (units > kMaxHidden || taps > kMaxTaps) return std::nullopt;
  const size_t shared = ((5 + 2 * kThreads / kWarp) * units + count * (2 * taps + num_segments)) *
                        c10::elementSize(accumulate_dtype(x.scalar_type()));
  if (!fused_path(work, count, shared)) return std::nullopt;

  const int64_t channels = count / videos;
  const auto partials = grad_weight_partials(grad_y, x, num_segments, channels, taps);
  auto grad_x = empty_output(grad_y, grad_y.scalar_type());
  const auto options = rows.options();
  ModuleGrads grads{grad_x, at::empty({units, num_segments}, options), at::empty({units}, options),
                    at::empty({units}, options), at::empty({taps, units}, options)};
  auto per_row = at::empty({count, 2 * units + taps}, options);
  const auto gs = plane_strides(grad_y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cuda_fused_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    acc_t* values = per_row.mutable_data_ptr<acc_t>();
    const ParameterGrads<acc_t> parameter_grads{values, values + count * units, values + 2 * count * units,
                                                grads.first_weight.mutable_data_ptr<acc_t>(),
                                                grads.bn_weight.mutable_data_ptr<acc_t>(),
                                                grads.bn_bias.mutable_data_ptr<acc_t>(),
                                                grads.second_weight.mutable_data_ptr<acc_t>()};
    by_index_width(work, kThreads, [&](auto index) {
      using index_t = decltype(index);
      launch(fused_backward_kernel<scalar_t, acc_t, index_t>, fused_blocks(work), kThreads, shared,
             grad_y.const_data_ptr<scalar_t>(), gs, grad_x.mutable_data_ptr<scalar_t>(), plane_strides(grad_x),
             generator_view<acc_t>(params, mean), rows.const_data_ptr<acc_t>(),
             partials.partial.const_data_ptr<acc_t>(), partials.splits, var.const_data_ptr<acc_t>(),
             static_cast<acc_t>(eps), training, parameter_grads, index_t(videos), index_t(channels),
             index_t(x.size(1)), index_t(spatial), identity, along_channels(gs));
    });
  });
  return grads;
}

}  // namespace dsa_ops::cuda
