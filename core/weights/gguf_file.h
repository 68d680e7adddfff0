// Reader for GGUF model files (v2 and v3, little-endian), memory-mapped.
// Layout: "GGUF" | u32 version | u64 n_tensors | u64 n_kv | n_kv x (string key, u32 kind, value)
//         | n_tensors x (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset)
//         | padding to general.alignment (default 32) | tensor data (offsets relative to here).
// Strings are u64 length + bytes. Every malformed input yields an absl error whose message starts with
// the file path: NOT_FOUND (missing file), DATA_LOSS (truncation, lengths/offsets beyond the file),
// INVALID_ARGUMENT (bad magic/version, unknown kinds/types, inconsistent shapes, duplicates).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/weights/ggml_types.h"
#include "core/weights/gguf_value.h"
#include "core/weights/mapped_file.h"

namespace titand {

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the fastest-varying dim (row length)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // absolute file offset of the first byte
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  uint32_t version() const { return version_; }

  // Metadata. Find returns nullptr for a missing key. The typed getters return NOT_FOUND for a missing
  // key and INVALID_ARGUMENT for a value of the wrong kind.
  const GgufValue* Find(std::string_view key) const;
  std::vector<std::string> MetadataKeys() const;  // in file order
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;   // any integer kind or bool
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // float or integer kinds
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  const uint8_t* data(const GgufTensorInfo& t) const { return map_->data() + t.offset; }
  uint64_t alignment() const { return alignment_; }

  // Whole tensor dequantised to float32, C-order with the ggml shape reversed
  // ([shape[n-1], ..., shape[0]]); out is resized to numel().
  absl::Status ReadAsFloat(const GgufTensorInfo& t, std::vector<float>* out) const;

 private:
  class Parser;
  static absl::StatusOr<std::unique_ptr<GgufFile>> OpenUnguarded(const std::string& path);
  explicit GgufFile(std::unique_ptr<MappedFile> map) : map_(std::move(map)) {}
  absl::Status Error(absl::StatusCode code, const std::string& what) const;
  absl::StatusOr<const GgufValue*> FindOrError(std::string_view key) const;

  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace titand
