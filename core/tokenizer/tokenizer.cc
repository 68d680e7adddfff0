#include "core/tokenizer/tokenizer.h"

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/tokenizer/byte_map.h"
#include "core/tokenizer/unicode_text.h"

namespace titand {
namespace {

// End-of-turn / end-of-text spellings that stop generation when present in the vocabulary.
constexpr const char* kStopSpellings[] = {
    "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "<|eom_id|>",
    "<end_of_turn>", "<|end|>", "</s>",
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) return absl::InvalidArgumentError("tokenizer: vocabulary too large");
  if (!spec.token_types.empty() && spec.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", spec.token_types.size(),
                                                   " token types for ", n, " tokens"));
  }
  for (const auto& [name, id] : {std::pair<const char*, int32_t>{"bos", spec.bos_id},
                                 {"eos", spec.eos_id}, {"pad", spec.pad_id}}) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", name, " id ", id, " out of range"));
    }
  }
  if (spec.add_bos && spec.bos_id < 0) {
    return absl::InvalidArgumentError("tokenizer: add_bos set but no bos token");
  }
  if (spec.pre.empty()) spec.pre = "gpt2";
  ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizer::ForName(spec.pre));
  ASSIGN_OR_RETURN(BpeModel bpe, BpeModel::Create(spec.tokens, spec.merges, spec.ignore_merges));

  std::unique_ptr<Tokenizer> t(new Tokenizer(std::move(spec), std::move(bpe), pre));
  const TokenizerSpec& s = t->spec_;
  t->token_bytes_.resize(n);
  t->spelling_to_id_.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = static_cast<int32_t>(i);
    if (!TokenSpellingToBytes(s.tokens[i], &t->token_bytes_[i])) t->token_bytes_[i] = s.tokens[i];
    t->spelling_to_id_.emplace(s.tokens[i], id);
    const int32_t type = t->TypeOf(id);
    if ((type == kTokenControl || type == kTokenUserDefined) && !s.tokens[i].empty()) {
      t->added_by_first_byte_[static_cast<uint8_t>(s.tokens[i][0])].push_back(id);
    }
  }
  for (auto& ids : t->added_by_first_byte_) {
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      return s.tokens[a].size() > s.tokens[b].size();
    });
  }
  if (s.eos_id >= 0) t->stop_ids_.push_back(s.eos_id);
  for (const char* sp : kStopSpellings) {
    const auto id = t->TokenId(sp);
    if (id && std::find(t->stop_ids_.begin(), t->stop_ids_.end(), *id) == t->stop_ids_.end()) {
      t->stop_ids_.push_back(*id);
    }
  }
  return t;
}

int32_t Tokenizer::TypeOf(int32_t id) const {
  return spec_.token_types.empty() ? kTokenNormal : spec_.token_types[id];
}

int32_t Tokenizer::MatchAdded(std::string_view text, size_t pos, bool parse_special) const {
  for (int32_t id : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    if (!parse_special && TypeOf(id) == kTokenControl) continue;
    const std::string& sp = spec_.tokens[id];
    if (text.size() - pos >= sp.size() && text.compare(pos, sp.size(), sp) == 0) return id;
  }
  return -1;
}

void Tokenizer::EncodePlain(std::string_view text, std::vector<int32_t>* out,
                            std::unordered_map<std::string_view, std::vector<int32_t>>* cache) const {
  thread_local std::vector<std::string_view> words;
  words.clear();
  pre_tok_.Split(text, &words);
  for (std::string_view w : words) {
    auto it = cache->find(w);
    if (it == cache->end()) {
      std::vector<int32_t> ids;
      bpe_.EncodeWord(w, &ids);
      it = cache->emplace(w, std::move(ids)).first;
    }
    out->insert(out->end(), it->second.begin(), it->second.end());
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  if (spec_.add_bos && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  std::vector<int32_t> body = EncodeText(text, parse_special);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<int32_t> Tokenizer::EncodeText(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;  // word -> ids, this call only
  std::deque<std::string> normalized;                                // keeps NFC pieces alive
  const auto plain = [&](std::string_view piece) {
    if (piece.empty()) return;
    if (spec_.nfc) {
      normalized.push_back(NfcNormalize(piece));
      piece = normalized.back();
    }
    EncodePlain(piece, &out, &cache);
  };
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const int32_t id = MatchAdded(text, pos, parse_special);
    if (id < 0) {
      ++pos;
      continue;
    }
    plain(text.substr(start, pos - start));
    out.push_back(id);
    pos += spec_.tokens[id].size();
    start = pos;
  }
  plain(text.substr(start));
  return out;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && IsSpecial(id)) continue;
    out += token_bytes_[id];
  }
  return out;
}

const std::string& Tokenizer::TokenBytes(int32_t id) const {
  static const std::string* empty = new std::string();
  return id >= 0 && id < vocab_size() ? token_bytes_[id] : *empty;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  const int32_t type = TypeOf(id);
  return type == kTokenControl || type == kTokenUnknown;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  const auto it = spelling_to_id_.find(std::string(token));
  if (it == spelling_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace titand
