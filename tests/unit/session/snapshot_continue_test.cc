// A restored cursor continues exactly like the original: a small random-weight model with a plain
// layer, a TPTT hybrid layer (window 4 + gated-delta memory) and another plain layer runs a prefill,
// its cursor is snapshotted and restored, then both copies take the same decode steps and chunk;
// logits and final snapshots must be bit-identical (fp32 and bf16 models).
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "core/model/causal_lm.h"
#include "core/session/snapshot.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand {
namespace {

ModelConfig TinyConfig() { return testing::TinyLlamaConfig(/*vocab_size=*/97, /*num_layers=*/3); }

std::unique_ptr<CausalLM> MakeModel(at::ScalarType dtype) {
  const ModelConfig c = TinyConfig();
  auto w = testing::RandomLlamaWeights(c, /*seed=*/21, /*scale=*/0.3);
  auto src = MakeMapWeights(std::move(w));
  auto m = CausalLM::Create(c, *src, ModelOptions{dtype, at::kCPU});
  EXPECT_TRUE(m.ok()) << m.status();
  (*m)->SetHybrid(1, testing::TinyGatedDeltaLayer(c, /*mu=*/0.3, /*const_b=*/0.7, /*const_a=*/0.9, /*chunk_size=*/4),
                  /*window=*/4);
  return std::move(m).value();
}

at::Tensor Step(CausalLM& m, SequenceState& st, std::vector<int32_t> tokens) {
  std::vector<ForwardInput> in(1);
  in[0].tokens = std::move(tokens);
  in[0].state = &st;
  in[0].all_logits = true;
  auto out = m.Forward(in);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : at::Tensor();
}

TEST(SnapshotContinue, RestoredCursorContinuesBitIdentically) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const std::string dname = dtype == at::kFloat ? "float32" : "bfloat16";
    SCOPED_TRACE(dname);
    auto m = MakeModel(dtype);
    const SnapshotBinding b{"tiny@0000000000000000", "tptt-test", 3, 2, 8, dname};
    SessionCursor a{m->NewState(), {}};
    Step(*m, a.state, {5, 17, 33, 2, 90, 41, 8, 66, 12});
    a.pending = {29};
    ASSERT_NE(a.state.layers[1].len, a.state.layers[0].len);  // window kept fewer entries
    ASSERT_TRUE(a.state.layers[1].memory.defined());

    auto bytes = SerializeCursor(a, b);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto restored = DeserializeCursor(*bytes, b, at::kCPU);
    ASSERT_TRUE(restored.ok()) << restored.status();
    SessionCursor c = std::move(restored).value();
    EXPECT_EQ(c.ByteSize(), a.ByteSize());

    // Both take the pending token, three single-token steps, then a 5-token chunk.
    std::vector<std::vector<int32_t>> steps = {{29}, {3}, {71}, {44}, {9, 10, 11, 12, 13}};
    for (size_t s = 0; s < steps.size(); ++s) {
      at::Tensor la = Step(*m, a.state, steps[s]);
      at::Tensor lc = Step(*m, c.state, steps[s]);
      ASSERT_TRUE(la.defined() && lc.defined());
      EXPECT_TRUE(at::equal(la, lc)) << "step " << s << " max diff " << (la - lc).abs().max().item<float>();
    }
    a.pending.clear();
    c.pending.clear();
    auto sa = SerializeCursor(a, b);
    auto sc = SerializeCursor(c, b);
    ASSERT_TRUE(sa.ok() && sc.ok());
    EXPECT_TRUE(*sa == *sc);
  }
}

// A window cache in the ring layout (left by decode steps, core/model/sequence_state.h) is written in
// order: the snapshot of a decoded sequence holds the same entries as that of the sequence prefilled at
// once, and the restored cursor (in order) continues like the original (still a ring). Not bit for bit:
// the two caches hold the same keys in different slots, so the softmax sums them in another order.
TEST(SnapshotContinue, RingLayoutIsWrittenInOrder) {
  auto m = MakeModel(at::kFloat);
  const SnapshotBinding b{"tiny@0000000000000000", "tptt-test", 3, 2, 8, "float32"};
  const std::vector<int32_t> ids = {5, 17, 33, 2, 90, 41, 8, 66, 12, 29, 3, 71};
  SessionCursor a{m->NewState(), {}}, once{m->NewState(), {}};
  Step(*m, a.state, std::vector<int32_t>(ids.begin(), ids.begin() + 6));
  for (size_t i = 6; i < ids.size(); ++i) Step(*m, a.state, {ids[i]});
  ASSERT_FALSE(a.state.layers[1].in_order());
  ASSERT_EQ(a.state.layers[1].ring_next, 1);  // the ring has turned: newest entry in slot 0, oldest in 2
  Step(*m, once.state, ids);
  auto sa = SerializeCursor(a, b);
  auto so = SerializeCursor(once, b);
  ASSERT_TRUE(sa.ok() && so.ok()) << sa.status() << so.status();
  auto ra = DeserializeCursor(*sa, b, at::kCPU);
  auto ro = DeserializeCursor(*so, b, at::kCPU);
  ASSERT_TRUE(ra.ok() && ro.ok());
  for (int li = 0; li < 3; ++li) {
    const LayerState& x = ra->state.layers[li];
    const LayerState& y = ro->state.layers[li];
    ASSERT_EQ(x.len, y.len) << "layer " << li;
    EXPECT_TRUE(x.in_order());
    EXPECT_LT((x.k - y.k).abs().max().item<float>(), 1e-5) << "layer " << li;
    EXPECT_LT((x.v - y.v).abs().max().item<float>(), 1e-5) << "layer " << li;
  }
  SessionCursor c = std::move(ra).value();
  for (int32_t t : {7, 8, 9}) {
    at::Tensor la = Step(*m, a.state, {t});
    at::Tensor lc = Step(*m, c.state, {t});
    EXPECT_LT((la - lc).abs().max().item<float>(), 1e-5) << "token " << t;
  }
}

}  // namespace
}  // namespace titand
