// Writes float32 tensors as a safetensors file, atomically (temp file in the same directory + rename).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace titand {

struct F32Tensor {
  std::vector<int64_t> shape;  // C order
  std::vector<float> data;     // product(shape) values
};

// Tensors are laid out in the given order; names must be unique, non-empty and not "__metadata__",
// and data.size() must equal the shape's element count (INVALID_ARGUMENT otherwise, nothing written).
// INTERNAL on I/O failure (the temp file is removed). The JSON header is padded with spaces to a
// multiple of 8 bytes so the data section starts aligned.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, F32Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace titand
