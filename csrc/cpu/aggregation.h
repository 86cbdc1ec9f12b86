#pragma once
// Aggregation along the segment axis on the CPU, one (video, channel block) at a time: the passthrough
// copy and the Aggregation whose block() aggregate.cpp runs over every block and eval_forward.cpp over
// one channel at a time, right after pooling it.
#include <ATen/OpMathType.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "plane_loop.h"

namespace dsa_ops::cpu {

// out[:, C':] = in[:, C':], one read and one write, line by line in parallel over rows.
template <typename scalar_t>
void copy_passthrough(const at::Tensor& in, const at::Tensor& out, int64_t channels) {
  if (channels == in.size(1)) return;
  const auto is = plane_strides(in);
  const auto os = plane_strides(out);
  const bool along_channels = lines_along_channels(is);
  const int64_t in_step = line_stride(is, along_channels);
  const int64_t out_step = line_stride(os, along_channels);
  const scalar_t* src = in.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  parallel_over_rows(in.size(0), channels, in.size(1), spatial_size(in), along_channels,
                     [&](int64_t row, const Line& line) {
                       const scalar_t* from = src + offset(is, row, line.channel, line.s);
                       scalar_t* to = dst + offset(os, row, line.channel, line.s);
                       if (in_step == 1 && out_step == 1) {
                         std::copy(from, from + line.length, to);
                       } else {
                         for (int64_t i = 0; i < line.length; ++i) to[i * out_step] = from[i * in_step];
                       }
                     });
}

// The weight of tap k at line position i: one value per tap for lines along s (a line is one channel),
// one per channel for lines along the channels (tap k's C' weights, contiguous).
template <typename acc_t>
struct TapScalars {
  const acc_t* w;  // (K)
  acc_t at(int k, int64_t) const { return w[k]; }
};

template <typename acc_t>
struct TapLines {
  const acc_t* w;  // (K, C'), at the line's first channel
  int64_t tap_stride;
  acc_t at(int k, int64_t i) const { return w[k * tap_stride + i]; }
};

// out[i] (+)= sum over kTaps taps k of weights.at(first + k, i) * rows[k * row_stride + i], the taps
// added in order to 0 or (kAccumulate) to out[i]: one pass over out with the taps in registers.
template <int kTaps, bool kAccumulate, typename acc_t, typename Weights>
inline void add_taps(acc_t* out, const acc_t* rows, int64_t row_stride, const Weights& weights, int first,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    acc_t a = kAccumulate ? out[i] : acc_t(0);
#pragma GCC unroll 4
    for (int k = 0; k < kTaps; ++k) a += weights.at(first + k, i) * rows[k * row_stride + i];
    out[i] = a;
  }
}

// out[i] = sum over taps k in [begin, end) of weights.at(k, i) * rows[(k - begin) * row_stride + i], in
// tap order, up to four taps per pass over out.
template <typename acc_t, typename Weights>
void sum_taps(acc_t* out, const acc_t* rows, int64_t row_stride, const Weights& weights, int begin, int end,
              int64_t n) {
  for_tap_groups(begin, end, [&](auto count, int k) {
    constexpr int kTaps = decltype(count)::value;
    const acc_t* r = rows + (k - begin) * row_stride;
    if (k == begin) {
      add_taps<kTaps, false>(out, r, row_stride, weights, k, n);
    } else {
      add_taps<kTaps, true>(out, r, row_stride, weights, k, n);
    }
  });
}

// out = sum_k weight[k] * x[u + k - P] (+ x when identity) (+ grad_pooled / S when given) on the first
// C' channels (grad_x is this on grad_y with the taps reversed), one (video, channel block) at a time
// (block(n, c0, c1)). Where x is float32 or float64 and unit-stride along the lines, the sums read x's
// rows in place, else the U rows of a line are first read into a (U, line) buffer in the accumulation
// type. Where out is also distinct from x and unit-stride, each output line is summed straight into
// out; otherwise (out may be x itself) the U output lines are summed into a second (U, line) buffer and
// stored once all of them are done. Lines along s read weight's values when block() runs; lines along
// the channels read a (N, K, C') copy made at construction.
// Memory plan: reads the block's C' channels of x once and writes them once; the U rows of a line stay
// in L1 while each output row sums its K taps in one pass.
template <typename scalar_t>
class Aggregation {
 public:
  using acc_t = at::opmath_type<scalar_t>;

  Aggregation(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments, bool identity,
              const std::optional<at::Tensor>& grad_pooled, const at::Tensor& out)
      : videos_(weight.size(0)),
        channels_(weight.size(1)),
        kernel_size_(weight.size(2)),
        num_segments_(num_segments),
        spatial_(spatial_size(x)),
        identity_(identity),
        xs_(plane_strides(x)),
        ys_(plane_strides(out)),
        along_channels_(lines_along_channels(xs_)),
        x_step_(line_stride(xs_, along_channels_)),
        y_step_(line_stride(ys_, along_channels_)),
        read_in_place_(std::is_same_v<scalar_t, acc_t> && x_step_ == 1),
        write_in_place_(read_in_place_ && y_step_ == 1 && !x.is_same(out)),
        by_tap_(along_channels_ ? weights_by_tap(weight) : weight),
        src_(x.const_data_ptr<scalar_t>()),
        w_(weight.const_data_ptr<acc_t>()),
        w_by_tap_(by_tap_.const_data_ptr<acc_t>()),
        pooled_(grad_pooled ? grad_pooled->const_data_ptr<acc_t>() : nullptr),
        dst_(out.mutable_data_ptr<scalar_t>()) {}

  int64_t videos() const { return videos_; }
  int64_t channels() const { return channels_; }
  bool along_channels() const { return along_channels_; }

  void block(int64_t n, int64_t c0, int64_t c1) const {
    const int64_t pad = (kernel_size_ - 1) / 2;
    const acc_t scale = acc_t(1) / static_cast<acc_t>(spatial_);
    // pooled_terms[u * kLineLength + (c - c0)] = grad_pooled[n, c, u] / S
    std::vector<acc_t> pooled_terms(pooled_ ? num_segments_ * kLineLength : 0);
    for (int64_t u = 0; pooled_ && u < num_segments_; ++u)
      for (int64_t c = c0; c < c1; ++c)
        pooled_terms[u * kLineLength + c - c0] = pooled_[(n * channels_ + c) * num_segments_ + u] * scale;
    std::vector<acc_t> staged(read_in_place_ ? 0 : num_segments_ * kLineLength);
    std::vector<acc_t> sums(write_in_place_ ? 0 : num_segments_ * kLineLength);
    for_each_line(c0, c1, spatial_, along_channels_, [&](const Line& line) {
      // rows[v * row_stride + i]: segment v of the line, in x or staged
      const acc_t* rows = staged.data();
      int64_t row_stride = kLineLength;
      if (read_in_place_) {
        rows = reinterpret_cast<const acc_t*>(src_ + offset(xs_, n * num_segments_, line.channel, line.s));
        row_stride = xs_.row;
      } else {
        for (int64_t v = 0; v < num_segments_; ++v) {
          load_line(staged.data() + v * kLineLength, src_ + offset(xs_, n * num_segments_ + v, line.channel, line.s),
                    x_step_, line.length);
        }
      }
      for (int64_t u = 0; u < num_segments_; ++u) {
        acc_t* acc = write_in_place_
                         ? reinterpret_cast<acc_t*>(dst_ + offset(ys_, n * num_segments_ + u, line.channel, line.s))
                         : sums.data() + u * kLineLength;
        const auto taps = valid_taps(u, num_segments_, kernel_size_);
        const acc_t* tap_rows = rows + (u + taps.begin - pad) * row_stride;
        const int begin = static_cast<int>(taps.begin), end = static_cast<int>(taps.end);
        if (along_channels_) {
          const TapLines<acc_t> weights{w_by_tap_ + n * kernel_size_ * channels_ + line.channel, channels_};
          sum_taps(acc, tap_rows, row_stride, weights, begin, end, line.length);
        } else {
          const TapScalars<acc_t> weights{w_ + (n * channels_ + line.channel) * kernel_size_};
          sum_taps(acc, tap_rows, row_stride, weights, begin, end, line.length);
        }
        if (identity_) {
          const acc_t* own = rows + u * row_stride;
          for (int64_t i = 0; i < line.length; ++i) acc[i] += own[i];
        }
        if (pooled_) {
          const acc_t* terms = pooled_terms.data() + u * kLineLength + (line.channel - c0);
          if (along_channels_) {
            for (int64_t i = 0; i < line.length; ++i) acc[i] += terms[i];
          } else {
            const acc_t term = terms[0];
            for (int64_t i = 0; i < line.length; ++i) acc[i] += term;
          }
        }
      }
      for (int64_t u = 0; !write_in_place_ && u < num_segments_; ++u) {
        store_line(dst_ + offset(ys_, n * num_segments_ + u, line.channel, line.s), y_step_,
                   sums.data() + u * kLineLength, line.length);
      }
    });
  }

 private:
  int64_t videos_, channels_, kernel_size_, num_segments_, spatial_;
  bool identity_;
  PlaneStrides xs_, ys_;
  bool along_channels_;
  int64_t x_step_, y_step_;
  bool read_in_place_, write_in_place_;
  at::Tensor by_tap_;  // (N, K, C') for lines along the channels
  const scalar_t* src_;
  const acc_t* w_;
  const acc_t* w_by_tap_;
  const acc_t* pooled_;
  scalar_t* dst_;
};

}  // namespace dsa_ops::cpu
