// GPT-2 byte <-> unicode map used by byte-level BPE vocabularies. Bytes 0x21-0x7E, 0xA1-0xAC and
// 0xAE-0xFF stand for themselves (as code points); the other 68 bytes, in increasing order, map to
// U+0100, U+0101, ... U+0143. A vocabulary token is the UTF-8 of the mapped code points.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace titand {

// Code point standing for byte b.
char32_t ByteToCodepoint(uint8_t b);

// Byte for a mapped code point, or -1 if cp is not in the map's image.
int CodepointToByte(char32_t cp);

// UTF-8 spelling of raw bytes in the byte alphabet ("hi there" -> "hi\u0120there").
std::string BytesToTokenSpelling(std::string_view bytes);

// Raw bytes of a token spelling. Returns false (out unchanged) if some character is outside the byte
// alphabet or the spelling is not well-formed UTF-8.
bool TokenSpellingToBytes(std::string_view spelling, std::string* out);

}  // namespace titand
