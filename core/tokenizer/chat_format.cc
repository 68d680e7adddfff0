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

std::vector<ChatSegment> RenderChatSegments(ChatFormat format, const std::vector<ChatMessage>& msgs,
                                            bool add_generation_prompt, const std::string& template_source,
                                            bool first_turn) {
  std::vector<ChatSegment> out;
  const auto ctrl = [&](const char* marker) { out.push_back({marker, true}); };
  const auto text = [&](std::string t) { out.push_back({std::move(t), false}); };
  switch (format) {
    case ChatFormat::kChatML: {
      const auto message = [&](const std::string& role, const std::string& content) {
        ctrl("<|im_start|>");
        text(role + "\n" + content);
        ctrl("<|im_end|>");
        text("\n");
      };
      if (first_turn && !msgs.empty() && msgs[0].role != "system") {
        const std::string sys = DefaultSystemPrompt(template_source);
        if (!sys.empty()) message("system", sys);
      }
      for (const ChatMessage& m : msgs) message(m.role, m.content);
      if (add_generation_prompt) {
        ctrl("<|im_start|>");
        text("assistant\n");
      }
      break;
    }
    case ChatFormat::kLlama3: {
      const auto header = [&](const std::string& role) {
        ctrl("<|start_header_id|>");
        text(role);
        ctrl("<|end_header_id|>");
      };
      for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0 && first_turn) ctrl("<|begin_of_text|>");
        header(msgs[i].role);
        text("\n\n" + PyStrip(msgs[i].content));
        ctrl("<|eot_id|>");
      }
      if (add_generation_prompt) {
        header("assistant");
        text("\n\n");
      }
      break;
    }
    case ChatFormat::kRaw:
      for (const ChatMessage& m : msgs) text(m.content);
      break;
  }
  return out;
}

std::string RenderChat(ChatFormat format, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                       const std::string& template_source, bool first_turn) {
  std::string out;
  for (const ChatSegment& s : RenderChatSegments(format, msgs, add_generation_prompt, template_source, first_turn)) {
    out += s.text;
  }
  return out;
}

}  // namespace titand
