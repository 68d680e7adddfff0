#include "core/tokenizer/unicode_text.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace titand {

CharClass ClassifyCodepoint(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return CharClass::kLetter;
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return CharClass::kSpace;
  return CharClass::kOther;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Matches the well-formed sequence at s[pos]: returns how many bytes of it are present and valid
// (0 for a byte that cannot lead a sequence) and sets *need to the full sequence length.
int ScanSequence(std::string_view s, size_t pos, int* need) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c = b(pos);
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0x80) {
    *need = 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    *need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    *need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    *need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *need = 1;
    return 0;
  }
  int k = 1;
  for (; k < *need && pos + k < s.size(); ++k) {
    const uint8_t x = b(pos + k);
    if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) break;
  }
  return k;
}

}  // namespace

int Utf8SequenceAt(std::string_view s, size_t pos, bool* incomplete) {
  int need;
  const int got = ScanSequence(s, pos, &need);
  *incomplete = got > 0 && got < need && pos + got == s.size();
  return got == need ? need : 0;
}

void DecodeUtf8(std::string_view s, std::vector<char32_t>* cps, std::vector<uint32_t>* offsets) {
  cps->clear();
  offsets->clear();
  cps->reserve(s.size());
  offsets->reserve(s.size() + 1);
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    offsets->push_back(static_cast<uint32_t>(i));
    if (c < 0x80) {
      cps->push_back(c);
      ++i;
      continue;
    }
    bool incomplete;
    const int len = Utf8SequenceAt(s, i, &incomplete);
    if (len == 0) {
      cps->push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = c & (0x7F >> len);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    cps->push_back(cp);
    i += len;
  }
  offsets->push_back(static_cast<uint32_t>(s.size()));
}

size_t AppendValidUtf8(std::string_view s, bool hold_tail, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    int need;
    const int got = ScanSequence(s, i, &need);
    if (got == need) {
      out->append(s.data() + i, need);
      i += need;
      continue;
    }
    if (hold_tail && got > 0 && i + got == s.size()) return i;  // may still be completed
    AppendUtf8(0xFFFD, out);  // one U+FFFD per maximal ill-formed subpart
    i += got > 0 ? got : 1;
  }
  return i;
}

std::string NfcNormalize(std::string_view s) {
  std::string checked;
  AppendValidUtf8(s, false, &checked);
  if (checked != s) {
    return std::string(s);
  }
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) return std::string(s);
  const icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  if (nfc->isNormalized(u, err) && U_SUCCESS(err)) return std::string(s);
  err = U_ZERO_ERROR;
  const icu::UnicodeString n = nfc->normalize(u, err);
  if (U_FAILURE(err)) return std::string(s);
  std::string out;
  n.toUTF8String(out);
  return out;
}

}  // namespace titand
