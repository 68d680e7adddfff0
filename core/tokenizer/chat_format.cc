#include "core/tokenizer/chat_format.h"

#include <vector>

#include "core/tokenizer/unicode_text.h"

namespace titand {
namespace {

bool Contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// Python str.strip() (what jinja's trim does): drops leading/trailing whitespace code points.
std::string PyStrip(const std::string& s) {
  std::vector<char32_t> cps;
  std::vector<uint32_t> off;
  DecodeUtf8(s, &cps, &off);
  const auto space = [](char32_t c) {
    return ClassifyCodepoint(c) == CharClass::kSpace || (c >= 0x1C && c <= 0x1F);
  };
  size_t a = 0, b = cps.size();
  while (a < b && space(cps[a])) ++a;
  while (b > a && space(cps[b - 1])) --b;
  return s.substr(off[a], off[b] - off[a]);
}

}  // namespace

absl::StatusOr<ChatFormat> DetectChatFormat(const std::string& template_source) {
  if (template_source.empty()) return ChatFormat::kRaw;
  if (Contains(template_source, "<|im_start|>") && Contains(template_source, "<|im_end|>")) {
    return ChatFormat::kChatML;
  }
  if (Contains(template_source, "<|start_header_id|>") && Contains(template_source, "<|eot_id|>")) {
    return ChatFormat::kLlama3;
  }
  return absl::InvalidArgumentError(
      "unrecognised chat template: neither ChatML (<|im_start|>/<|im_end|>) nor Llama 3 "
      "(<|start_header_id|>/<|eot_id|>); first 80 chars: " + template_source.substr(0, 80));
}

std::string DefaultSystemPrompt(const std::string& src) {
  // A system turn whose text is a plain literal in the template (not built from a message) is the
  // default one the template inserts when the conversation has none.
  for (const std::string opener : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
    for (size_t p = src.find(opener); p != std::string::npos; p = src.find(opener, p + 1)) {
      const size_t start = p + opener.size();
      const size_t end = src.find("<|im_end|>", start);
      if (end == std::string::npos) break;
      const std::string text = src.substr(start, end - start);
      if (text.empty() || text.find_first_of("'\"{}+\\") != std::string::npos) continue;
      return text;
    }
  }
  return "";
}

std::string RenderChat(ChatFormat format, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                       const std::string& template_source, bool first_turn) {
  std::string out;
  switch (format) {
    case ChatFormat::kChatML: {
      if (first_turn && !msgs.empty() && msgs[0].role != "system") {
        const std::string sys = DefaultSystemPrompt(template_source);
        if (!sys.empty()) out += "<|im_start|>system\n" + sys + "<|im_end|>\n";
      }
      for (const ChatMessage& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    }
    case ChatFormat::kLlama3: {
      for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0 && first_turn) out += "<|begin_of_text|>";
        out += "<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n" + PyStrip(msgs[i].content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }
    case ChatFormat::kRaw:
      for (const ChatMessage& m : msgs) out += m.content;
      break;
  }
  return out;
}

}  // namespace titand
