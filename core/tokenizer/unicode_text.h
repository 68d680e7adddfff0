// UTF-8 and Unicode-category helpers shared by the pre-tokenizers and the detokenizer.
// Categories come from ICU (uc): L = Lu|Ll|Lt|Lm|Lo, N = Nd|Nl|No, space = White_Space property
// (the \s of Oniguruma / Rust regex in Unicode mode: U+0009-000D, U+0020, U+0085, Zs, Zl, Zp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace titand {

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass ClassifyCodepoint(char32_t cp);

// Appends the UTF-8 encoding of cp (cp must be a scalar value <= 0x10FFFF).
void AppendUtf8(char32_t cp, std::string* out);

// Length of the well-formed UTF-8 sequence starting at s[pos] (1-4), or 0 if the bytes there do not
// start a well-formed sequence (Unicode Table 3-7). Sets *incomplete when the bytes up to the end of s
// are a proper prefix of a well-formed sequence (more bytes could complete it).
int Utf8SequenceAt(std::string_view s, size_t pos, bool* incomplete);

// Text as code points: cps[i] starts at byte offsets[i]; offsets has cps.size()+1 entries (the last is
// s.size()). A byte that does not start a well-formed sequence becomes U+FFFD covering that one byte.
void DecodeUtf8(std::string_view s, std::vector<char32_t>* cps, std::vector<uint32_t>* offsets);

// Appends s to out with every maximal ill-formed subpart replaced by U+FFFD (the W3C / Python
// "replace" policy). If hold_tail, a trailing incomplete-but-valid prefix is not consumed.
// Returns the number of bytes of s consumed.
size_t AppendValidUtf8(std::string_view s, bool hold_tail, std::string* out);

// Unicode NFC normalisation (ICU). Ill-formed input is returned unchanged.
std::string NfcNormalize(std::string_view s);

}  // namespace titand
