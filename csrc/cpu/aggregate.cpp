// Aggregation along the segment axis on the CPU: the forward, grad_x (the same sum with the taps
// reversed and the pooled gradient folded in) and the in-place forward.
#include <ATen/Dispatch.h>

#include "aggregation.h"
#include "kernels.h"

namespace dsa_ops::cpu {

namespace {

// Every (video, channel block) of the C' channels by Aggregation (aggregation.h). One pass.
template <typename scalar_t>
void aggregate_into(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                    const std::optional<at::Tensor>& grad_pooled, const at::Tensor& out) {
  const Aggregation<scalar_t> aggregation(x, weight, num_segments, identity, grad_pooled, out);
  parallel_over_channel_blocks(aggregation.videos(), aggregation.channels(), aggregation.along_channels(),
                               [&](int64_t n, int64_t c0, int64_t c1) { aggregation.block(n, c0, c1); });
}

}  // namespace

// The C' channels by aggregate_into, the others copied (one read, one write).
at::Tensor aggregate(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
                     const std::optional<at::Tensor>& grad_pooled) {
  auto y = empty_output(x, x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_aggregate", [&] {
    aggregate_into<scalar_t>(x, weight, num_segments, identity, grad_pooled, y);
    copy_passthrough<scalar_t>(x, y, weight.size(1));
  });
  return y;
}

void aggregate_inplace(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dsa_ops_cpu_aggregate_inplace", [&] {
    aggregate_into<scalar_t>(x, weight, num_segments, identity, std::nullopt, x);
  });
}

}  // namespace dsa_ops::cpu
