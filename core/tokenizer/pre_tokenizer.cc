#include "core/tokenizer/pre_tokenizer.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/unicode_text.h"

namespace titand {
namespace {

using C = CharClass;

// Code points of one text piece with their classes; every matcher returns the match length in code
// points starting at i (always >= 1, since every character belongs to some alternative).
struct Cursor {
  const char32_t* c;
  const CharClass* k;
  size_t n;

  bool Is(size_t i, char32_t ch) const { return i < n && c[i] == ch; }
  bool Cls(size_t i, CharClass cls) const { return i < n && k[i] == cls; }
  bool IsCrLf(size_t i) const { return i < n && (c[i] == '\r' || c[i] == '\n'); }
  size_t Run(size_t i, CharClass cls) const {
    while (i < n && k[i] == cls) ++i;
    return i;
  }

  // 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive (ASCII folding plus U+017F long s -> s).
  size_t Contraction(size_t i, bool icase) const {
    if (!Is(i, '\'')) return 0;
    const auto at = [&](size_t j, char ch) {
      if (j >= n) return false;
      char32_t x = c[j];
      if (icase) {
        if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
        if (x == 0x17F) x = 's';
      }
      return x == static_cast<char32_t>(ch);
    };
    if (at(i + 1, 's') || at(i + 1, 't') || at(i + 1, 'm') || at(i + 1, 'd')) return 2;
    if ((at(i + 1, 'r') && at(i + 2, 'e')) || (at(i + 1, 'v') && at(i + 2, 'e')) ||
        (at(i + 1, 'l') && at(i + 2, 'l'))) {
      return 3;
    }
    return 0;
  }

  // \s+(?!\S)|\s+ at a whitespace char: the whole run if it ends the text, else all but its last
  // char (which then starts the next word), but at least one char.
  size_t SpaceRun(size_t i) const {
    const size_t j = Run(i, C::kSpace);
    if (j == n) return j - i;
    return j - i >= 2 ? j - 1 - i : 1;
  }

  size_t Gpt2(size_t i) const {
    if (size_t m = Contraction(i, false)) return m;
    const size_t s = Is(i, ' ') ? i + 1 : i;  // the optional leading space
    if (Cls(s, C::kLetter)) return Run(s, C::kLetter) - i;
    if (Cls(s, C::kNumber)) return Run(s, C::kNumber) - i;
    if (Cls(s, C::kOther)) return Run(s, C::kOther) - i;
    if (Cls(i, C::kSpace)) return SpaceRun(i);
    return 1;
  }

  size_t Llama3(size_t i, size_t max_digits) const {
    if (size_t m = Contraction(i, true)) return m;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!Cls(i, C::kLetter) && !Cls(i, C::kNumber) && !IsCrLf(i) && Cls(i + 1, C::kLetter)) {
      return Run(i + 1, C::kLetter) - i;
    }
    if (Cls(i, C::kLetter)) return Run(i, C::kLetter) - i;
    if (Cls(i, C::kNumber)) {
      size_t j = i;
      while (j < n && k[j] == C::kNumber && j - i < max_digits) ++j;
      return j - i;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t s = Is(i, ' ') ? i + 1 : i;
    if (Cls(s, C::kOther)) {
      size_t j = Run(s, C::kOther);
      while (IsCrLf(j)) ++j;
      return j - i;
    }
    if (Cls(i, C::kSpace)) {
      // \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run.
      const size_t j = Run(i, C::kSpace);
      for (size_t m = j; m > i; --m) {
        if (IsCrLf(m - 1)) return m - i;
      }
      return SpaceRun(i);
    }
    return 1;
  }
};

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizer::ForName(std::string_view name) {
  if (name == "gpt2" || name == "default") return PreTokenizer(Kind::kGpt2);
  if (name == "smollm") return PreTokenizer(Kind::kSmolLm);
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return PreTokenizer(Kind::kLlama3);
  if (name == "qwen2" || name == "deepseek-r1-qwen") return PreTokenizer(Kind::kQwen2);
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported pre-tokenizer '", std::string(name),
                   "' (supported: gpt2, smollm, llama-bpe/llama3, qwen2)"));
}

void PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* words) const {
  if (text.empty()) return;
  std::vector<char32_t> cps;
  std::vector<uint32_t> off;
  DecodeUtf8(text, &cps, &off);
  std::vector<CharClass> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = ClassifyCodepoint(cps[i]);

  const auto emit = [&](size_t a, size_t b) { words->push_back(text.substr(off[a], off[b] - off[a])); };
  const auto run_pattern = [&](size_t begin, size_t end) {
    Cursor cur{cps.data() + begin, cls.data() + begin, end - begin};
    size_t i = 0;
    while (i < cur.n) {
      size_t m;
      switch (kind_) {
        case Kind::kLlama3: m = cur.Llama3(i, 3); break;
        case Kind::kQwen2: m = cur.Llama3(i, 1); break;
        default: m = cur.Gpt2(i); break;
      }
      emit(begin + i, begin + i + m);
      i += m;
    }
  };

  if (kind_ != Kind::kSmolLm) {
    run_pattern(0, cps.size());
    return;
  }
  // smollm: each number character is its own word; the gpt2 pattern runs on the text between.
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (cls[i] != C::kNumber) continue;
    run_pattern(start, i);
    emit(i, i + 1);
    start = i + 1;
  }
  run_pattern(start, cps.size());
}

}  // namespace titand
