// FromHfDir: a minimal valid tokenizer.json loads; malformed ones give clear errors naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/tokenizer/tokenizer.h"

namespace titand {
namespace {

namespace fs = std::filesystem;

std::string WriteDir(const std::string& name, const std::string& tokenizer_json, const std::string& config = "") {
  const fs::path dir = fs::path(testing::TempDir()) / ("tok_hf_" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer_json;
  if (!config.empty()) std::ofstream(dir / "tokenizer_config.json") << config;
  return dir.string();
}

// Vocabulary: a=0 b=1 ab=2 Ġ=3, added <|eot|>=4 (special) and <x>=5 (not special).
std::string TokenizerJson(const std::string& pre, const std::string& model_type = "BPE",
                          const std::string& merges = R"(["a b"])") {
  return R"({"version": "1.0", "normalizer": null, "pre_tokenizer": )" + pre +
         R"(, "added_tokens": [{"id": 4, "content": "<|eot|>", "special": true},
                               {"id": 5, "content": "<x>", "special": false}],
         "model": {"type": ")" + model_type + R"(", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3},
                   "merges": )" + merges + "}}";
}

const char* kSmolPre =
    R"({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})";

TEST(TokenizerHfTest, LoadsMinimalDirectory) {
  const std::string dir = WriteDir("ok", TokenizerJson(kSmolPre, "BPE", R"([["a", "b"]])"),
                                   R"({"eos_token": "<|eot|>", "chat_template": "<|im_start|><|im_end|>"})");
  auto t = Tokenizer::FromHfDir(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->pre(), "smollm");
  EXPECT_EQ((*t)->vocab_size(), 6);
  EXPECT_EQ((*t)->eos_id(), 4);
  EXPECT_TRUE((*t)->IsSpecial(4));
  EXPECT_FALSE((*t)->IsSpecial(5));
  EXPECT_EQ((*t)->Encode("ab ab<|eot|><x>"), (std::vector<int32_t>{2, 3, 2, 4, 5}));
  EXPECT_EQ((*t)->chat_template_source(), "<|im_start|><|im_end|>");
}

void ExpectError(const std::string& dir, absl::StatusCode code, const std::string& needle) {
  auto t = Tokenizer::FromHfDir(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), code) << t.status();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("tok_hf_"), std::string::npos) << "error names the path: " << t.status();
}

TEST(TokenizerHfTest, MalformedInputsGiveClearErrors) {
  ExpectError(WriteDir("truncated", TokenizerJson(kSmolPre).substr(0, 100)), absl::StatusCode::kInvalidArgument,
              "not valid JSON");
  ExpectError(WriteDir("nomodel", R"({"pre_tokenizer": null})"), absl::StatusCode::kInvalidArgument, "model");
  ExpectError(WriteDir("unigram", TokenizerJson(kSmolPre, "Unigram")), absl::StatusCode::kUnimplemented, "Unigram");
  ExpectError(WriteDir("metaspace", TokenizerJson(R"({"type": "Metaspace", "replacement": "_"})")),
              absl::StatusCode::kInvalidArgument, "unsupported pre_tokenizer");
  ExpectError(WriteDir("badmerge", TokenizerJson(kSmolPre, "BPE", R"(["a c"])")), absl::StatusCode::kInvalidArgument,
              "merge 0");
  ExpectError(WriteDir("mergetype", TokenizerJson(kSmolPre, "BPE", R"([7])")), absl::StatusCode::kInvalidArgument,
              "bad merge");
  ExpectError(WriteDir("badvocab", R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})"),
              absl::StatusCode::kInvalidArgument, "vocab");
  ExpectError(WriteDir("badcfg", TokenizerJson(kSmolPre), "{oops"), absl::StatusCode::kInvalidArgument,
              "tokenizer_config.json");
  auto missing = Tokenizer::FromHfDir("/nonexistent/dir");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace titand
