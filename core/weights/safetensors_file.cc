#include "core/weights/safetensors_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/status.h"
#include "core/weights/half.h"
#include "nlohmann/json.hpp"

namespace titand {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // same cap as the reference implementation

bool ParseDtype(const std::string& s, StDtype* out) {
  if (s == "F32") *out = StDtype::kF32;
  else if (s == "F16") *out = StDtype::kF16;
  else if (s == "BF16") *out = StDtype::kBF16;
  else return false;
  return true;
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

const char* StDtypeName(StDtype dtype) {
  switch (dtype) {
    case StDtype::kF32: return "F32";
    case StDtype::kF16: return "F16";
    case StDtype::kBF16: return "BF16";
  }
  return "UNKNOWN";
}

size_t StDtypeBytes(StDtype dtype) { return dtype == StDtype::kF32 ? 4 : 2; }

absl::Status SafetensorsFile::Error(absl::StatusCode code, const std::string& what) const {
  return absl::Status(code, absl::StrCat(path(), ": ", what));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(auto map, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile(std::move(map)));
  try {  // backstop: the checks in Parse should make this unreachable
    RETURN_IF_ERROR(f->Parse());
  } catch (const std::bad_alloc&) {
    return f->Error(absl::StatusCode::kResourceExhausted, "header too large for memory");
  } catch (const std::exception& e) {
    return f->Error(absl::StatusCode::kInvalidArgument, absl::StrCat("malformed header: ", e.what()));
  }
  return f;
}

absl::Status SafetensorsFile::Parse() {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const auto kLoss = absl::StatusCode::kDataLoss;
  const uint64_t size = map_->size();
  if (size < 8) return Error(kLoss, absl::StrFormat("truncated header length (%u bytes)", size));
  const uint64_t n = LoadU64(map_->data());
  if (n > kMaxHeaderBytes) return Error(kInvalid, absl::StrFormat("header length %u is too large", n));
  if (n > size - 8) {
    return Error(kLoss, absl::StrFormat("header length %u exceeds the %u bytes after it", n, size - 8));
  }
  const char* hdr = reinterpret_cast<const char*>(map_->data() + 8);
  nlohmann::json j = nlohmann::json::parse(hdr, hdr + n, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(kInvalid, "header is not valid JSON");
  if (!j.is_object()) return Error(kInvalid, "header JSON is not an object");

  const uint8_t* data = map_->data() + 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // (begin, end), parallel to tensors_
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return Error(kInvalid, "__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) {
          return Error(kInvalid, absl::StrCat("__metadata__ value of '", m.key(), "' is not a string"));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = absl::StrCat("tensor '", name, "'");
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      return Error(kInvalid, what + " needs dtype, shape and data_offsets");
    }
    SafetensorsTensor t;
    t.name = name;
    if (!e["dtype"].is_string() || !ParseDtype(e["dtype"].get<std::string>(), &t.dtype)) {
      return Error(kInvalid, absl::StrCat(what, ": unsupported dtype ", e["dtype"].dump(),
                                          " (F32, F16 and BF16 are supported)"));
    }
    const nlohmann::json& shape = e["shape"];
    if (!shape.is_array()) return Error(kInvalid, what + ": shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) return Error(kInvalid, what + ": shape has a non-integer entry");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim > 0 && numel > (std::numeric_limits<uint64_t>::max() / 8) / dim)) {
        return Error(kInvalid, what + ": shape overflows");
      }
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const nlohmann::json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return Error(kInvalid, what + ": data_offsets must be two non-negative integers");
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Error(kLoss, absl::StrFormat("%s: data_offsets [%u, %u) lie outside the %u-byte data "
                                          "section", what, begin, end, data_size));
    }
    if (end - begin != numel * StDtypeBytes(t.dtype)) {
      return Error(kInvalid, absl::StrFormat("%s: %u bytes of data but shape and dtype %s need %u", what,
                                             end - begin, StDtypeName(t.dtype),
                                             numel * StDtypeBytes(t.dtype)));
    }
    t.data = data + begin;
    t.nbytes = static_cast<size_t>(end - begin);
    tensors_.push_back(std::move(t));
    ranges.emplace_back(begin, end);
  }
  // Order by data offset and reject overlapping ranges.
  std::vector<size_t> order(tensors_.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  std::vector<SafetensorsTensor> sorted;
  sorted.reserve(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    if (k > 0 && ranges[order[k]].first < ranges[order[k - 1]].second) {
      return Error(kInvalid, absl::StrCat("tensors '", tensors_[order[k - 1]].name, "' and '",
                                          tensors_[order[k]].name, "' overlap"));
    }
    sorted.push_back(std::move(tensors_[order[k]]));
  }
  tensors_ = std::move(sorted);
  for (size_t k = 0; k < tensors_.size(); ++k) index_.emplace(tensors_[k].name, k);
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::Status SafetensorsFile::ReadAsFloat(const SafetensorsTensor& t, std::vector<float>* out) const {
  const size_t n = t.nbytes / StDtypeBytes(t.dtype);
  out->resize(n);
  switch (t.dtype) {
    case StDtype::kF32:
      if (n > 0) std::memcpy(out->data(), t.data, n * 4);
      break;
    case StDtype::kF16:
      for (size_t i = 0; i < n; ++i) (*out)[i] = HalfToFloat(LoadU16(t.data + 2 * i));
      break;
    case StDtype::kBF16:
      for (size_t i = 0; i < n; ++i) (*out)[i] = Bf16ToFloat(LoadU16(t.data + 2 * i));
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListSafetensorsFiles(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (IsFile(index_path)) {
    std::ifstream in(index_path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": no weight_map object"));
    }
    std::set<std::string> shards;
    for (const auto& v : j["weight_map"]) {
      if (!v.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map value not a string"));
      }
      const std::string s = v.get<std::string>();
      if (s.empty() || s.find('/') != std::string::npos || s == "." || s == "..") {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": bad shard name '", s, "'"));
      }
      shards.insert(s);
    }
    if (shards.empty()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": empty weight_map"));
    std::vector<std::string> out;
    for (const std::string& s : shards) {
      const std::string p = dir + "/" + s;
      if (!IsFile(p)) return absl::NotFoundError(absl::StrCat(index_path, ": shard ", p, " is missing"));
      out.push_back(p);
    }
    return out;
  }
  const std::string single = dir + "/model.safetensors";
  if (IsFile(single)) return std::vector<std::string>{single};
  return absl::NotFoundError(
      absl::StrCat(dir, ": neither model.safetensors nor model.safetensors.index.json found"));
}

}  // namespace titand
