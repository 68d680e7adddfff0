// Base model identity (docs/adapter-format.md): the bundled GGUF model's id equals the value in the
// spec (checked independently with Python's gguf + hashlib); synthetic GGUF and safetensors files hash
// exactly the stored embedding bytes (expected digests from Python's hashlib over the same bytes).
#include "core/weights/model_identity.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/unit/weights/gguf_test_util.h"

namespace titand {
namespace {

using testing_util::Bytes;
using testing_util::Kv;

// float32 0, 0.5, ..., 5.5 little-endian: sha256(...)[:16] == 06d1bf4aae75e801 (Python hashlib).
std::string EmbedBytes() {
  Bytes b;
  for (int i = 0; i < 12; ++i) b.F32(0.5f * i);
  return b.str();
}
constexpr char kEmbedHex16[] = "06d1bf4aae75e801";

TEST(ModelIdentity, BundledGgufModel) {
  const std::string path = std::string(TITAND_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) GTEST_SKIP() << "bundled model absent: " << path;
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto id = GgufBaseModelId(**f);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "Smollm2 135M 8k Lc100K Mix1 Ep2@0d728edd2a012d16");
}

TEST(ModelIdentity, SyntheticGgufHashesStoredBytes) {
  testing_util::GgufSpec spec;
  spec.kvs.push_back(Kv("general.name", 8, Bytes().Str("Tiny GGUF").str()));
  spec.tensors.push_back({"output_norm.weight", {5}, 0, Bytes().F32(1).F32(2).F32(3).F32(4).F32(5).str()});
  spec.tensors.push_back({"token_embd.weight", {4, 3}, 0, EmbedBytes()});
  const std::string path = testing_util::WriteTemp("identity_named.gguf", testing_util::BuildGguf(spec));
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto id = GgufBaseModelId(**f);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, std::string("Tiny GGUF@") + kEmbedHex16);

  spec.kvs.clear();  // no general.name: empty name
  const std::string p2 = testing_util::WriteTemp("identity_anon.gguf", testing_util::BuildGguf(spec));
  f = GgufFile::Open(p2);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*GgufBaseModelId(**f), std::string("@") + kEmbedHex16);

  spec.tensors.pop_back();  // no token_embd.weight
  const std::string p3 = testing_util::WriteTemp("identity_noembd.gguf", testing_util::BuildGguf(spec));
  f = GgufFile::Open(p3);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(GgufBaseModelId(**f).status().code(), absl::StatusCode::kNotFound);
}

// A minimal HF directory: config.json + model.safetensors holding lm_head.weight then the embedding.
std::string MakeHfDir(const std::string& name, const std::string& config, bool with_embed) {
  const std::string dir = ::testing::TempDir() + "/titand_identity_" + name;
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/config.json") << config;
  const std::string lm = Bytes().F32(9).F32(8).str();
  std::string header = R"({"lm_head.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  if (with_embed) header += R"(,"model.embed_tokens.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[8,56]})";
  header += "}";
  std::ofstream out(dir + "/model.safetensors", std::ios::binary | std::ios::trunc);
  out << Bytes().U64(header.size()).str() << header << lm << (with_embed ? EmbedBytes() : "");
  return dir;
}

TEST(ModelIdentity, SafetensorsDirectory) {
  auto id = SafetensorsBaseModelId(
      MakeHfDir("named", R"({"_name_or_path": "HuggingFaceTB/Tiny", "model_type": "llama"})", true));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, std::string("HuggingFaceTB/Tiny@") + kEmbedHex16);
  id = SafetensorsBaseModelId(MakeHfDir("typed", R"({"model_type": "llama"})", true));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, std::string("llama@") + kEmbedHex16);
  EXPECT_EQ(SafetensorsBaseModelId(MakeHfDir("noembed", R"({"model_type": "llama"})", false)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(SafetensorsBaseModelId(MakeHfDir("badcfg", "[1, 2", true)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsBaseModelId(::testing::TempDir() + "/titand_identity_missing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace titand
