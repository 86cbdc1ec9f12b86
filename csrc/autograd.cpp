// Autograd for the compiled dsa_ops operators. Each forward runs its op below the autograd key; each
// backward calls the backward ops through the dispatcher, with autograd, so aggregate and segment_pool
// have double backward. In C++ because an autograd registered from Python (torch.library.
// register_autograd, which the Triton ops in dsa_ops/ops.py keep: they are defined from Python and must
// work without this library) costs about 50 us of host time per call, more than the kernels of a
// late-stage layer take on a GPU.
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros_like.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace dsa_ops {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <class Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").template typed<Signature>();
}

using ForwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using BackwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

// The ops through the dispatcher, each handle looked up once; they run below or above the autograd key
// as the caller's guards say.
namespace ops {

Tensor segment_pool(const Tensor& x, int64_t num_segments, int64_t channels) {
  static const auto op = find_op<Tensor(const Tensor&, int64_t, int64_t)>("dsa_ops::segment_pool");
  return op.call(x, num_segments, channels);
}

Tensor segment_pool_backward(const Tensor& grad_pooled, const Tensor& x, int64_t num_segments) {
  static const auto op = find_op<Tensor(const Tensor&, const Tensor&, int64_t)>("dsa_ops::segment_pool_backward");
  return op.call(grad_pooled, x, num_segments);
}

Tensor aggregate(const Tensor& x, const Tensor& weight, int64_t num_segments, bool identity) {
  static const auto op = find_op<Tensor(const Tensor&, const Tensor&, int64_t, bool)>("dsa_ops::aggregate");
  return op.call(x, weight, num_segments, identity);
}

Tensor aggregate_grad_input(const Tensor& grad_y, const Tensor& weight, const std::optional<Tensor>& grad_pooled,
                            int64_t num_segments, bool identity) {
  static const auto op = find_op<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, int64_t, bool)>(
      "dsa_ops::aggregate_grad_input");
  return op.call(grad_y, weight, grad_pooled, num_segments, identity);
}

Tensor aggregate_grad_weight(const Tensor& grad_y, const Tensor& x, int64_t num_segments, int64_t channels,
                             int64_t kernel_size) {
  static const auto op =
      find_op<Tensor(const Tensor&, const Tensor&, int64_t, int64_t, int64_t)>("dsa_ops::aggregate_grad_weight");
  return op.call(grad_y, x, num_segments, channels, kernel_size);
}

ForwardResult dsa_forward(const Tensor& x, const Tensor& first_weight, const Tensor& bn_weight,
                          const Tensor& bn_bias, const Tensor& running_mean, const Tensor& running_var,
                          const Tensor& second_weight, int64_t num_segments, int64_t channels, bool training,
                          double eps, bool identity) {
  static const auto op =
      find_op<ForwardResult(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, int64_t, int64_t, bool, double, bool)>("dsa_ops::dsa_forward");
  return op.call(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                 channels, training, eps, identity);
}

BackwardResult dsa_backward(const Tensor& grad_y, const Tensor& x, const Tensor& pooled, const Tensor& mean,
                            const Tensor& var, const Tensor& first_weight, const Tensor& bn_weight,
                            const Tensor& bn_bias, const Tensor& second_weight, int64_t num_segments, bool training,
                            double eps, bool identity) {
  static const auto op =
      find_op<BackwardResult(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, const Tensor&, const Tensor&, int64_t, bool, double, bool)>(
          "dsa_ops::dsa_backward");
  return op.call(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight, num_segments,
                 training, eps, identity);
}

}  // namespace ops

// t with the channels from C' on set to zero: the gradient of an op that ignores them.
Tensor processed_only(const Tensor& t, int64_t channels) {
  const int64_t rest = t.size(1) - channels;
  if (rest == 0) return t;
  return at::cat({t.narrow(1, 0, channels), at::zeros_like(t.narrow(1, channels, rest))}, 1);
}

struct SegmentPool : torch::autograd::Function<SegmentPool> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t num_segments, int64_t channels) {
    ctx->save_for_backward({x});
    ctx->saved_data["num_segments"] = num_segments;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return ops::segment_pool(x, num_segments, channels);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    return {ops::segment_pool_backward(grads[0], x, ctx->saved_data["num_segments"].toInt()), Tensor(),
            Tensor()};
  }
};

struct SegmentPoolBackward : torch::autograd::Function<SegmentPoolBackward> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad_pooled, const Tensor& x, int64_t num_segments) {
    ctx->saved_data["num_segments"] = num_segments;
    ctx->saved_data["channels"] = grad_pooled.size(1);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return ops::segment_pool_backward(grad_pooled, x, num_segments);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {ops::segment_pool(grads[0], ctx->saved_data["num_segments"].toInt(), ctx->saved_data["channels"].toInt()),
            Tensor(), Tensor()};
  }
};

struct Aggregate : torch::autograd::Function<Aggregate> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, int64_t num_segments,
                        bool identity) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["num_segments"] = num_segments;
    ctx->saved_data["identity"] = identity;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return ops::aggregate(x, weight, num_segments, identity);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1];
    const int64_t num_segments = ctx->saved_data["num_segments"].toInt();
    Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0)) {
      grad_x = ops::aggregate_grad_input(grads[0], weight, std::nullopt, num_segments,
                                         ctx->saved_data["identity"].toBool());
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = ops::aggregate_grad_weight(grads[0], x, num_segments, weight.size(1), weight.size(2))
                        .to(weight.scalar_type());
    }
    return {grad_x, grad_weight, Tensor(), Tensor()};
  }
};

struct AggregateGradInput : torch::autograd::Function<AggregateGradInput> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad_y, const Tensor& weight,
                        const std::optional<Tensor>& grad_pooled, int64_t num_segments, bool identity) {
    ctx->save_for_backward({grad_y, weight});
    ctx->saved_data["num_segments"] = num_segments;
    ctx->saved_data["identity"] = identity;
    ctx->saved_data["pooled_dtype"] = grad_pooled ? c10::IValue(grad_pooled->scalar_type()) : c10::IValue();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return ops::aggregate_grad_input(grad_y, weight, grad_pooled, num_segments, identity);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &grad_y = saved[0], &weight = saved[1];
    const int64_t num_segments = ctx->saved_data["num_segments"].toInt();
    const int64_t channels = weight.size(1);
    const auto& grad = grads[0];
    variable_list outs(5);
    if (ctx->needs_input_grad(0)) {
      outs[0] = ops::aggregate(grad, weight, num_segments, ctx->saved_data["identity"].toBool());
    }
    if (ctx->needs_input_grad(1)) {
      outs[1] = ops::aggregate_grad_weight(grad_y, grad, num_segments, channels, weight.size(2))
                    .to(weight.scalar_type());
    }
    const auto& pooled_dtype = ctx->saved_data["pooled_dtype"];
    if (!pooled_dtype.isNone() && ctx->needs_input_grad(2)) {
      outs[2] = ops::segment_pool(grad, num_segments, channels).to(pooled_dtype.toScalarType());
    }
    return outs;
  }
};

struct AggregateGradWeight : torch::autograd::Function<AggregateGradWeight> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad_y, const Tensor& x, int64_t num_segments,
                        int64_t channels, int64_t kernel_size) {
    ctx->save_for_backward({grad_y, x});
    ctx->saved_data["num_segments"] = num_segments;
    ctx->saved_data["channels"] = channels;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return ops::aggregate_grad_weight(grad_y, x, num_segments, channels, kernel_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &grad_y = saved[0], &x = saved[1];
    const int64_t num_segments = ctx->saved_data["num_segments"].toInt();
    const int64_t channels = ctx->saved_data["channels"].toInt();
    variable_list outs(5);
    if (ctx->needs_input_grad(0)) {
      outs[0] = processed_only(ops::aggregate(x, grads[0], num_segments, false), channels);
    }
    if (ctx->needs_input_grad(1)) {
      outs[1] = processed_only(ops::aggregate_grad_input(grad_y, grads[0], std::nullopt, num_segments, false),
                               channels);
    }
    return outs;
  }
};

// The module as one autograd node: y is differentiable in x and the generator's weights; pooled and the
// BatchNorm statistics are not (they are saved for the backward and the running-stat update).
struct DSAForward : torch::autograd::Function<DSAForward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& first_weight,
                               const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& running_mean,
                               const Tensor& running_var, const Tensor& second_weight, int64_t num_segments,
                               int64_t channels, bool training, double eps, bool identity) {
    Tensor y, pooled, mean, var;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(y, pooled, mean, var) =
          ops::dsa_forward(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                           num_segments, channels, training, eps, identity);
    }
    ctx->save_for_backward({x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight});
    ctx->saved_data["num_segments"] = num_segments;
    ctx->saved_data["training"] = training;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["identity"] = identity;
    ctx->mark_non_differentiable({pooled, mean, var});
    ctx->set_materialize_grads(false);
    return {y, pooled, mean, var};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list outs(12);
    if (!grads[0].defined()) return outs;
    const auto s = ctx->get_saved_variables();
    auto [grad_x, grad_first, grad_bn_weight, grad_bn_bias, grad_second] = ops::dsa_backward(
        grads[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], ctx->saved_data["num_segments"].toInt(),
        ctx->saved_data["training"].toBool(), ctx->saved_data["eps"].toDouble(), ctx->saved_data["identity"].toBool());
    outs[0] = grad_x;
    outs[1] = grad_first;
    outs[2] = grad_bn_weight;
    outs[3] = grad_bn_bias;
    outs[6] = grad_second;
    return outs;
  }
};

struct DSABackward : torch::autograd::Function<DSABackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad_y, const Tensor& x, const Tensor& pooled,
                               const Tensor& mean, const Tensor& var, const Tensor& first_weight,
                               const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& second_weight,
                               int64_t num_segments, bool training, double eps, bool identity) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_x, grad_first, grad_bn_weight, grad_bn_bias, grad_second] =
        ops::dsa_backward(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight,
                          num_segments, training, eps, identity);
    return {grad_x, grad_first, grad_bn_weight, grad_bn_bias, grad_second};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, "dsa_ops: double backward through the fused DSA op is not supported; use "
                "backend='reference' for higher-order gradients");
  }
};

// The Autograd kernels: each op through its autograd Function.
Tensor segment_pool_autograd(const Tensor& x, int64_t num_segments, int64_t channels) {
  return SegmentPool::apply(x, num_segments, channels);
}
Tensor segment_pool_backward_autograd(const Tensor& grad_pooled, const Tensor& x, int64_t num_segments) {
  return SegmentPoolBackward::apply(grad_pooled, x, num_segments);
}
Tensor aggregate_autograd(const Tensor& x, const Tensor& weight, int64_t num_segments, bool identity) {
  return Aggregate::apply(x, weight, num_segments, identity);
}
Tensor aggregate_grad_input_autograd(const Tensor& grad_y, const Tensor& weight,
                                     const std::optional<Tensor>& grad_pooled, int64_t num_segments, bool identity) {
  return AggregateGradInput::apply(grad_y, weight, grad_pooled, num_segments, identity);
}
Tensor aggregate_grad_weight_autograd(const Tensor& grad_y, const Tensor& x, int64_t num_segments,
                                      int64_t channels, int64_t kernel_size) {
  return AggregateGradWeight::apply(grad_y, x, num_segments, channels, kernel_size);
}
ForwardResult dsa_forward_autograd(
    const Tensor& x, const Tensor& first_weight, const Tensor& bn_weight, const Tensor& bn_bias,
    const Tensor& running_mean, const Tensor& running_var, const Tensor& second_weight, int64_t num_segments,
    int64_t channels, bool training, double eps, bool identity) {
  auto out = DSAForward::apply(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                               num_segments, channels, training, eps, identity);
  return {out[0], out[1], out[2], out[3]};
}
BackwardResult dsa_backward_autograd(
    const Tensor& grad_y, const Tensor& x, const Tensor& pooled, const Tensor& mean, const Tensor& var,
    const Tensor& first_weight, const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& second_weight,
    int64_t num_segments, bool training, double eps, bool identity) {
  auto out = DSABackward::apply(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight,
                                num_segments, training, eps, identity);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace
}  // namespace dsa_ops

// The in-place dsa_forward_ has no autograd (it refuses inputs that require grad).
TORCH_LIBRARY_IMPL(dsa_ops, Autograd, m) {
  m.impl("segment_pool", &dsa_ops::segment_pool_autograd);
  m.impl("segment_pool_backward", &dsa_ops::segment_pool_backward_autograd);
  m.impl("aggregate", &dsa_ops::aggregate_autograd);
  m.impl("aggregate_grad_input", &dsa_ops::aggregate_grad_input_autograd);
  m.impl("aggregate_grad_weight", &dsa_ops::aggregate_grad_weight_autograd);
  m.impl("dsa_forward", &dsa_ops::dsa_forward_autograd);
  m.impl("dsa_backward", &dsa_ops::dsa_backward_autograd);
}
