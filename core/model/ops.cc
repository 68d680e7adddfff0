#include "core/model/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace titand {

namespace {

// float32 on the CPU: one call instead of LibTorch's (at::rms_norm took ~12 us for one 576-wide decode
// row, 34 us under the op profiler; RmsNormNoWeight's pow/mean/rsqrt/mul chain was ~7 dispatches; this
// takes ~1 us; BENCHMARKS.md, issue 9 session 6): per row, the mean of squares
// accumulated in double, then y = (x * inv_rms) * w in float, on the calling thread (splitting rows across
// the intra-op pool measured ~10% slower f32 decode: the rows are too short, session 7). Each row is computed
// the same way whatever the batch, so a sequence normalises identically alone and in a batch.
bool UseRowKernel(const at::Tensor& x, const at::Tensor* weight) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 1 || x.size(-1) == 0) return false;
  return weight == nullptr ||
         (weight->device().is_cpu() && weight->scalar_type() == at::kFloat && weight->dim() == 1 &&
          weight->size(0) == x.size(-1));
}

at::Tensor RmsNormRows(const at::Tensor& x, const at::Tensor* weight, double eps) {
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = weight ? weight->contiguous() : at::Tensor();
  at::Tensor y = at::empty_like(xc);
  const int64_t d = xc.size(-1), rows = xc.numel() / d;
  const float* xp = xc.data_ptr<float>();
  const float* wp = weight ? wc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * d;
    float* out = yp + r * d;
    // Four partial sums (a fixed order for every row): the adds are not one serial dependency chain.
    double part[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
      for (int j = 0; j < 4; ++j) part[j] += static_cast<double>(in[i + j]) * in[i + j];
    }
    for (; i < d; ++i) part[0] += static_cast<double>(in[i]) * in[i];
    const double ss = (part[0] + part[1]) + (part[2] + part[3]);
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    if (wp) {
      for (int64_t k = 0; k < d; ++k) out[k] = (in[k] * inv) * wp[k];
    } else {
      for (int64_t k = 0; k < d; ++k) out[k] = in[k] * inv;
    }
  }
  return y;
}

}  // namespace

at::Tensor RmsNormNoWeight(const at::Tensor& x, double eps) {
  if (UseRowKernel(x, nullptr)) return RmsNormRows(x, nullptr, eps);
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (xf * inv).to(x.scalar_type());
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (UseRowKernel(x, &weight)) return RmsNormRows(x, &weight, eps);
  if (x.scalar_type() == at::kFloat) {
    return at::rms_norm(x, {x.size(-1)}, weight, eps);  // one fused call; same math in fp32
  }
  return weight * RmsNormNoWeight(x, eps);  // bf16/fp16: round to x's dtype before the weight, as HF does
}

at::Tensor RopeInvFreq(int64_t head_dim, double theta) {
  at::Tensor idx = at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat);
  return 1.0 / at::pow(at::scalar_tensor(theta, at::kFloat), idx / static_cast<double>(head_dim));
}

std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& inv_freq, const at::Tensor& positions,
                                            at::ScalarType dtype) {
  at::Tensor angles = positions.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);  // [N, D/2]
  at::Tensor emb = at::cat({angles, angles}, -1).unsqueeze(1);                         // [N, 1, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

namespace {

// Which key each query sees, [T, L] bool; undefined when every key is visible to every query (e.g. a
// single-token decode over a trimmed cache), so no mask needs to be built.
at::Tensor VisibleMask(int64_t T, int64_t L, int64_t q_pos0, int64_t k_pos0, std::optional<int64_t> window,
                       at::Device device) {
  const int64_t first_q = q_pos0, last_k = k_pos0 + L - 1;
  bool need_mask = last_k > first_q;
  if (window && (q_pos0 + T - 1) - k_pos0 >= *window) need_mask = true;
  if (!need_mask) return at::Tensor();
  auto lopt = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor qp = at::arange(q_pos0, q_pos0 + T, lopt).unsqueeze(1);
  at::Tensor kp = at::arange(k_pos0, k_pos0 + L, lopt).unsqueeze(0);
  at::Tensor visible = kp <= qp;
  if (window) visible = visible & (kp > qp - *window);
  return visible;
}

}  // namespace

at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t q_pos0,
                           int64_t k_pos0, std::optional<int64_t> window, double scale, AttentionImpl impl) {
  const int64_t T = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t Hkv = k.size(0), L = k.size(1);
  const int64_t G = H / Hkv;
  at::Tensor visible = VisibleMask(T, L, q_pos0, k_pos0, window, q.device());
  if (impl == AttentionImpl::kSdpa) {
    // [1, H, T, D] x [1, Hkv, L, D]: SDPA repeats each kv head for its G query heads (enable_gqa).
    at::Tensor out = at::scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
        visible.defined() ? std::optional<at::Tensor>(visible) : std::nullopt, /*dropout_p=*/0.0,
        /*is_causal=*/false, scale, /*enable_gqa=*/G > 1);
    return out.squeeze(0).transpose(0, 1).reshape({T, H * D});
  }
  // [T, H, D] -> [Hkv, G, T, D]
  at::Tensor qg = q.view({T, Hkv, G, D}).permute({1, 2, 0, 3});
  at::Tensor scores = at::matmul(qg, k.unsqueeze(1).transpose(-1, -2)).to(at::kFloat) * scale;  // [Hkv,G,T,L]
  if (visible.defined()) {
    scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  at::Tensor out = at::matmul(probs, v.unsqueeze(1));  // [Hkv, G, T, D]
  return out.permute({2, 0, 1, 3}).reshape({T, H * D});
}

}  // namespace titand
