#include "core/model/ops.h"

#include <cmath>
#include <limits>

namespace titand {

at::Tensor RmsNormNoWeight(const at::Tensor& x, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (xf * inv).to(x.scalar_type());
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return weight * RmsNormNoWeight(x, eps);
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

at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t q_pos0,
                           int64_t k_pos0, std::optional<int64_t> window, double scale) {
  const int64_t T = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t Hkv = k.size(0), L = k.size(1);
  const int64_t G = H / Hkv;
  // [T, H, D] -> [Hkv, G, T, D]
  at::Tensor qg = q.view({T, Hkv, G, D}).permute({1, 2, 0, 3});
  at::Tensor scores = at::matmul(qg, k.unsqueeze(1).transpose(-1, -2)).to(at::kFloat) * scale;  // [Hkv,G,T,L]
  // The mask is needed unless every key is visible to every query (single-token decode over a trimmed cache).
  const int64_t first_q = q_pos0, last_k = k_pos0 + L - 1;
  bool need_mask = last_k > first_q;
  if (window && (q_pos0 + T - 1) - k_pos0 >= *window) need_mask = true;
  if (need_mask) {
    auto lopt = at::TensorOptions().dtype(at::kLong).device(q.device());
    at::Tensor qp = at::arange(q_pos0, q_pos0 + T, lopt).unsqueeze(1);
    at::Tensor kp = at::arange(k_pos0, k_pos0 + L, lopt).unsqueeze(0);
    at::Tensor visible = kp <= qp;
    if (window) visible = visible & (kp > qp - *window);
    scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  at::Tensor out = at::matmul(probs, v.unsqueeze(1));  // [Hkv, G, T, D]
  return out.permute({2, 0, 1, 3}).reshape({T, H * D});
}

}  // namespace titand
