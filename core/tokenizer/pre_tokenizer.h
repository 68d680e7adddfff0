// Pre-tokenizers of byte-level BPE vocabularies: split text into words that BPE encodes separately.
// Each is a hand-coded equivalent of a leftmost-first regex (Oniguruma semantics, as HF tokenizers
// runs it), with L = \p{L}, N = \p{N}, \s = White_Space, "other" = [^\s\p{L}\p{N}]:
//   gpt2   : 's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?other+|\s+(?!\S)|\s+
//   smollm : every N char isolated first, then gpt2 on the pieces between
//   llama3 : (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nLN]?L+|N{1,3}| ?other+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2  : as llama3 with N (single digits) instead of N{1,3}
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace titand {

class PreTokenizer {
 public:
  enum class Kind { kGpt2, kSmolLm, kLlama3, kQwen2 };

  // Names as in GGUF tokenizer.ggml.pre: "gpt2", "smollm", "llama-bpe" / "llama3" / "llama-v3",
  // "qwen2" / "deepseek-r1-qwen". Other names are INVALID_ARGUMENT.
  static absl::StatusOr<PreTokenizer> ForName(std::string_view name);
  explicit PreTokenizer(Kind kind) : kind_(kind) {}

  Kind kind() const { return kind_; }

  // Appends the words of text (views into text, in order, covering it exactly) to *words.
  void Split(std::string_view text, std::vector<std::string_view>* words) const;

 private:
  Kind kind_;
};

}  // namespace titand
