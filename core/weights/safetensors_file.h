// Reader for safetensors files (memory-mapped), plus discovery of a model directory's shards.
// Layout: u64 little-endian header length N | N bytes of JSON | data. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data start) and may hold a
// "__metadata__" object of string -> string. Errors name the file: NOT_FOUND (missing), DATA_LOSS
// (truncation, ranges beyond the file), INVALID_ARGUMENT (bad JSON, unsupported dtype, size mismatch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/weights/mapped_file.h"

namespace titand {

enum class StDtype { kF32, kF16, kBF16 };

// "F32", "F16", "BF16" (the safetensors spelling).
const char* StDtypeName(StDtype dtype);
size_t StDtypeBytes(StDtype dtype);

struct SafetensorsTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;  // C order (last dim fastest)
  const uint8_t* data = nullptr;  // into the mapping; not necessarily aligned
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // sorted by data offset
  const SafetensorsTensor* Find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Tensor converted to float32 in its C order; out is resized to the element count.
  absl::Status ReadAsFloat(const SafetensorsTensor& t, std::vector<float>* out) const;

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> map) : map_(std::move(map)) {}
  absl::Status Parse();
  absl::Status Error(absl::StatusCode code, const std::string& what) const;

  std::unique_ptr<MappedFile> map_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Safetensors files of a Hugging Face model directory: the shards named by
// model.safetensors.index.json's "weight_map" (sorted, unique, each must exist), else
// model.safetensors. NOT_FOUND if neither exists or a listed shard is missing.
absl::StatusOr<std::vector<std::string>> ListSafetensorsFiles(const std::string& dir);

}  // namespace titand
