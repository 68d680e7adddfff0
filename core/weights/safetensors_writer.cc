#include "core/weights/safetensors_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace titand {

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, F32Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  // Header: {"__metadata__": {...}, name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}}.
  nlohmann::ordered_json hdr = nlohmann::ordered_json::object();
  if (!metadata.empty()) hdr["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__" || !names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad or duplicate tensor name '", name, "'"));
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": negative dim in '", name, "'"));
      numel *= static_cast<uint64_t>(d);
    }
    if (numel != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' has ", t.data.size(),
                                                     " values but its shape holds ", numel));
    }
    hdr[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + numel * 4}}};
    offset += numel * 4;
  }
  std::string json = hdr.dump();
  json.append((8 - json.size() % 8) % 8, ' ');

  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (fp == nullptr) {
    return absl::InternalError(absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  uint8_t len[8];
  for (int k = 0; k < 8; ++k) len[k] = static_cast<uint8_t>(static_cast<uint64_t>(json.size()) >> (8 * k));
  bool ok = std::fwrite(len, 1, 8, fp) == 8 && std::fwrite(json.data(), 1, json.size(), fp) == json.size();
  // Float data is written as little-endian bytes (the host order on every supported platform).
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    ok = t.data.empty() || std::fwrite(t.data.data(), 4, t.data.size(), fp) == t.data.size();
  }
  ok = (std::fflush(fp) == 0) && ok;
  ok = (::fsync(::fileno(fp)) == 0) && ok;
  ok = (std::fclose(fp) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace titand
