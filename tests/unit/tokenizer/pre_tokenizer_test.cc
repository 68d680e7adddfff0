// Pre-tokenizer splits; expected words are what HF tokenizers (Oniguruma) produces for the same
// patterns (Split(Regex, isolated), Digits(individual_digits) for smollm).
#include "core/tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

namespace titand {
namespace {

using Words = std::vector<std::string>;

Words SplitWith(const char* name, const std::string& text) {
  auto pre = PreTokenizer::ForName(name);
  EXPECT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string_view> views;
  pre->Split(text, &views);
  Words out(views.begin(), views.end());
  std::string joined;
  for (const auto& w : out) joined += w;
  EXPECT_EQ(joined, text) << "words must cover the text exactly";
  return out;
}

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_EQ(SplitWith("gpt2", "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(SplitWith("gpt2", "it's I'M we'LL 'Re"),
            (Words{"it", "'s", " I", "'", "M", " we", "'", "LL", " '", "Re"}));
  EXPECT_EQ(SplitWith("gpt2", "a  b   c"), (Words{"a", " ", " b", "  ", " c"}));
  EXPECT_EQ(SplitWith("gpt2", "x \n\n y"), (Words{"x", " \n\n", " y"}));
  EXPECT_EQ(SplitWith("gpt2", "end   "), (Words{"end", "   "}));
  EXPECT_EQ(SplitWith("gpt2", "tab\t\tx"), (Words{"tab", "\t", "\t", "x"}));
  EXPECT_EQ(SplitWith("gpt2", "12345 678"), (Words{"12345", " 678"}));
  EXPECT_EQ(SplitWith("gpt2", "a\r\n\r\nb"), (Words{"a", "\r\n\r", "\n", "b"}));
  EXPECT_EQ(SplitWith("gpt2", "!!! ?? ...\n\nz"), (Words{"!!!", " ??", " ...", "\n", "\n", "z"}));
  EXPECT_EQ(SplitWith("gpt2", "  -> 'x'"), (Words{" ", " ->", " '", "x", "'"}));
  EXPECT_EQ(SplitWith("gpt2", "\u00a0nbsp\u3000x"), (Words{"\u00a0", "nbsp", "\u3000", "x"}));
  EXPECT_EQ(SplitWith("gpt2", "é中文😀👍🏽"), (Words{"é中文", "😀👍🏽"}));
  EXPECT_EQ(SplitWith("gpt2", "Ⅻ ² 3.14"), (Words{"Ⅻ", " ²", " 3", ".", "14"}));
  EXPECT_EQ(SplitWith("gpt2", "\n\t  hi"), (Words{"\n\t ", " hi"}));
}

TEST(PreTokenizerTest, SmolLmIsolatesEveryDigit) {
  EXPECT_EQ(SplitWith("smollm", "12345 678"), (Words{"1", "2", "3", "4", "5", " ", "6", "7", "8"}));
  EXPECT_EQ(SplitWith("smollm", " 1 22"), (Words{" ", "1", " ", "2", "2"}));
  EXPECT_EQ(SplitWith("smollm", "Ⅻ ² 3.14"), (Words{"Ⅻ", " ", "²", " ", "3", ".", "1", "4"}));
  EXPECT_EQ(SplitWith("smollm", "a  b   c"), (Words{"a", " ", " b", "  ", " c"}));
}

TEST(PreTokenizerTest, Llama3) {
  EXPECT_EQ(SplitWith("llama-bpe", "it's I'M we'LL 'Re"),
            (Words{"it", "'s", " I", "'M", " we", "'LL", " '", "Re"}));
  EXPECT_EQ(SplitWith("llama-bpe", "tab\t\tx"), (Words{"tab", "\t", "\tx"}));
  EXPECT_EQ(SplitWith("llama-bpe", "12345 678"), (Words{"123", "45", " ", "678"}));
  EXPECT_EQ(SplitWith("llama-bpe", " 1 22"), (Words{" ", "1", " ", "22"}));
  EXPECT_EQ(SplitWith("llama-bpe", "a\r\n\r\nb"), (Words{"a", "\r\n\r\n", "b"}));
  EXPECT_EQ(SplitWith("llama-bpe", "!!! ?? ...\n\nz"), (Words{"!!!", " ??", " ...\n\n", "z"}));
  EXPECT_EQ(SplitWith("llama-bpe", "\u00a0nbsp\u3000x"), (Words{"\u00a0nbsp", "\u3000x"}));
  EXPECT_EQ(SplitWith("llama-bpe", "\n\t  hi"), (Words{"\n", "\t ", " hi"}));
  EXPECT_EQ(SplitWith("llama-bpe", "x \n\n y"), (Words{"x", " \n\n", " y"}));
  // Case-insensitive contractions fold U+017F (long s) to s; other letters run on.
  EXPECT_EQ(SplitWith("llama-bpe", "x'\u017fa x'Sa y'Kelvin"),
            (Words{"x", "'\u017f", "a", " x", "'S", "a", " y", "'Kelvin"}));
}

TEST(PreTokenizerTest, Qwen2SingleDigits) {
  EXPECT_EQ(SplitWith("qwen2", "12345 678"), (Words{"1", "2", "3", "4", "5", " ", "6", "7", "8"}));
  EXPECT_EQ(SplitWith("qwen2", "Ⅻ ² 3.14"), (Words{"Ⅻ", " ", "²", " ", "3", ".", "1", "4"}));
  EXPECT_EQ(SplitWith("qwen2", "a\r\n\r\nb"), (Words{"a", "\r\n\r\n", "b"}));
}

TEST(PreTokenizerTest, IllFormedUtf8IsCoveredByteForByte) {
  const std::string bad = "ab\xff\xfe cd\xe4\xb8";
  for (const char* name : {"gpt2", "smollm", "llama-bpe", "qwen2"}) SplitWith(name, bad);
  EXPECT_TRUE(SplitWith("gpt2", "").empty());
}

TEST(PreTokenizerTest, UnknownNameIsInvalidArgument) {
  auto pre = PreTokenizer::ForName("falcon");
  ASSERT_FALSE(pre.ok());
  EXPECT_EQ(pre.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pre.status().message().find("falcon"), std::string::npos);
}

}  // namespace
}  // namespace titand
