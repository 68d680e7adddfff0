// IEEE binary16 (fp16) and bfloat16 -> float32 conversion, exact for every input (subnormals, inf, NaN).
#pragma once

#include <cstdint>
#include <cstring>

namespace titand {

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// fp16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return BitsToFloat(sign);  // +-0
    // Subnormal mant * 2^-24: shift until the implicit bit (bit 10) appears, lowering the exponent.
    int shifts = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shifts;
    }
    return BitsToFloat(sign | static_cast<uint32_t>(113 - shifts) << 23 | (mant & 0x3ffu) << 13);
  }
  return BitsToFloat(sign | (exp + 112u) << 23 | mant << 13);  // rebias 15 -> 127
}

// bf16 is the top half of a float32.
inline float Bf16ToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

// Little-endian loads from unaligned memory.
inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
inline uint64_t LoadU64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadU32(p)) | static_cast<uint64_t>(LoadU32(p + 4)) << 32;
}

}  // namespace titand
