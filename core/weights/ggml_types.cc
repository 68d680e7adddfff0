#include "core/weights/ggml_types.h"

#include <limits>

#include "absl/strings/str_format.h"

namespace titand {

bool IsSupportedGgmlType(uint32_t id) {
  switch (static_cast<GgmlType>(id)) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
    case GgmlType::kIQ4_NL:
    case GgmlType::kBF16:
      return true;
  }
  return false;
}

const char* GgmlTypeName(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kQ4_1: return "Q4_1";
    case GgmlType::kQ5_0: return "Q5_0";
    case GgmlType::kQ5_1: return "Q5_1";
    case GgmlType::kQ8_0: return "Q8_0";
    case GgmlType::kQ4_K: return "Q4_K";
    case GgmlType::kQ5_K: return "Q5_K";
    case GgmlType::kQ6_K: return "Q6_K";
    case GgmlType::kIQ4_NL: return "IQ4_NL";
    case GgmlType::kBF16: return "BF16";
  }
  return "UNKNOWN";
}

int64_t GgmlBlockSize(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return 1;
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
    case GgmlType::kQ8_0:
    case GgmlType::kIQ4_NL:
      return 32;
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
      return 256;
  }
  return 0;
}

size_t GgmlBlockBytes(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return 4;
    case GgmlType::kF16: return 2;
    case GgmlType::kBF16: return 2;
    case GgmlType::kQ4_0: return 2 + 16;          // f16 d, 32 x 4-bit
    case GgmlType::kQ4_1: return 2 + 2 + 16;      // f16 d, f16 m, 32 x 4-bit
    case GgmlType::kQ5_0: return 2 + 4 + 16;      // f16 d, 32 high bits, 32 x 4-bit
    case GgmlType::kQ5_1: return 2 + 2 + 4 + 16;  // f16 d, f16 m, high bits, low nibbles
    case GgmlType::kQ8_0: return 2 + 32;          // f16 d, 32 x int8
    case GgmlType::kIQ4_NL: return 2 + 16;        // f16 d, 32 x 4-bit codebook index
    case GgmlType::kQ4_K: return 2 + 2 + 12 + 128;
    case GgmlType::kQ5_K: return 2 + 2 + 12 + 32 + 128;
    case GgmlType::kQ6_K: return 128 + 64 + 16 + 2;
  }
  return 0;
}

absl::StatusOr<size_t> GgmlTensorBytes(GgmlType type, int64_t numel) {
  const int64_t block = GgmlBlockSize(type);
  if (block == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unsupported tensor type %u", static_cast<uint32_t>(type)));
  }
  if (numel < 0 || numel % block != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d elements is not a multiple of the %s block size %d", numel, GgmlTypeName(type), block));
  }
  const uint64_t blocks = static_cast<uint64_t>(numel / block);
  const uint64_t bytes_per = GgmlBlockBytes(type);
  if (blocks > std::numeric_limits<uint64_t>::max() / bytes_per) {
    return absl::OutOfRangeError(absl::StrFormat("%d %s elements overflow a byte count", numel,
                                                 GgmlTypeName(type)));
  }
  return static_cast<size_t>(blocks * bytes_per);
}

}  // namespace titand
