// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama 3, Qwen2).
// Encode: (1) added tokens (control: GGUF token type 3; user-defined: 4) are cut out of the text first,
// longest match at the leftmost position (control ones only when parse_special); (2) each remaining
// piece is optionally NFC-normalised, split into words by the pre-tokenizer, and (3) each word's raw
// bytes are BPE-merged. Decode concatenates TokenBytes (GPT-2 byte map inverted; a spelling with a
// character outside the byte alphabet stands for its own UTF-8), returning raw bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/pre_tokenizer.h"

namespace titand {

class GgufFile;

// GGUF token types.
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

struct TokenizerSpec {
  std::vector<std::string> tokens;       // spellings, id = index
  std::vector<std::string> merges;       // "a b", rank = index
  std::vector<int32_t> token_types;      // empty = all normal; else one per token
  std::string pre;                       // "smollm", "llama-bpe", "qwen2", "gpt2"
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;
  bool add_bos = false;
  std::string chat_template;
  bool ignore_merges = false;  // Llama 3: a word that is a vocabulary token is not BPE-merged
  bool nfc = false;            // NFC-normalise text pieces before pre-tokenizing (Qwen2 tokenizer.json)
};

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);
  // tokenizer.ggml.{model (must be "gpt2"), pre, tokens, merges, token_type, bos_token_id,
  // eos_token_id, padding_token_id, add_bos_token} and tokenizer.chat_template.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& f);
  // tokenizer.json (BPE model, added_tokens, pre_tokenizer recognised from its structure/regex) and
  // tokenizer_config.json / chat_template.jinja when present.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHfDir(const std::string& dir);

  // BOS (when add_bos) + EncodeText. parse_special: control-token spellings in the text become those
  // tokens; false = they are literal text (user-defined added tokens are matched either way).
  std::vector<int32_t> Encode(std::string_view text, bool parse_special = true) const;
  // The text's tokens without a BOS. Bytes with no token are not dropped silently: callers check
  // UTF-8 first (every byte of well-formed UTF-8 has a byte token in a byte-level vocabulary).
  std::vector<int32_t> EncodeText(std::string_view text, bool parse_special) const;
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  const std::string& TokenBytes(int32_t id) const;  // empty for an out-of-range id
  bool IsSpecial(int32_t id) const;                 // control / unknown tokens
  std::optional<int32_t> TokenId(std::string_view token) const;  // by vocabulary spelling

  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  int32_t pad_id() const { return spec_.pad_id; }
  bool add_bos() const { return spec_.add_bos; }
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  const std::string& pre() const { return spec_.pre; }
  const std::string& chat_template_source() const { return spec_.chat_template; }

 private:
  Tokenizer(TokenizerSpec spec, BpeModel bpe, PreTokenizer pre)
      : spec_(std::move(spec)), bpe_(std::move(bpe)), pre_tok_(pre) {}
  int32_t TypeOf(int32_t id) const;
  // Longest added token starting at text[pos], or -1.
  int32_t MatchAdded(std::string_view text, size_t pos, bool parse_special) const;
  void EncodePlain(std::string_view text, std::vector<int32_t>* out,
                   std::unordered_map<std::string_view, std::vector<int32_t>>* cache) const;

  TokenizerSpec spec_;
  BpeModel bpe_;
  PreTokenizer pre_tok_;
  std::vector<std::string> token_bytes_;
  std::unordered_map<std::string, int32_t> spelling_to_id_;
  std::vector<int32_t> added_by_first_byte_[256];  // added token ids, longest first
  std::vector<int32_t> stop_ids_;
};

}  // namespace titand
