#include "core/weights/model_identity.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/common/sha256.h"
#include "core/common/status.h"
#include "core/weights/safetensors_file.h"

namespace titand {
namespace {

std::string Hex16(const void* data, size_t n) { return Sha256Hex(data, n).substr(0, 16); }

}  // namespace

absl::StatusOr<std::string> GgufBaseModelId(const GgufFile& f) {
  std::string name;
  if (f.Find("general.name") != nullptr) {
    ASSIGN_OR_RETURN(name, f.GetString("general.name"));
  }
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(f.path(), ": no tensor token_embd.weight (needed for the base model identity)"));
  }
  // The reader has checked offset + nbytes against the file size; nbytes = numel / block * type_size.
  return absl::StrCat(name, "@", Hex16(f.data(*embd), embd->nbytes));
}

absl::StatusOr<std::string> SafetensorsBaseModelId(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(config_path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json cfg = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  std::string name;
  for (const char* key : {"_name_or_path", "model_type"}) {
    auto it = cfg.find(key);
    if (it != cfg.end() && it->is_string() && !it->get<std::string>().empty()) {
      name = it->get<std::string>();
      break;
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> shards, ListSafetensorsFiles(dir));
  for (const auto& path : shards) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> st, SafetensorsFile::Open(path));
    const SafetensorsTensor* t = st->Find("model.embed_tokens.weight");
    if (t != nullptr) return absl::StrCat(name, "@", Hex16(t->data, t->nbytes));
  }
  return absl::NotFoundError(
      absl::StrCat(dir, ": no tensor model.embed_tokens.weight in its safetensors files"));
}

}  // namespace titand
