// CausalLM on a small random-weight model: batched forward over several sequences equals running each
// alone; prefill in pieces equals prefill at once; a forked state evolves independently; a windowed
// model never keeps more than window-1 entries; a bad weight set is rejected with a named tensor.
#include "core/model/causal_lm.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/unit/testing/model_runs.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand {
namespace {

ModelConfig TinyConfig() { return testing::TinyLlamaConfig(/*vocab_size=*/97, /*num_layers=*/2); }

std::map<std::string, at::Tensor> RandomWeights(const ModelConfig& c) {
  return testing::RandomLlamaWeights(c, /*seed=*/7, /*scale=*/0.3);
}

std::unique_ptr<CausalLM> Make(const ModelConfig& c) {
  auto src = MakeMapWeights(RandomWeights(c));
  auto m = CausalLM::Create(c, *src, ModelOptions{});
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((seed * 31 + i * 17) % 97);
  return t;
}

// Logits of every token of `ids` fed in pieces of `piece` tokens.
at::Tensor RunAlone(CausalLM& m, const std::vector<int32_t>& ids, size_t piece) {
  return testing::RunPieces(m, ids, {piece});
}

TEST(CausalLM, BatchedPrefillAndDecodeEqualEachSequenceAlone) {
  auto m = Make(TinyConfig());
  const std::vector<int> prompt_len = {1, 5, 12, 30};
  const int decode_steps = 6;
  std::vector<std::vector<int32_t>> seqs;
  for (int s = 0; s < 4; ++s) seqs.push_back(Tokens(prompt_len[s] + decode_steps, s + 1));

  // Prefill all four prompts in one batch, then decode all four together step by step.
  std::vector<SequenceState> states;
  std::vector<at::Tensor> batched_rows = testing::PrefillThenDecodeTogether(*m, seqs, prompt_len, &states);
  ASSERT_EQ(batched_rows.size(), 4u);
  for (int s = 0; s < 4; ++s) {
    at::Tensor alone = RunAlone(*m, seqs[s], 1000);
    ASSERT_EQ(alone.sizes(), batched_rows[s].sizes());
    EXPECT_LT((alone - batched_rows[s]).abs().max().item<float>(), 1e-4) << "sequence " << s;
    EXPECT_EQ(states[s].num_tokens, static_cast<int64_t>(seqs[s].size()));
  }
}

TEST(CausalLM, PrefillInPiecesEqualsAtOnce) {
  auto m = Make(TinyConfig());
  auto ids = Tokens(37, 3);
  at::Tensor once = RunAlone(*m, ids, 1000);
  for (size_t piece : {1, 4, 7}) {
    EXPECT_LT((RunAlone(*m, ids, piece) - once).abs().max().item<float>(), 1e-4) << "piece " << piece;
  }
}

TEST(CausalLM, WindowedModelKeepsFixedStateAndMatchesPieces) {
  ModelConfig c = TinyConfig();
  c.sliding_window = 5;
  auto m = Make(c);
  auto ids = Tokens(23, 5);
  at::Tensor once = RunAlone(*m, ids, 1000);
  EXPECT_LT((RunAlone(*m, ids, 3) - once).abs().max().item<float>(), 1e-4);
  SequenceState st = m->NewState();
  std::vector<int64_t> bytes;
  for (int32_t t : ids) {
    std::vector<ForwardInput> in(1);
    in[0].tokens = {t};
    in[0].state = &st;
    ASSERT_TRUE(m->Forward(in).ok());
    bytes.push_back(st.ByteSize());
    for (const auto& l : st.layers) EXPECT_LE(l.len, 4);
  }
  EXPECT_EQ(bytes[6], bytes.back());  // constant once the context passes the window
  // Window changes the result compared to the full-range model after the window is exceeded.
  auto full = Make(TinyConfig());
  at::Tensor f = RunAlone(*full, ids, 1000);
  EXPECT_LT((f.narrow(0, 0, 5) - once.narrow(0, 0, 5)).abs().max().item<float>(), 1e-5);
  EXPECT_GT((f.narrow(0, 6, 10) - once.narrow(0, 6, 10)).abs().max().item<float>(), 1e-3);
}

TEST(CausalLM, ForkEvolvesIndependently) {
  auto m = Make(TinyConfig());
  SequenceState a = m->NewState();
  std::vector<ForwardInput> in(1);
  in[0].tokens = Tokens(9, 2);
  in[0].state = &a;
  ASSERT_TRUE(m->Forward(in).ok());
  SequenceState b = a.Fork();
  EXPECT_EQ(a.ByteSize(), b.ByteSize());
  auto step = [&](SequenceState& s, int32_t t) {
    std::vector<ForwardInput> d(1);
    d[0].tokens = {t};
    d[0].state = &s;
    return (*m->Forward(d))[0];
  };
  at::Tensor la = step(a, 11);
  step(b, 50);  // diverge b
  SequenceState c = m->NewState();
  in[0].state = &c;
  ASSERT_TRUE(m->Forward(in).ok());
  EXPECT_LT((step(c, 11) - la).abs().max().item<float>(), 1e-5);  // a unaffected by b's step
}

TEST(CausalLM, RejectsWrongShapesMissingAndUnusedTensors) {
  ModelConfig c = TinyConfig();
  auto w = RandomWeights(c);
  w["model.layers.1.self_attn.k_proj.weight"] = at::randn({3, 3});
  auto src = MakeMapWeights(w);
  auto m = CausalLM::Create(c, *src, ModelOptions{});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("model.layers.1.self_attn.k_proj.weight"), std::string::npos);

  w = RandomWeights(c);
  w.erase("model.norm.weight");
  src = MakeMapWeights(w);
  EXPECT_EQ(CausalLM::Create(c, *src, ModelOptions{}).status().code(), absl::StatusCode::kNotFound);

  w = RandomWeights(c);
  w["model.layers.0.extra.weight"] = at::zeros({2});
  src = MakeMapWeights(w);
  m = CausalLM::Create(c, *src, ModelOptions{});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("extra"), std::string::npos);
}

TEST(CausalLM, RejectsOutOfRangeTokens) {
  auto m = Make(TinyConfig());
  SequenceState st = m->NewState();
  std::vector<ForwardInput> in(1);
  in[0].tokens = {5, 97};
  in[0].state = &st;
  EXPECT_EQ(m->Forward(in).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.num_tokens, 0);
}

}  // namespace
}  // namespace titand

namespace titand {
namespace {

TEST(CausalLM, StateBytesAtMatchesByteSizeForPlainWindowedAndHybridLayers) {
  ModelConfig c = TinyConfig();
  auto m = Make(c);
  m->SetHybrid(1, testing::TinyGatedDeltaLayer(c, 0.3), 6);  // layer 0 plain, layer 1 TPTT with window 6
  SequenceState st = m->NewState();
  std::vector<int64_t> sizes;
  for (int32_t t : Tokens(60, 9)) {
    std::vector<ForwardInput> in(1);
    in[0].tokens = {t};
    in[0].state = &st;
    ASSERT_TRUE(m->Forward(in).ok());
    EXPECT_EQ(st.ByteSize(), m->StateBytesAt(st.num_tokens)) << st.num_tokens;
  }
  // Only the plain layer grows: 2 * n_kv * D * 4 bytes per token.
  EXPECT_EQ(m->StateBytesAt(60) - m->StateBytesAt(59), 2 * c.num_kv_heads * c.head_dim * 4);
}

}  // namespace
}  // namespace titand
