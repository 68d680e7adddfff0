// Builds GGUF byte images for the reader tests (header, metadata, tensor infos and data), with knobs
// to produce malformed files.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace titand {
namespace testing_util {

class Bytes {
 public:
  Bytes& U8(uint8_t v) { s_.push_back(static_cast<char>(v)); return *this; }
  Bytes& U16(uint16_t v) { return Le(v, 2); }
  Bytes& U32(uint32_t v) { return Le(v, 4); }
  Bytes& U64(uint64_t v) { return Le(v, 8); }
  Bytes& F32(float f) { uint32_t b; std::memcpy(&b, &f, 4); return U32(b); }
  Bytes& F64(double f) { uint64_t b; std::memcpy(&b, &f, 8); return U64(b); }
  Bytes& Str(const std::string& v) { U64(v.size()); s_ += v; return *this; }
  Bytes& Raw(const std::string& v) { s_ += v; return *this; }
  const std::string& str() const { return s_; }

 private:
  Bytes& Le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) s_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
    return *this;
  }
  std::string s_;
};

// One metadata entry: key, kind id, encoded value.
inline std::string Kv(const std::string& key, uint32_t kind, const std::string& value) {
  return Bytes().Str(key).U32(kind).Raw(value).str();
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order
  uint32_t type = 0;
  std::string data;
  int64_t offset_override = -1;  // relative data offset to write instead of the computed one
};

struct GgufSpec {
  char magic[5] = "GGUF";
  uint32_t version = 3;
  std::vector<std::string> kvs;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;  // used for layout; add a general.alignment kv to change what the file says
  int64_t n_kv_override = -1, n_tensors_override = -1;
};

inline std::string BuildGguf(const GgufSpec& spec) {
  Bytes b;
  b.Raw(std::string(spec.magic, 4)).U32(spec.version);
  b.U64(spec.n_tensors_override >= 0 ? spec.n_tensors_override : spec.tensors.size());
  b.U64(spec.n_kv_override >= 0 ? spec.n_kv_override : spec.kvs.size());
  for (const std::string& kv : spec.kvs) b.Raw(kv);
  uint64_t off = 0;
  for (const TensorSpec& t : spec.tensors) {
    b.Str(t.name).U32(t.dims.size());
    for (uint64_t d : t.dims) b.U64(d);
    b.U32(t.type).U64(t.offset_override >= 0 ? t.offset_override : off);
    off += (t.data.size() + spec.alignment - 1) / spec.alignment * spec.alignment;
  }
  std::string out = b.str();
  out.resize((out.size() + spec.alignment - 1) / spec.alignment * spec.alignment, '\0');
  for (size_t k = 0; k < spec.tensors.size(); ++k) {  // each padded: offsets stay as computed
    std::string d = spec.tensors[k].data;
    d.resize((d.size() + spec.alignment - 1) / spec.alignment * spec.alignment, '\0');
    out += d;
  }
  return out;
}

inline std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/titand_weights_" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), bytes.size());
  return path;
}

}  // namespace testing_util
}  // namespace titand
