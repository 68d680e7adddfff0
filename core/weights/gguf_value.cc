#include "core/weights/gguf_value.h"

namespace titand {

const char* GgufKindName(GgufValue::Kind kind) {
  using K = GgufValue::Kind;
  switch (kind) {
    case K::kU8: return "UINT8";
    case K::kI8: return "INT8";
    case K::kU16: return "UINT16";
    case K::kI16: return "INT16";
    case K::kU32: return "UINT32";
    case K::kI32: return "INT32";
    case K::kF32: return "FLOAT32";
    case K::kBool: return "BOOL";
    case K::kString: return "STRING";
    case K::kArray: return "ARRAY";
    case K::kU64: return "UINT64";
    case K::kI64: return "INT64";
    case K::kF64: return "FLOAT64";
  }
  return "UNKNOWN";
}

size_t GgufKindMinBytes(GgufValue::Kind kind) {
  using K = GgufValue::Kind;
  switch (kind) {
    case K::kU8:
    case K::kI8:
    case K::kBool:
      return 1;
    case K::kU16:
    case K::kI16:
      return 2;
    case K::kU32:
    case K::kI32:
    case K::kF32:
      return 4;
    case K::kU64:
    case K::kI64:
    case K::kF64:
    case K::kString:  // u64 length
      return 8;
    case K::kArray:  // u32 element kind + u64 count
      return 12;
  }
  return 0;
}

}  // namespace titand
