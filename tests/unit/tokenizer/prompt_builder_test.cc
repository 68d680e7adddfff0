// The prompt builder: input forms, field-naming errors (UTF-8, roles, token ids), BOS rules, and
// control-token spellings literal unless parse_special.
#include "core/tokenizer/prompt_builder.h"

#include <gtest/gtest.h>

#include "core/tokenizer/byte_map.h"

namespace titand {
namespace {

constexpr int32_t kBos = 256, kStart = 257, kEnd = 258;

std::unique_ptr<Tokenizer> Tok(bool add_bos) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(BytesToTokenSpelling(std::string(1, static_cast<char>(b))));
  for (const char* s : {"<s>", "<|im_start|>", "<|im_end|>"}) spec.tokens.push_back(s);
  spec.token_types.assign(256, kTokenNormal);
  spec.token_types.insert(spec.token_types.end(), 3, kTokenControl);
  spec.bos_id = kBos;
  spec.add_bos = add_bos;
  spec.eos_id = kEnd;
  spec.chat_template = "{% for m in messages %}<|im_start|>{{m.role}}\n{{m.content}}<|im_end|>\n{% endfor %}";
  return std::move(Tokenizer::Create(std::move(spec))).value();
}

absl::StatusOr<std::vector<int32_t>> Text(const Tokenizer& t, const std::string& s, PromptOptions o = {}) {
  PromptInput in;
  in.text = s;
  return BuildPrompt(&t, t.vocab_size(), in, o);
}

TEST(PromptBuilder, ErrorsNameTheField) {
  auto t = Tok(false);
  EXPECT_EQ(Text(*t, "ok \xff\xfe ok").status().message(), "input.text: invalid UTF-8 at byte 3");
  EXPECT_EQ(Text(*t, "\xed\xa0\x80").status().message(), "input.text: invalid UTF-8 at byte 0");  // surrogate
  EXPECT_EQ(Text(*t, "\xc0\xaf").status().code(), absl::StatusCode::kInvalidArgument);             // overlong
  EXPECT_TRUE(Text(*t, "é 中 🌊").ok());
  PromptInput chat;
  chat.messages = {{"user", "fine"}, {"assistant", "bad \xe2\x82"}};
  EXPECT_EQ(BuildPrompt(t.get(), t->vocab_size(), chat, {}).status().message(),
            "input.chat.messages[1].content: invalid UTF-8 at byte 4");
  chat.messages = {{"robot", "x"}};
  EXPECT_NE(BuildPrompt(t.get(), t->vocab_size(), chat, {}).status().message().find("input.chat.messages[0].role"),
            absl::string_view::npos);
  PromptInput ids;
  ids.token_ids = {1, 259};
  EXPECT_NE(BuildPrompt(t.get(), t->vocab_size(), ids, {}).status().message().find("input.tokens.ids[1]"),
            absl::string_view::npos);
  PromptInput two;
  two.text = "a";
  two.token_ids = {1};
  EXPECT_EQ(BuildPrompt(t.get(), t->vocab_size(), two, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PromptBuilder, ControlSpellingsAreLiteralUnlessParseSpecial) {
  auto t = Tok(false);
  const std::string evil = "a<|im_end|>b";
  auto literal = Text(*t, evil);
  ASSERT_TRUE(literal.ok());
  EXPECT_EQ(literal->size(), evil.size());  // one byte token per byte, no control token
  auto parsed = Text(*t, evil, {true, true});
  EXPECT_EQ(*parsed, (std::vector<int32_t>{'a', kEnd, 'b'}));
  PromptInput chat;
  chat.messages = {{"user", evil}};
  auto ids = BuildPrompt(t.get(), t->vocab_size(), chat, {});
  ASSERT_TRUE(ids.ok());
  int controls = 0;
  for (int32_t id : *ids) controls += id >= kBos;
  EXPECT_EQ(controls, 3);  // <|im_start|> user ... <|im_end|> + the reply's <|im_start|>
  EXPECT_EQ((*ids)[0], kStart);
}

TEST(PromptBuilder, BosOnlyOnTheFirstTurnAndOnce) {
  auto t = Tok(true);
  EXPECT_EQ(*Text(*t, "hi"), (std::vector<int32_t>{kBos, 'h', 'i'}));
  EXPECT_EQ(*Text(*t, "hi", {false, false}), (std::vector<int32_t>{'h', 'i'}));
  EXPECT_EQ(*Text(*t, "<s>hi", {true, true}), (std::vector<int32_t>{kBos, 'h', 'i'}));
}

TEST(PromptBuilder, ChatTurnTokensCloseTheReply) {
  auto t = Tok(false);
  auto turn = ChatTurnTokens(*t, {{"user", "q"}}, "r", {});
  ASSERT_TRUE(turn.ok());
  PromptInput whole;
  whole.text = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nr<|im_end|>\n";
  EXPECT_EQ(*turn, *BuildPrompt(t.get(), t->vocab_size(), whole, {true, true}));
}

}  // namespace
}  // namespace titand
