// CausalLM with int8 / int4 weights: the tiny random model's logits stay close to float32 and its
// parameter count is unchanged while the stored bytes shrink; on the bundled GGUF, Q4_1 projections (q/k
// rows un-permuted) repack to int4 matching the float dequantisation up to bf16 scale rounding, and the
// Q8_0 embedding gathers exactly the float rows.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/model/causal_lm.h"
#include "core/model/weight_loader.h"
#include "core/weights/dequant.h"
#include "core/weights/gguf_file.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand {
namespace {

ModelConfig Config() {
  ModelConfig c = testing::TinyLlamaConfig(/*vocab_size=*/97, /*num_layers=*/2);
  c.intermediate_size = 64;  // int4 needs in_features % 32 == 0 (w_down's input)
  return c;
}

// The weights an int8 / int4 model computes with, by the documented formulas (linear_weight.h,
// embedding_table.h): linears per row (int8, bf16 scale) or per group of 32 (int4); the embedding per row
// (int8, float32 scale).
std::map<std::string, at::Tensor> Dequantized(std::map<std::string, at::Tensor> w, WeightFormat f) {
  for (auto& [name, t] : w) {
    if (t.dim() != 2) continue;
    const bool embed = name == "model.embed_tokens.weight";
    if (embed || f == WeightFormat::kInt8) {
      at::Tensor s = t.abs().amax(1, true) / 127.0;
      if (!embed) s = s.to(at::kBFloat16).to(at::kFloat);
      t = at::clamp(at::round(t / s), -127, 127) * s;
    } else {
      Int4Groups g = QuantizeInt4(t);
      t = (g.q.to(at::kFloat) - 8) * g.scale.repeat_interleave(32, 1) + g.zero.repeat_interleave(32, 1);
    }
  }
  return w;
}

// Log-probs of every position of a fixed 12-token input; `weights` = the stored format.
at::Tensor LogProbs(std::map<std::string, at::Tensor> w, WeightFormat f, int64_t* params, int64_t* bytes) {
  const ModelConfig c = Config();
  auto src = MakeMapWeights(std::move(w));
  ModelOptions o;
  o.weights = f;
  auto m = CausalLM::Create(c, *src, o);
  EXPECT_TRUE(m.ok()) << m.status();
  *params = (*m)->ParameterCount();
  *bytes = (*m)->WeightBytes();
  SequenceState st = (*m)->NewState();
  std::vector<ForwardInput> in(1);
  for (int i = 0; i < 12; ++i) in[0].tokens.push_back((i * 13 + 5) % 97);
  in[0].state = &st;
  in[0].all_logits = true;
  auto out = (*m)->Forward(in);
  EXPECT_TRUE(out.ok()) << out.status();
  return at::log_softmax((*out)[0], -1);
}

// An int8 / int4 model equals the float32 model run on its dequantised weights, up to the bfloat16
// activations the kernels take (and, for int4, the kernel's own bf16 steps): within twice the drift bf16
// weights + activations cause on the same (chaotic, random) model; a wrong scale, zero or row order costs
// whole log-nats.
TEST(QuantizedModelTest, Int8AndInt4ModelsEqualFloatOnTheirDequantisedWeights) {
  const auto w = testing::RandomLlamaWeights(Config(), /*seed=*/5, /*scale=*/0.3);
  int64_t p32, b32, p, b;
  at::Tensor f32 = LogProbs(w, WeightFormat::kF32, &p32, &b32);
  const float bf16_drift = (LogProbs(w, WeightFormat::kBF16, &p, &b) - f32).abs().max().item<float>();
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    at::Tensor q = LogProbs(w, f, &p, &b);
    EXPECT_EQ(p, p32);       // parameter count keeps its meaning
    EXPECT_LT(b, b32 / 3);   // stored bytes shrink
    at::Tensor ref = LogProbs(Dequantized(w, f), WeightFormat::kF32, &p, &b);
    const float d = (q - ref).abs().max().item<float>();
    EXPECT_LT(d, 2 * bf16_drift) << WeightFormatName(f);
    EXPECT_GT((q - f32).abs().max().item<float>(), 2 * d) << WeightFormatName(f);  // quantisation did happen
  }
}

class BundledGgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::string(TITAND_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) GTEST_SKIP() << "bundled model absent: " << path_;
    auto f = GgufFile::Open(path_);
    ASSERT_TRUE(f.ok()) << f.status();
    auto c = ConfigFromGguf(**f);
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
  }
  std::unique_ptr<WeightSource> Open() {
    auto w = OpenGgufWeights(path_, config_);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::move(w).value();
  }
  std::string path_;
  ModelConfig config_;
};

TEST_F(BundledGgufTest, Q4_1ProjectionsRepackToInt4) {
  const int64_t Hd = config_.hidden_size;
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
                           "model.layers.5.mlp.down_proj.weight"}) {
    auto src = Open();
    ASSERT_EQ(src->StoredType(name), GgmlType::kQ4_1);
    std::vector<int64_t> shape = std::string(name).find("q_proj") != std::string::npos ? std::vector<int64_t>{config_.q_dim(), Hd}
                                 : std::string(name).find("k_proj") != std::string::npos
                                     ? std::vector<int64_t>{config_.kv_dim(), Hd}
                                     : std::vector<int64_t>{Hd, config_.intermediate_size};
    auto lw = LoadLinear(*src, {WeightFormat::kInt4, at::kFloat, at::kCPU}, {{name, shape}});
    ASSERT_TRUE(lw.ok()) << lw.status();
    auto ref = TakeChecked(*Open(), {name, shape});  // float32, rows un-permuted by the source
    ASSERT_TRUE(ref.ok()) << ref.status();
    at::Tensor got = lw->DequantizeWithKernel();
    // The blocks themselves (rows un-permuted like Take): got may differ from ref only by the bf16 rounding
    // of d (times |q - 8|) and of the zero m + 8d, plus the bf16 output rounding. Rows in the wrong order
    // would break this bound by whole quantisation steps.
    auto raw = Open()->TakeRaw(name);
    ASSERT_TRUE(raw.ok()) << raw.status();
    const int64_t n = shape[0] * shape[1];
    at::Tensor q = at::empty(shape, at::kByte), d = at::empty({shape[0], shape[1] / 32});
    at::Tensor m = at::empty_like(d);
    ASSERT_TRUE(SplitQ4Blocks(raw->type, raw->bytes.data(), raw->bytes.size(), n, q.data_ptr<uint8_t>(),
                              d.data_ptr<float>(), m.data_ptr<float>()).ok());
    auto rep = [](const at::Tensor& t) { return t.repeat_interleave(32, 1); };
    auto bf = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); };
    at::Tensor zero = m + 8 * d;
    at::Tensor bound = (q.to(at::kFloat) - 8).abs() * rep((d - bf(d)).abs()) + rep((zero - bf(zero)).abs()) +
                       ref->abs() / 256 + 1e-6;
    EXPECT_TRUE(((got - *ref).abs() <= bound).all().item<bool>()) << name;
    EXPECT_LT((bound / rep(d)).mean().item<float>(), 0.1f) << name;  // typically a small fraction of a step
    EXPECT_GT((got - *ref).abs().max().item<float>(), 0.0f) << name;  // bf16 scales are not fp16's
  }
}

TEST_F(BundledGgufTest, Q8_0EmbeddingGathersTheFloatRows) {
  auto src = Open();
  ASSERT_EQ(src->StoredType("model.embed_tokens.weight"), GgmlType::kQ8_0);
  const TensorSpec spec{"model.embed_tokens.weight", {config_.vocab_size, config_.hidden_size}};
  LinearWeight head;
  auto table = LoadEmbedding(*src, {WeightFormat::kAuto, at::kFloat, at::kCPU}, spec, &head);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->quantized());
  EXPECT_EQ(head.format(), WeightFormat::kInt8);
  auto ref = TakeChecked(*Open(), spec);
  ASSERT_TRUE(ref.ok());
  at::Tensor ids = at::tensor({0L, 1L, 2L, 500L, 49151L});
  EXPECT_TRUE(at::equal(table->Lookup(ids, at::kFloat), ref->index_select(0, ids)));
  EXPECT_LT(table->bytes(), ref->numel() * 4 / 3);
}

}  // namespace
}  // namespace titand
