// The one prompt builder of titand (gRPC server and titan-run): a turn's input -> token ids.
//
//   token ids  used as they are (checked against the vocabulary; no BOS added).
//   text       literal text: control-token spellings such as "<|im_end|>" are plain text unless
//              parse_special; a BOS first when the tokenizer adds one and this is the conversation's
//              first turn (a text that itself starts with the BOS token does not get a second one).
//   chat       the model's chat template (chat_format.h) over THIS turn's messages with the assistant's
//              reply opened; the template's own markers are control tokens, message contents are literal
//              text unless parse_special. Exactly what Hugging Face apply_chat_template(tokenize=True)
//              gives for contents without control-token spellings (the BOS comes from the template).
// Text and contents must be well-formed UTF-8 (INVALID_ARGUMENT naming the field otherwise).
//
// ChatTurnTokens is what a chat turn commits to a session: the template's rendering of the turn's
// messages followed by the assistant message whose content is the reply text delivered to the client
// (closed with its end marker), so that after every turn the session history equals the tokenised
// template of the whole conversation — what a stateless client would send.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

struct PromptInput {  // exactly one form is set
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;
  std::vector<ChatMessage> messages;
};

struct PromptOptions {
  bool first_turn = true;      // the session has no history yet (template preambles, BOS)
  bool parse_special = false;  // control-token spellings in text / contents become control tokens
};

// `tok` may be null (token ids only). vocab_size bounds token ids.
absl::StatusOr<std::vector<int32_t>> BuildPrompt(const Tokenizer* tok, int64_t vocab_size, const PromptInput& in,
                                                 const PromptOptions& opt);

// Tokens of `messages` + assistant(reply) (no generation prompt). INVALID_ARGUMENT for a model without
// a recognised template.
absl::StatusOr<std::vector<int32_t>> ChatTurnTokens(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                                    const std::string& reply, const PromptOptions& opt);

}  // namespace titand
