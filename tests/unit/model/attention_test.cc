// CausalAttention: the fused SDPA path and the exact reference path against a per-query loop written
// from the definition (REFERENCE.md s.1 softmax branch: query i sees key j iff pos_j <= pos_i and, with a
// window W, pos_j > pos_i - W), at awkward sizes: GQA groups, windows, keys starting before the queries.
#include <cmath>
#include <optional>

#include <gtest/gtest.h>

#include "core/model/ops.h"

namespace titand {
namespace {

// o_i = sum_j softmax_j(q_i . k_j * scale) v_j over the visible keys, one query and head at a time (fp64).
at::Tensor NaiveAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t q_pos0,
                          int64_t k_pos0, std::optional<int64_t> window, double scale) {
  const int64_t T = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(0), L = k.size(1);
  at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  at::Tensor out = at::zeros({T, H, D}, at::kDouble);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t pi = q_pos0 + i;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / Hkv);
      std::vector<double> s;
      std::vector<int64_t> js;
      for (int64_t j = 0; j < L; ++j) {
        const int64_t pj = k_pos0 + j;
        if (pj > pi || (window && pj <= pi - *window)) continue;
        s.push_back((qd[i][h] * kd[g][j]).sum().item<double>() * scale);
        js.push_back(j);
      }
      double mx = -INFINITY, z = 0;
      for (double x : s) mx = std::max(mx, x);
      for (double& x : s) z += (x = std::exp(x - mx));
      for (size_t n = 0; n < js.size(); ++n) out[i][h] += vd[g][js[n]] * (s[n] / z);
    }
  }
  return out.reshape({T, H * D});
}

struct Case {
  int64_t T, H, Hkv, D, L, q_pos0, k_pos0;
  std::optional<int64_t> window;
};

TEST(CausalAttention, SdpaAndReferenceEqualThePerQueryDefinition) {
  const Case cases[] = {
      {1, 4, 4, 8, 1, 0, 0, std::nullopt},   // first token
      {7, 6, 2, 16, 7, 0, 0, std::nullopt},  // prefill, GQA 3
      {1, 9, 3, 8, 12, 11, 0, std::nullopt}, // decode over a full cache
      {5, 4, 1, 8, 9, 20, 16, 5},            // windowed chunk: keys from before the chunk, MQA
      {1, 4, 2, 8, 4, 30, 27, 5},            // windowed decode over a trimmed cache (no mask needed)
      {13, 8, 4, 12, 20, 7, 0, 6},           // window smaller than the chunk
  };
  at::manual_seed(7);
  for (const Case& c : cases) {
    at::Tensor q = at::randn({c.T, c.H, c.D});
    at::Tensor k = at::randn({c.Hkv, c.L, c.D});
    at::Tensor v = at::randn({c.Hkv, c.L, c.D});
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
    at::Tensor want = NaiveAttention(q, k, v, c.q_pos0, c.k_pos0, c.window, scale).to(at::kFloat);
    for (AttentionImpl impl : {AttentionImpl::kReference, AttentionImpl::kSdpa}) {
      at::Tensor got = CausalAttention(q, k, v, c.q_pos0, c.k_pos0, c.window, scale, impl);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT((got - want).abs().max().item<float>(), 2e-5)
          << "impl " << static_cast<int>(impl) << " T=" << c.T << " L=" << c.L << " window=" << c.window.value_or(-1);
    }
  }
}

TEST(CausalAttention, Bfloat16SdpaStaysCloseToFp32Reference) {
  at::manual_seed(3);
  at::Tensor q = at::randn({6, 8, 64}), k = at::randn({2, 10, 64}), v = at::randn({2, 10, 64});
  const double scale = 0.125;
  at::Tensor ref = CausalAttention(q, k, v, 4, 0, 6, scale, AttentionImpl::kReference);
  at::Tensor got = CausalAttention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), 4, 0, 6, scale,
                                   AttentionImpl::kSdpa);
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_LT((got.to(at::kFloat) - ref).abs().max().item<float>(), 5e-2);
}

}  // namespace
}  // namespace titand
