#include "core/tokenizer/byte_map.h"

#include <array>
#include <vector>

#include "core/tokenizer/unicode_text.h"

namespace titand {
namespace {

struct Tables {
  std::array<char32_t, 256> to_cp;
  std::array<int16_t, 0x144> to_byte;  // every image code point is < U+0144
  Tables() {
    to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = self ? static_cast<char32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables* t = new Tables();
  return *t;
}

}  // namespace

char32_t ByteToCodepoint(uint8_t b) { return GetTables().to_cp[b]; }

int CodepointToByte(char32_t cp) { return cp < 0x144 ? GetTables().to_byte[cp] : -1; }

std::string BytesToTokenSpelling(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(c)), &out);
  return out;
}

bool TokenSpellingToBytes(std::string_view spelling, std::string* out) {
  std::vector<char32_t> cps;
  std::vector<uint32_t> offsets;
  DecodeUtf8(spelling, &cps, &offsets);
  std::string bytes;
  bytes.reserve(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    const int b = CodepointToByte(cps[i]);
    if (b < 0) return false;  // also catches U+FFFD standing for an ill-formed byte
    bytes.push_back(static_cast<char>(b));
  }
  *out = std::move(bytes);
  return true;
}

}  // namespace titand
