#include "core/tokenizer/prompt_builder.h"

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/common/utf8.h"

namespace titand {
namespace {

// Text runs between control markers are encoded as one piece each (what tokenizing the joined string
// does, since control tokens split the text first).
std::vector<int32_t> EncodeSegments(const Tokenizer& tok, const std::vector<ChatSegment>& segs, bool parse_special) {
  std::vector<int32_t> out;
  std::string run;
  const auto flush = [&] {
    std::vector<int32_t> ids = tok.EncodeText(run, parse_special);
    out.insert(out.end(), ids.begin(), ids.end());
    run.clear();
  };
  for (const ChatSegment& s : segs) {
    const std::optional<int32_t> id = s.control ? tok.TokenId(s.text) : std::nullopt;
    if (!id) {
      run += s.text;
      continue;
    }
    flush();
    out.push_back(*id);
  }
  flush();
  return out;
}

absl::Status CheckMessages(const std::vector<ChatMessage>& msgs) {
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string& r = msgs[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("input.chat.messages[", i, "].role: must be system, user or assistant"));
    }
    RETURN_IF_ERROR(CheckUtf8(msgs[i].content, absl::StrCat("input.chat.messages[", i, "].content")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> BuildPrompt(const Tokenizer* tok, int64_t vocab_size, const PromptInput& in,
                                                 const PromptOptions& opt) {
  const int forms = (in.text.has_value() ? 1 : 0) + (!in.token_ids.empty() ? 1 : 0) + (!in.messages.empty() ? 1 : 0);
  if (forms != 1) return absl::InvalidArgumentError("input: exactly one of text, tokens, chat must be given");
  if (!in.token_ids.empty()) {
    for (size_t i = 0; i < in.token_ids.size(); ++i) {
      const int32_t t = in.token_ids[i];
      if (t < 0 || t >= vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("input.tokens.ids[", i, "]: ", t, " outside [0, ", vocab_size, ")"));
      }
    }
    return in.token_ids;
  }
  if (!tok) return absl::InvalidArgumentError("input: this model has no tokenizer; send token ids");
  if (in.text) {
    RETURN_IF_ERROR(CheckUtf8(*in.text, "input.text"));
    std::vector<int32_t> ids = tok->EncodeText(*in.text, opt.parse_special);
    const int32_t bos = tok->bos_id();
    if (opt.first_turn && tok->add_bos() && bos >= 0 && (ids.empty() || ids[0] != bos)) ids.insert(ids.begin(), bos);
    return ids;
  }
  RETURN_IF_ERROR(CheckMessages(in.messages));
  ASSIGN_OR_RETURN(ChatFormat f, DetectChatFormat(tok->chat_template_source()));
  return EncodeSegments(*tok, RenderChatSegments(f, in.messages, true, tok->chat_template_source(), opt.first_turn),
                        opt.parse_special);
}

absl::StatusOr<std::vector<int32_t>> ChatTurnTokens(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                                    const std::string& reply, const PromptOptions& opt) {
  RETURN_IF_ERROR(CheckMessages(messages));
  ASSIGN_OR_RETURN(ChatFormat f, DetectChatFormat(tok.chat_template_source()));
  std::vector<ChatMessage> all = messages;
  all.push_back({"assistant", reply});
  // Encoded with the request's parse_special like every content: what a stateless client resending the
  // conversation with the same setting would get.
  return EncodeSegments(tok, RenderChatSegments(f, all, false, tok.chat_template_source(), opt.first_turn),
                        opt.parse_special);
}

}  // namespace titand
