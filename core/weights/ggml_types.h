// ggml tensor element types as stored in GGUF files, and their block geometry.
// A quantised tensor is a sequence of fixed-size blocks, each encoding GgmlBlockSize(t) consecutive
// elements in GgmlBlockBytes(t) bytes; rows (ggml dim 0) are whole numbers of blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace titand {

// Values are the on-disk ggml type ids.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kBF16 = 30,
};

// True if `id` is one of the types above.
bool IsSupportedGgmlType(uint32_t id);

// "F32", "Q4_K", ... (gguf-py's names); "UNKNOWN" for ids outside the enum.
const char* GgmlTypeName(GgmlType type);

// Elements per block (1 for the float types, 32 for Q*_0/Q*_1/Q8_0/IQ4_NL, 256 for the K quants).
int64_t GgmlBlockSize(GgmlType type);

// Bytes per block.
size_t GgmlBlockBytes(GgmlType type);

// Bytes used by `numel` elements: numel / block_size * block_bytes. INVALID_ARGUMENT if numel is
// negative or not a multiple of the block size, OUT_OF_RANGE on overflow.
absl::StatusOr<size_t> GgmlTensorBytes(GgmlType type, int64_t numel);

}  // namespace titand
