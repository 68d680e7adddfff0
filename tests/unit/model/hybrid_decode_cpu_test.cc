// The fused CPU decode step (core/model/hybrid_decode_cpu.h) against LibTorch's step by step path
// (WindowAttentionDecode with kReference + HybridLayer::MixDecode), which the model tests check against the
// per-sequence prefill, the Python reference and Transformers. Sequences join a batch at different times so
// one step mixes young caches, caches about to fill and rings; every operator, feature map, gate kind, sinks
// or none, GQA or not, the plain window (no hybrid), both instruction-set paths.
#include <gtest/gtest.h>

#include <algorithm>

#include <c10/util/Exception.h>

#include "core/model/hybrid_decode_cpu.h"
#include "core/model/ops.h"

namespace titand {
namespace {

struct Case {
  LinearOperator op;
  FeatureMap map;
  bool learned_gates;
  int64_t sinks;
  int64_t kv_heads;  // of 4 query heads
  bool hybrid;
  bool strided_gates = false;  // gate weights LibTorch must compute (not contiguous rows)
};

std::string Name(const Case& c) {
  return ToString(c.op) + "/" + ToString(c.map) + (c.learned_gates ? "/learned" : "/constant") + "/sinks" +
         std::to_string(c.sinks) + "/kv" + std::to_string(c.kv_heads) + (c.hybrid ? "" : "/window-only") +
         (c.strided_gates ? "/strided-gates" : "");
}

constexpr int64_t kH = 4, kD = 8, kHidden = 12, kWindow = 5;

std::unique_ptr<HybridLayer> MakeLayer(const Case& c) {
  HybridParams p;
  p.op = c.op;
  p.feature_map = c.map;
  p.num_heads = kH;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = kD;
  if (c.learned_gates) {
    auto weight = [&] {
      return c.strided_gates ? (at::randn({kHidden, kH}) * 0.3).t() : at::randn({kH, kHidden}) * 0.3;
    };
    p.w_b = weight();
    p.c_b = at::randn({kH});
    p.w_a = weight();
    p.c_a = at::randn({kH}) + 2.0;
  } else {
    p.const_b = 0.6;
    p.const_a = 0.85;
  }
  p.mu = at::rand({kH}) * 0.8 + 0.1;
  return std::make_unique<HybridLayer>(p);
}

float MaxDiff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<float>(); }

// |a - b| relative to b's scale (memories of unnormalised feature maps grow past 1): float rounding of two
// summation orders stays well under 2e-6 of the largest entry.
float RelDiff(const at::Tensor& a, const at::Tensor& b) {
  return MaxDiff(a, b) / std::max(1.0f, b.abs().max().item<float>());
}

// Sequence s joins the batch at step 3 s and then decodes every step; the fused and the reference states
// evolve side by side and are compared after every step (outputs, ordered caches, memories).
void RunCase(const Case& c, bool portable) {
  SCOPED_TRACE(Name(c) + (portable ? " portable" : " native"));
  at::manual_seed(11);
  UsePortableFusedDecode(portable);
  const std::unique_ptr<HybridLayer> layer = c.hybrid ? MakeLayer(c) : nullptr;
  const HybridLayer* hybrid = layer.get();
  const SinkWindow sw{kWindow, c.sinks};
  const at::Tensor inv_freq = RopeInvFreq(kD, 10000.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kD));
  constexpr int kSeqs = 4, kSteps = 20;
  std::vector<LayerState> fused(kSeqs), ref(kSeqs);
  std::vector<int64_t> pos(kSeqs, 0);
  for (int step = 0; step < kSteps; ++step) {
    std::vector<int> who;
    for (int s = kSeqs - 1; s >= 0; --s) {  // reversed: batch rows are not sequence order
      if (step >= 3 * s) who.push_back(s);
    }
    const int64_t B = static_cast<int64_t>(who.size());
    at::Tensor x = at::randn({B, kHidden});
    at::Tensor q = at::randn({B, kH, kD});
    at::Tensor k = at::randn({B, c.kv_heads, kD});
    at::Tensor v = at::randn({B, c.kv_heads, kD});
    std::vector<int64_t> positions;
    for (int s : who) positions.push_back(pos[s]);
    const at::Tensor p = at::tensor(positions, at::kLong);
    auto [cos, sin] = RopeCosSin(inv_freq, p, at::kFloat);
    at::Tensor q_rot = ApplyRope(q, cos, sin), k_rot = ApplyRope(k, cos, sin);
    std::vector<LayerState*> fs, rs;
    std::vector<at::Tensor*> memories;
    for (int s : who) {
      fs.push_back(&fused[s]);
      rs.push_back(&ref[s]);
      memories.push_back(&ref[s].memory);
    }
    ASSERT_TRUE(FusedDecodeSupported(fs, q, hybrid));
    at::Tensor got = FusedWindowDecodeCpu(fs, positions, x, q, k, v, cos, sin, sw, inv_freq, scale, hybrid);
    at::Tensor want = WindowAttentionDecode(rs, positions, q, q_rot, k_rot, v, sw, inv_freq, scale,
                                            AttentionImpl::kReference);
    if (hybrid != nullptr) want = hybrid->MixDecode(x, q, k, v, want, memories);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(RelDiff(got, want), 2e-6) << "step " << step;
    for (int s : who) {
      ++pos[s];
      ASSERT_EQ(fused[s].len, ref[s].len) << "sequence " << s;
      ASSERT_EQ(fused[s].in_order(), ref[s].in_order()) << "sequence " << s;
      auto [fk, fv] = fused[s].OrderedKv();
      auto [rk, rv] = ref[s].OrderedKv();
      EXPECT_TRUE(at::equal(fk, rk)) << "sequence " << s << " step " << step;
      EXPECT_TRUE(at::equal(fv, rv)) << "sequence " << s << " step " << step;
      if (hybrid != nullptr) {
        EXPECT_LT(RelDiff(fused[s].memory, ref[s].memory), 2e-6) << "sequence " << s << " step " << step;
      } else {
        EXPECT_FALSE(fused[s].memory.defined());
      }
    }
  }
  // Every sequence went past W + N_s (the last joined 11 steps before the end): the last steps ran on rings.
  for (int s = 0; s < kSeqs; ++s) EXPECT_FALSE(fused[s].in_order()) << "sequence " << s;
  UsePortableFusedDecode(false);
}

TEST(FusedDecodeCpu, EqualsTheStepByStepPathForEveryVariant) {
  std::vector<Case> cases;
  for (LinearOperator op :
       {LinearOperator::kLinear, LinearOperator::kGated, LinearOperator::kDelta, LinearOperator::kGatedDelta}) {
    cases.push_back({op, FeatureMap::kTptt, true, 3, 2, true});
    cases.push_back({op, FeatureMap::kTptt, false, 0, 4, true});
  }
  cases.push_back({LinearOperator::kGatedDelta, FeatureMap::kTptt, true, 3, 2, true, /*strided_gates=*/true});
  for (FeatureMap map : {FeatureMap::kElu, FeatureMap::kIdentity}) {
    cases.push_back({LinearOperator::kGatedDelta, map, true, 2, 1, true});
  }
  cases.push_back({LinearOperator::kGatedDelta, FeatureMap::kTptt, true, 0, 2, false});
  cases.push_back({LinearOperator::kGatedDelta, FeatureMap::kTptt, true, 3, 2, false});
  for (const Case& c : cases) {
    for (bool portable : {false, true}) RunCase(c, portable);
  }
}

// The head dim need not be a multiple of the vector width (tails), and rows of the inputs may be strided
// (slices of one fused qkv projection, as the model passes them).
TEST(FusedDecodeCpu, OddHeadDimAndStridedRows) {
  at::manual_seed(5);
  constexpr int64_t H = 3, Hkv = 1, D = 14, B = 2;
  HybridParams hp;
  hp.num_heads = H;
  hp.num_kv_heads = Hkv;
  hp.head_dim = D;
  hp.mu = at::full({H}, 0.3);
  HybridLayer layer(hp);
  const SinkWindow sw{4, 2};
  const at::Tensor inv_freq = RopeInvFreq(D, 10000.0);
  std::vector<LayerState> fused(B), ref(B);
  for (int step = 0; step < 9; ++step) {
    at::Tensor qkv = at::randn({B, (H + 2 * Hkv) * D});
    at::Tensor q = qkv.narrow(1, 0, H * D).view({B, H, D});
    at::Tensor k = qkv.narrow(1, H * D, Hkv * D).view({B, Hkv, D});
    at::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({B, Hkv, D});
    at::Tensor x = at::randn({B, 5});
    std::vector<int64_t> positions(B, step);
    auto [cos, sin] = RopeCosSin(inv_freq, at::tensor(positions, at::kLong), at::kFloat);
    at::Tensor q_rot = ApplyRope(q, cos, sin), k_rot = ApplyRope(k, cos, sin);
    std::vector<LayerState*> fs = {&fused[0], &fused[1]}, rs = {&ref[0], &ref[1]};
    std::vector<at::Tensor*> memories = {&ref[0].memory, &ref[1].memory};
    at::Tensor got = FusedWindowDecodeCpu(fs, positions, x, q, k, v, cos, sin, sw, inv_freq, 0.25, &layer);
    at::Tensor o_s =
        WindowAttentionDecode(rs, positions, q, q_rot, k_rot, v, sw, inv_freq, 0.25, AttentionImpl::kReference);
    at::Tensor want = layer.MixDecode(x, q, k, v, o_s, memories);
    EXPECT_LT(MaxDiff(got, want), 2e-5) << "step " << step;
  }
}

// What the model's dispatch relies on: other dtypes fall back, and a state that does not match its position
// is refused before anything is written.
TEST(FusedDecodeCpu, UnsupportedInputsFallBackAndBadStatesAreRefused) {
  HybridParams hp;
  hp.num_heads = 2;
  hp.num_kv_heads = 2;
  hp.head_dim = 4;
  hp.mu = at::full({2}, 0.5);
  HybridLayer layer(hp);
  LayerState st;
  std::vector<LayerState*> states = {&st};
  EXPECT_TRUE(FusedDecodeSupported(states, at::zeros({1, 2, 4}), &layer));
  EXPECT_FALSE(FusedDecodeSupported(states, at::zeros({1, 2, 4}, at::kBFloat16), &layer));
  EXPECT_TRUE(FusedDecodeSupported(states, at::zeros({1, 2, 4}), nullptr));
  LayerState half;
  half.k = at::zeros({2, 3, 4}, at::kBFloat16);
  half.v = at::zeros({2, 3, 4}, at::kBFloat16);
  std::vector<LayerState*> bf = {&half};
  EXPECT_FALSE(FusedDecodeSupported(bf, at::zeros({1, 2, 4}), &layer));

  at::Tensor q = at::randn({1, 2, 4}), k = at::randn({1, 2, 4}), v = at::randn({1, 2, 4}), x = at::randn({1, 3});
  const at::Tensor inv_freq = RopeInvFreq(4, 10000.0);
  // No entries, but position 3 claims three tokens were processed.
  auto [cos, sin] = RopeCosSin(inv_freq, at::tensor({int64_t{3}}, at::kLong), at::kFloat);
  EXPECT_THROW(FusedWindowDecodeCpu(states, {3}, x, q, k, v, cos, sin, {4, 0}, inv_freq, 0.5, &layer), c10::Error);
  EXPECT_FALSE(st.k.defined());
  EXPECT_EQ(st.len, 0);
  // One bad state in a batch: refused before the good one is touched.
  LayerState good, bad;
  std::vector<LayerState*> one = {&good};
  at::Tensor x1 = at::randn({1, 3});
  auto [cos0, sin0] = RopeCosSin(inv_freq, at::tensor({int64_t{0}}, at::kLong), at::kFloat);
  FusedWindowDecodeCpu(one, {0}, x1, q, k, v, cos0, sin0, {4, 0}, inv_freq, 0.5, &layer);
  const at::Tensor k_before = good.k.clone(), s_before = good.memory.clone();
  std::vector<LayerState*> pair = {&good, &bad};
  auto [cos2, sin2] = RopeCosSin(inv_freq, at::tensor({int64_t{1}, int64_t{2}}, at::kLong), at::kFloat);
  EXPECT_THROW(FusedWindowDecodeCpu(pair, {1, 2}, at::randn({2, 3}), at::randn({2, 2, 4}), at::randn({2, 2, 4}),
                                    at::randn({2, 2, 4}), cos2, sin2, {4, 0}, inv_freq, 0.5, &layer),
               c10::Error);
  EXPECT_EQ(good.len, 1);
  EXPECT_TRUE(at::equal(good.k, k_before));
  EXPECT_TRUE(at::equal(good.memory, s_before));
  // Shapes that do not fit the layer.
  at::Tensor q3 = at::randn({1, 3, 4});
  EXPECT_THROW(FusedWindowDecodeCpu(states, {0}, x, q3, k, v, cos, sin, {4, 0}, inv_freq, 0.5, &layer), c10::Error);
}

}  // namespace
}  // namespace titand
