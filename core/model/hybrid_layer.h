// The TPTT linear-memory branch of a converted layer and its Memory-as-Gate mix (REFERENCE.md s.1):
//   o_l = RMS(S_t^T phi(q_t))  with S updated by the layer's operator from phi(k_t), v_t, b_t, a_t
//   o   = (1 - mu_h) o_s + mu_h o_l   per head
// q, k are taken BEFORE RoPE (after the model's own q/k norms); k, v are repeated to the q heads (GQA).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "core/model/feature_map.h"
#include "core/model/linear_attention.h"

namespace titand {

struct HybridParams {
  LinearOperator op = LinearOperator::kGatedDelta;
  FeatureMap feature_map = FeatureMap::kTptt;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  // Learned gates: b = sigmoid(x . w_b[h] + c_b[h]), a = sigmoid(x . w_a[h] + c_a[h]) from the layer input x.
  at::Tensor w_b, c_b, w_a, c_a;  // [H, hidden], [H]; undefined when constant
  double const_b = 1.0, const_a = 1.0;
  at::Tensor mu;                  // [H] in [0, 1]
  int64_t chunk_size = 64;
};

class HybridLayer {
 public:
  explicit HybridLayer(HybridParams p);
  const HybridParams& params() const { return p_; }
  // Moves the learned gates and mu to `device` (fp32 kept): called when the layer joins a model.
  void MoveTo(at::Device device);

  // x [T, hidden] (layer input after its norm), q [T, H, D], k, v [T, Hkv, D], o_softmax [T, H*D].
  // memory: [H, D, D] fp32, created on first use and updated in place. Returns [T, H*D].
  at::Tensor Mix(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const at::Tensor& o_softmax, at::Tensor& memory) const;

  // The decode step of B sequences (one token each), batched: x [B, hidden], q [B, H, D], k, v [B, Hkv, D],
  // o_softmax [B, H*D]; memories[b] is sequence b's S [H, D, D] fp32 (created when undefined), updated in
  // place. Equals Mix() run per sequence with T = 1. Returns [B, H*D].
  at::Tensor MixDecode(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& o_softmax, const std::vector<at::Tensor*>& memories) const;

  // The write strength b and decay a of B decode rows, x [B, hidden]: [B, H] fp32 each (strided views of one
  // [B, 2H] result when both are learned); undefined when the operator does not read them.
  std::pair<at::Tensor, at::Tensor> DecodeGates(const at::Tensor& x) const;

  // The linear branch alone, [T, H*D] (before the mix): for tests and diagnostics.
  at::Tensor LinearBranch(const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          at::Tensor& memory) const;

 private:
  // Gate `w`/`c` (or the constant) for x [N, hidden]: sigmoid(x w^T + c), [N, H] fp32.
  at::Tensor Gate(const at::Tensor& x, const at::Tensor& w, const at::Tensor& c, double constant) const;

  HybridParams p_;
  // Both learned gates as one projection ([2H, hidden], [2H]: beta rows then alpha rows) when the operator
  // reads both and both are learned (the decode step computes them with one matmul); else undefined.
  at::Tensor w_ba_, c_ba_;
};

}  // namespace titand
