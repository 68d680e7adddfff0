// Tokenizer on small hand-made vocabularies: BPE merge order, added tokens, special handling,
// and the incremental detokenizer.
#include "core/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include "core/tokenizer/byte_map.h"
#include "core/tokenizer/incremental_detokenizer.h"

namespace titand {
namespace {

// 256 byte tokens (id = byte value), then the extra tokens given.
TokenizerSpec ByteSpec(const std::vector<std::string>& extra_bytes, std::vector<std::string> merges) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(BytesToTokenSpelling(std::string(1, static_cast<char>(b))));
  for (const auto& e : extra_bytes) spec.tokens.push_back(BytesToTokenSpelling(e));
  spec.merges = std::move(merges);
  spec.pre = "gpt2";
  return spec;
}

std::unique_ptr<Tokenizer> Make(TokenizerSpec spec) {
  auto t = Tokenizer::Create(std::move(spec));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(TokenizerTest, LowestRankMergesFirst) {
  // ids: ab=256, bc=257, abc=258
  auto t1 = Make(ByteSpec({"ab", "bc", "abc"}, {"b c", "a b", "ab c"}));
  EXPECT_EQ(t1->Encode("abc"), (std::vector<int32_t>{'a', 257}));  // "b c" outranks "a b"
  auto t2 = Make(ByteSpec({"ab", "bc", "abc"}, {"a b", "b c", "ab c"}));
  EXPECT_EQ(t2->Encode("abc"), (std::vector<int32_t>{258}));
}

TEST(TokenizerTest, EqualRankLeftmostFirst) {
  auto t = Make(ByteSpec({"aa"}, {"a a"}));
  EXPECT_EQ(t->Encode("aaa"), (std::vector<int32_t>{256, 'a'}));
  EXPECT_EQ(t->Encode("aaaa"), (std::vector<int32_t>{256, 256}));
}

TEST(TokenizerTest, WordsAreMergedSeparately) {
  auto t = Make(ByteSpec({"a\x20", "\x20" "b"}, {"a \xc4\xa0", "\xc4\xa0 b"}));  // "aĠ", "Ġb"
  // gpt2 splits "a b" into "a", " b": the "a " merge never applies.
  EXPECT_EQ(t->Encode("a b"), (std::vector<int32_t>{'a', 257}));
}

TEST(TokenizerTest, IgnoreMergesEmitsWholeVocabularyWords) {
  // "abc" is a token but no merge chain reaches it.
  TokenizerSpec spec = ByteSpec({"abc"}, {});
  EXPECT_EQ(Make(spec)->Encode("abc"), (std::vector<int32_t>{'a', 'b', 'c'}));
  spec.ignore_merges = true;
  EXPECT_EQ(Make(spec)->Encode("abc"), (std::vector<int32_t>{256}));
}

TokenizerSpec SpecialSpec() {
  TokenizerSpec spec = ByteSpec({}, {});
  spec.tokens.push_back("<|im_end|>");  // 256, control
  spec.tokens.push_back("<|im");        // 257, control (shorter prefix of 256)
  spec.tokens.push_back("<think>");     // 258, user-defined
  spec.token_types.assign(spec.tokens.size(), kTokenNormal);
  spec.token_types[256] = spec.token_types[257] = kTokenControl;
  spec.token_types[258] = kTokenUserDefined;
  spec.eos_id = 256;
  spec.bos_id = 257;
  return spec;
}

TEST(TokenizerTest, AddedTokensLongestMatchAndParseSpecial) {
  auto t = Make(SpecialSpec());
  EXPECT_EQ(t->Encode("x<|im_end|><think>"), (std::vector<int32_t>{'x', 256, 258}));
  EXPECT_EQ(t->Encode("<|im_"), (std::vector<int32_t>{257, '_'}));
  // Without parse_special control tokens are plain text; user-defined ones still match.
  const auto plain = t->Encode("<|im_end|><think>", false);
  EXPECT_EQ(plain.size(), 10u + 1u);
  EXPECT_EQ(plain.back(), 258);
  EXPECT_TRUE(t->IsSpecial(256));
  EXPECT_FALSE(t->IsSpecial(258));
  EXPECT_EQ(t->Decode({'a', 256, 258}), "a<|im_end|><think>");
  EXPECT_EQ(t->Decode({'a', 256, 258}, true), "a<think>");
  EXPECT_EQ(t->stop_ids(), (std::vector<int32_t>{256}));
  EXPECT_EQ(t->TokenId("<think>"), 258);
  EXPECT_EQ(t->TokenId("\xc4\xa0"), ' ');
  EXPECT_FALSE(t->TokenId("nope").has_value());
}

TEST(TokenizerTest, AddBos) {
  TokenizerSpec spec = SpecialSpec();
  spec.add_bos = true;
  EXPECT_EQ(Make(spec)->Encode("a"), (std::vector<int32_t>{257, 'a'}));
}

TEST(TokenizerTest, InvalidSpecs) {
  TokenizerSpec spec = ByteSpec({}, {"a b"});  // "ab" is not in the vocabulary
  auto t = Tokenizer::Create(spec);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("merge 0"), std::string::npos) << t.status();
  spec = ByteSpec({}, {});
  spec.token_types = {1, 1};
  EXPECT_FALSE(Tokenizer::Create(spec).ok());
  spec = ByteSpec({}, {});
  spec.eos_id = 999;
  EXPECT_FALSE(Tokenizer::Create(spec).ok());
  spec = ByteSpec({}, {});
  spec.pre = "unknown-pre";
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IncrementalDetokenizerTest, HoldsPartialUtf8) {
  auto t = Make(SpecialSpec());
  IncrementalDetokenizer d(*t);
  const std::string e = "\xc3\xa9", emoji = "\xf0\x9f\x98\x80";
  EXPECT_EQ(d.Add(static_cast<uint8_t>(e[0])), "");
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.Add(static_cast<uint8_t>(e[1])), e);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(d.Add(static_cast<uint8_t>(emoji[i])), "");
  EXPECT_EQ(d.Add(256), "");  // special: skipped, the partial emoji stays pending
  EXPECT_EQ(d.Add(static_cast<uint8_t>(emoji[3])), emoji);
  EXPECT_EQ(d.Add('x'), "x");
  EXPECT_EQ(d.Finish(), "");
}

TEST(IncrementalDetokenizerTest, InvalidBytesBecomeReplacementChars) {
  auto t = Make(SpecialSpec());
  IncrementalDetokenizer d(*t, /*skip_special=*/false);
  EXPECT_EQ(d.Add(0xE4), "");
  EXPECT_EQ(d.Add('a'), "\ufffd" "a");  // an unfinished sequence interrupted
  EXPECT_EQ(d.Add(0x80), "\ufffd");     // stray continuation byte
  EXPECT_EQ(d.Add(256), "<|im_end|>");
  EXPECT_EQ(d.Add(0xF0), "");
  EXPECT_EQ(d.Add(0x9F), "");
  EXPECT_EQ(d.Finish(), "\ufffd");  // flushed tail
}

}  // namespace
}  // namespace titand
