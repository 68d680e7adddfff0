// One GGUF metadata value: a scalar of one of 12 kinds, or an array (of any kind, arrays included).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace titand {

struct GgufValue {
  // Values are the on-disk gguf_type ids.
  enum class Kind : uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
  };

  Kind kind = Kind::kU8;
  uint64_t u = 0;              // kU8, kU16, kU32, kU64, kBool (0 or 1)
  int64_t i = 0;               // kI8, kI16, kI32, kI64
  double f = 0.0;              // kF32 (exactly), kF64
  std::string str;             // kString (raw bytes, not validated as UTF-8)
  Kind elem_kind = Kind::kU8;  // kArray: kind of every element
  std::vector<GgufValue> array;

  bool IsUnsignedInt() const {
    return kind == Kind::kU8 || kind == Kind::kU16 || kind == Kind::kU32 || kind == Kind::kU64;
  }
  bool IsSignedInt() const {
    return kind == Kind::kI8 || kind == Kind::kI16 || kind == Kind::kI32 || kind == Kind::kI64;
  }
  bool IsFloat() const { return kind == Kind::kF32 || kind == Kind::kF64; }
};

// "UINT8", "INT8", ..., "FLOAT64" (gguf-py's GGUFValueType names); "UNKNOWN" otherwise.
const char* GgufKindName(GgufValue::Kind kind);

// Bytes a value of this kind occupies on disk: the fixed size for scalars, the minimum (an empty
// string: 8, an empty array: 12) for variable-size kinds. 0 for an unknown kind.
size_t GgufKindMinBytes(GgufValue::Kind kind);

}  // namespace titand
