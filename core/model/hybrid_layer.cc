#include "core/model/hybrid_layer.h"

#include "core/model/ops.h"

namespace titand {

HybridLayer::HybridLayer(HybridParams p) : p_(std::move(p)) { MoveTo(p_.mu.defined() ? p_.mu.device() : at::kCPU); }

void HybridLayer::MoveTo(at::Device device) {
  for (at::Tensor* t : {&p_.w_b, &p_.c_b, &p_.w_a, &p_.c_a, &p_.mu}) {
    if (t->defined()) *t = t->to(device);
  }
  if (UsesBeta(p_.op) && UsesAlpha(p_.op) && p_.w_b.defined() && p_.w_a.defined() && p_.c_b.defined() &&
      p_.c_a.defined()) {
    w_ba_ = at::cat({p_.w_b, p_.w_a}, 0).to(at::kFloat);
    c_ba_ = at::cat({p_.c_b, p_.c_a}, 0).to(at::kFloat);
  }
}

at::Tensor HybridLayer::Gate(const at::Tensor& x, const at::Tensor& w, const at::Tensor& c, double constant) const {
  if (w.defined()) return at::sigmoid(at::linear(x.to(at::kFloat), w, c));
  return at::full({x.size(0), p_.num_heads}, constant, at::TensorOptions().dtype(at::kFloat).device(x.device()));
}

at::Tensor HybridLayer::LinearBranch(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, at::Tensor& memory) const {
  const int64_t T = q.size(0), H = p_.num_heads, D = p_.head_dim;
  const int64_t G = H / p_.num_kv_heads;
  // [T, H, D] -> [H, T, D]; k, v repeated to the q heads (kv head j serves q heads j*G .. j*G+G-1).
  at::Tensor qh = ApplyFeatureMap(p_.feature_map, q).transpose(0, 1);
  at::Tensor kh = ApplyFeatureMap(p_.feature_map, k.repeat_interleave(G, 1)).transpose(0, 1);
  at::Tensor vh = v.repeat_interleave(G, 1).transpose(0, 1);
  at::Tensor beta, alpha;  // [H, T]
  if (UsesBeta(p_.op)) beta = Gate(x, p_.w_b, p_.c_b, p_.const_b).transpose(0, 1).contiguous();
  if (UsesAlpha(p_.op)) alpha = Gate(x, p_.w_a, p_.c_a, p_.const_a).transpose(0, 1).contiguous();
  if (!memory.defined()) {
    memory = at::zeros({H, D, D}, at::TensorOptions().dtype(at::kFloat).device(x.device()));
  }
  at::Tensor o = T == 1 ? LinearAttentionRecurrent(p_.op, qh, kh, vh, beta, alpha, memory)
                        : LinearAttentionChunked(p_.op, qh, kh, vh, beta, alpha, memory, p_.chunk_size);
  // Per-head parameter-free RMS normalisation, then back to [T, H*D].
  return RmsNormNoWeight(o, 1e-6).transpose(0, 1).reshape({T, H * D});
}

at::Tensor HybridLayer::Mix(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& o_softmax, at::Tensor& memory) const {
  const int64_t T = q.size(0), H = p_.num_heads, D = p_.head_dim;
  at::Tensor o_l = LinearBranch(x, q, k, v, memory).view({T, H, D});
  at::Tensor mu = p_.mu.to(o_softmax.scalar_type()).view({1, H, 1});
  at::Tensor o_s = o_softmax.view({T, H, D});
  return ((1 - mu) * o_s + mu * o_l).reshape({T, H * D});
}

std::pair<at::Tensor, at::Tensor> HybridLayer::DecodeGates(const at::Tensor& x) const {
  const int64_t H = p_.num_heads;
  at::Tensor beta, alpha;
  if (w_ba_.defined()) {
    at::Tensor ba = at::sigmoid(at::linear(x.to(at::kFloat), w_ba_, c_ba_));
    beta = ba.narrow(1, 0, H);
    alpha = ba.narrow(1, H, H);
  } else {
    if (UsesBeta(p_.op)) beta = Gate(x, p_.w_b, p_.c_b, p_.const_b);
    if (UsesAlpha(p_.op)) alpha = Gate(x, p_.w_a, p_.c_a, p_.const_a);
  }
  return {beta, alpha};
}

at::Tensor HybridLayer::MixDecode(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, const at::Tensor& o_softmax,
                                  const std::vector<at::Tensor*>& memories) const {
  const int64_t B = q.size(0), H = p_.num_heads, D = p_.head_dim;
  const int64_t G = H / p_.num_kv_heads;
  TORCH_CHECK(static_cast<int64_t>(memories.size()) == B, "MixDecode: ", memories.size(), " memories for ", B,
              " rows");
  // phi is per row, so phi(k) is computed on the kv heads and repeated after; T = 1 per sequence.
  auto repeat = [&](const at::Tensor& t) {  // [B, Hkv, D] -> [B, H, D], kv head j serves q heads jG .. jG+G-1
    return G == 1 ? t : t.unsqueeze(2).expand({B, p_.num_kv_heads, G, D}).reshape({B, H, D});
  };
  at::Tensor qh = ApplyFeatureMap(p_.feature_map, q);
  at::Tensor kh = repeat(ApplyFeatureMap(p_.feature_map, k));
  at::Tensor vh = repeat(v);
  auto [beta, alpha] = DecodeGates(x);  // [B, H] each
  auto fopt = at::TensorOptions().dtype(at::kFloat).device(x.device());
  for (at::Tensor* m : memories) {
    if (!m->defined()) *m = at::zeros({H, D, D}, fopt);
  }
  at::Tensor o = LinearAttentionDecodeStep(p_.op, qh, kh, vh, beta, alpha, memories);  // [B, H, D]
  at::Tensor o_l = RmsNormNoWeight(o, 1e-6).view({B, H, D});
  // (1 - mu) o_s + mu o_l == lerp(o_s, o_l, mu)
  return at::lerp(o_softmax.view({B, H, D}), o_l, p_.mu.to(o_softmax.scalar_type()).view({1, H, 1}))
      .reshape({B, H * D});
}

}  // namespace titand
