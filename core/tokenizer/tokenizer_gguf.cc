// Tokenizer::FromGguf: reads llama.cpp's tokenizer.ggml.* metadata into a TokenizerSpec.
#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/tokenizer/tokenizer.h"
#include "core/weights/gguf_file.h"

namespace titand {
namespace {

// Optional integer key: absent -> fallback; present but not an integer -> error.
absl::StatusOr<int64_t> IntOr(const GgufFile& f, std::string_view key, int64_t fallback) {
  if (f.Find(key) == nullptr) return fallback;
  return f.GetInt(key);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& f) {
  ASSIGN_OR_RETURN(std::string model, f.GetString("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat(
        f.path(), ": tokenizer.ggml.model '", model, "' is not supported (only byte-level BPE 'gpt2')"));
  }
  TokenizerSpec spec;
  ASSIGN_OR_RETURN(spec.tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  ASSIGN_OR_RETURN(spec.merges, f.GetStringArray("tokenizer.ggml.merges"));
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    ASSIGN_OR_RETURN(std::vector<int64_t> types, f.GetIntArray("tokenizer.ggml.token_type"));
    spec.token_types.assign(types.begin(), types.end());
  }
  if (f.Find("tokenizer.ggml.pre") != nullptr) {
    ASSIGN_OR_RETURN(spec.pre, f.GetString("tokenizer.ggml.pre"));
  }
  ASSIGN_OR_RETURN(int64_t bos, IntOr(f, "tokenizer.ggml.bos_token_id", -1));
  ASSIGN_OR_RETURN(int64_t eos, IntOr(f, "tokenizer.ggml.eos_token_id", -1));
  ASSIGN_OR_RETURN(int64_t pad, IntOr(f, "tokenizer.ggml.padding_token_id", -1));
  ASSIGN_OR_RETURN(int64_t add_bos, IntOr(f, "tokenizer.ggml.add_bos_token", 0));
  const int64_t n = static_cast<int64_t>(spec.tokens.size());
  const auto id_or_none = [n](int64_t id) { return id >= 0 && id < n ? static_cast<int32_t>(id) : -1; };
  spec.bos_id = id_or_none(bos);
  spec.eos_id = id_or_none(eos);
  spec.pad_id = id_or_none(pad);
  spec.add_bos = add_bos != 0 && spec.bos_id >= 0;
  if (f.Find("tokenizer.chat_template") != nullptr) {
    ASSIGN_OR_RETURN(spec.chat_template, f.GetString("tokenizer.chat_template"));
  }
  // llama.cpp treats Llama 3 words that are whole vocabulary tokens as such (HF: ignore_merges).
  spec.ignore_merges = spec.pre == "llama-bpe" || spec.pre == "llama3" || spec.pre == "llama-v3";
  auto t = Create(std::move(spec));
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(f.path(), ": ", t.status().message()));
  return t;
}

}  // namespace titand
