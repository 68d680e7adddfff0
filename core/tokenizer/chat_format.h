// Chat prompt rendering for the template families titand knows, recognised from the jinja source
// (no jinja engine). Rendering is per message, so a session can render only a turn's new messages:
//   RenderChat(f, A, false, src, true) + RenderChat(f, B, g, src, false) == RenderChat(f, A+B, g, src)
// ChatML : "<|im_start|>" role "\n" content "<|im_end|>\n" per message; generation prompt
//          "<|im_start|>assistant\n". If the template injects a default system prompt when the first
//          message is not a system one (SmolLM2, Qwen2.5), that happens on the first turn only.
// Llama 3: "<|start_header_id|>" role "<|end_header_id|>\n\n" trim(content) "<|eot_id|>" per message,
//          "<|begin_of_text|>" before the first message of the first turn; generation prompt
//          "<|start_header_id|>assistant<|end_header_id|>\n\n". (The BOS is in the text: encode the
//          result with a tokenizer whose add_bos is off, or drop the duplicate.)
// Raw    : contents concatenated; no markup.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace titand {

enum class ChatFormat { kChatML, kLlama3, kRaw };

struct ChatMessage {
  std::string role;
  std::string content;
};

// Empty source -> kRaw; ChatML / Llama 3 recognised by their markers; anything else INVALID_ARGUMENT.
absl::StatusOr<ChatFormat> DetectChatFormat(const std::string& template_source);

// The default system prompt a ChatML template inserts before a conversation without one ("" if none).
std::string DefaultSystemPrompt(const std::string& template_source);

// One piece of a rendering: a control-token marker of the template ("<|im_start|>", "<|eot_id|>" ...,
// encoded as that token) or text (template text such as "user\n" and message contents, encoded as
// literal text unless a request opts into special-token parsing).
struct ChatSegment {
  std::string text;
  bool control = false;
};
std::vector<ChatSegment> RenderChatSegments(ChatFormat format, const std::vector<ChatMessage>& msgs,
                                            bool add_generation_prompt, const std::string& template_source = "",
                                            bool first_turn = true);

// The segments joined into one string.
std::string RenderChat(ChatFormat format, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                       const std::string& template_source = "", bool first_turn = true);

}  // namespace titand
