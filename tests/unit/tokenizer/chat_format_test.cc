#include "core/tokenizer/chat_format.h"

#include <gtest/gtest.h>

namespace titand {
namespace {

// SmolLM2-Instruct's template (as stored in its GGUF).
const std::string kSmolLm2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const std::string kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

TEST(ChatFormatTest, Detection) {
  EXPECT_EQ(*DetectChatFormat(kSmolLm2), ChatFormat::kChatML);
  EXPECT_EQ(*DetectChatFormat(kLlama3), ChatFormat::kLlama3);
  EXPECT_EQ(*DetectChatFormat(""), ChatFormat::kRaw);
  auto unknown = DetectChatFormat("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("unrecognised chat template"), std::string::npos);
}

TEST(ChatFormatTest, SmolLm2DefaultSystemPromptOnFirstTurnOnly) {
  EXPECT_EQ(DefaultSystemPrompt(kSmolLm2), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<ChatMessage> turn1 = {{"user", "Hi"}};
  const std::string r = RenderChat(ChatFormat::kChatML, turn1, true, kSmolLm2);
  EXPECT_EQ(r,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderChat(ChatFormat::kChatML, {{"system", "S"}, {"user", "Hi"}}, false, kSmolLm2),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(RenderChat(ChatFormat::kChatML, turn1, false, kSmolLm2, /*first_turn=*/false),
            "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatFormatTest, PerTurnRenderingConcatenates) {
  const std::vector<ChatMessage> all = {{"user", "  a "}, {"assistant", "b"}, {"user", "c\n"}, {"assistant", "d"}};
  for (const auto& [fmt, src] : {std::pair{ChatFormat::kChatML, kSmolLm2}, std::pair{ChatFormat::kLlama3, kLlama3},
                                 std::pair{ChatFormat::kRaw, std::string()}}) {
    for (size_t cut = 1; cut < all.size(); ++cut) {
      const std::vector<ChatMessage> a(all.begin(), all.begin() + cut), b(all.begin() + cut, all.end());
      EXPECT_EQ(RenderChat(fmt, a, false, src) + RenderChat(fmt, b, true, src, false), RenderChat(fmt, all, true, src))
          << static_cast<int>(fmt) << " cut " << cut;
    }
  }
}

TEST(ChatFormatTest, Llama3TrimsAndAddsBosOnce) {
  EXPECT_EQ(RenderChat(ChatFormat::kLlama3, {{"system", " S\n"}, {"user", "\tq "}}, true, kLlama3),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

}  // namespace
}  // namespace titand
