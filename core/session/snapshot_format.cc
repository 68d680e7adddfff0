#include "core/session/snapshot_format.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/common/sha256.h"
#include "core/common/status.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "snapshot format assumes a little-endian host");

namespace titand {
namespace {

using nlohmann::json;

// Bounds that keep every size computation far from overflow (checked before anything is allocated).
constexpr int64_t kMaxLayers = 1 << 12;
constexpr int64_t kMaxDim = 1 << 16;        // heads, head_dim, Dv
constexpr int64_t kMaxTokens = int64_t{1} << 40;
constexpr int64_t kMaxDataBytes = int64_t{1} << 50;

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": invalid snapshot header: ", what));
}

uint32_t LoadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void AppendU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }

absl::StatusOr<int64_t> GetInt(const json& obj, const char* key, int64_t lo, int64_t hi,
                               const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return Bad(source, absl::StrCat("missing integer '", key, "'"));
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) {
    return Bad(source, absl::StrCat("'", key, "' out of range"));
  }
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) return Bad(source, absl::StrCat("'", key, "' = ", v, " outside [", lo, ", ", hi, "]"));
  return v;
}

absl::StatusOr<std::string> GetStr(const json& obj, const char* key, const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return Bad(source, absl::StrCat("missing string '", key, "'"));
  return it->get<std::string>();
}

absl::StatusOr<bool> GetBool(const json& obj, const char* key, const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return Bad(source, absl::StrCat("missing boolean '", key, "'"));
  return it->get<bool>();
}

absl::StatusOr<std::vector<int64_t>> GetShape(const json& obj, const char* key, const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array() || it->size() > 8) {
    return Bad(source, absl::StrCat("missing shape '", key, "'"));
  }
  std::vector<int64_t> shape;
  for (const auto& d : *it) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > kMaxTokens) {
      return Bad(source, absl::StrCat("bad dimension in '", key, "'"));
    }
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

absl::StatusOr<SnapshotHeader> HeaderFromJson(const json& j, const std::string& source) {
  if (!j.is_object()) return Bad(source, "not a JSON object");
  SnapshotHeader h;
  SnapshotBinding& b = h.binding;
  ASSIGN_OR_RETURN(b.model_id, GetStr(j, "model_id", source));
  ASSIGN_OR_RETURN(b.adapter_id, GetStr(j, "adapter_id", source));
  ASSIGN_OR_RETURN(b.num_layers, GetInt(j, "num_layers", 0, kMaxLayers, source));
  ASSIGN_OR_RETURN(b.num_kv_heads, GetInt(j, "num_kv_heads", 1, kMaxDim, source));
  ASSIGN_OR_RETURN(b.head_dim, GetInt(j, "head_dim", 1, kMaxDim, source));
  ASSIGN_OR_RETURN(b.dtype, GetStr(j, "dtype", source));
  ASSIGN_OR_RETURN(h.num_tokens, GetInt(j, "num_tokens", 0, kMaxTokens, source));
  ASSIGN_OR_RETURN(h.state_bytes, GetInt(j, "state_bytes", 0, kMaxDataBytes, source));
  ASSIGN_OR_RETURN(const int64_t data_bytes, GetInt(j, "data_bytes", 0, kMaxDataBytes, source));
  auto pend = j.find("pending");
  if (pend == j.end() || !pend->is_array()) return Bad(source, "missing list 'pending'");
  for (const auto& t : *pend) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Bad(source, "bad token id in 'pending'");
    }
    h.pending.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return Bad(source, "missing list 'layers'");
  if (static_cast<int64_t>(layers->size()) != b.num_layers) {
    return Bad(source, absl::StrCat(layers->size(), " layer entries for num_layers = ", b.num_layers));
  }
  for (const auto& lj : *layers) {
    if (!lj.is_object()) return Bad(source, "layer entry is not an object");
    SnapshotLayerInfo l;
    ASSIGN_OR_RETURN(l.len, GetInt(lj, "len", 0, kMaxTokens, source));
    ASSIGN_OR_RETURN(l.has_kv, GetBool(lj, "has_kv", source));
    ASSIGN_OR_RETURN(l.has_memory, GetBool(lj, "has_memory", source));
    if (l.has_kv) {
      ASSIGN_OR_RETURN(std::string kv_dtype, GetStr(lj, "kv_dtype", source));
      ASSIGN_OR_RETURN(std::vector<int64_t> kv_shape, GetShape(lj, "kv_shape", source));
      if (kv_dtype != b.dtype) return Bad(source, absl::StrCat("kv_dtype ", kv_dtype, " != dtype ", b.dtype));
      if (kv_shape != std::vector<int64_t>{b.num_kv_heads, l.len, b.head_dim}) {
        return Bad(source, "kv_shape is not [num_kv_heads, len, head_dim]");
      }
    }
    if (l.has_memory) {
      ASSIGN_OR_RETURN(std::string mem_dtype, GetStr(lj, "memory_dtype", source));
      if (mem_dtype != "float32") return Bad(source, absl::StrCat("memory_dtype ", mem_dtype, " != float32"));
      ASSIGN_OR_RETURN(l.memory_shape, GetShape(lj, "memory_shape", source));
    }
    h.layers.push_back(std::move(l));
  }
  RETURN_IF_ERROR(ValidateSnapshotHeader(&h, source));
  if (h.data_bytes != data_bytes) {
    return Bad(source, absl::StrCat("data_bytes = ", data_bytes, " but the layers need ", h.data_bytes));
  }
  return h;
}

json HeaderToJson(const SnapshotHeader& h) {
  const SnapshotBinding& b = h.binding;
  json layers = json::array();
  for (const auto& l : h.layers) {
    json lj = {{"len", l.len}, {"has_kv", l.has_kv}, {"has_memory", l.has_memory}};
    if (l.has_kv) {
      lj["kv_dtype"] = b.dtype;
      lj["kv_shape"] = {b.num_kv_heads, l.len, b.head_dim};
    }
    if (l.has_memory) {
      lj["memory_dtype"] = "float32";
      lj["memory_shape"] = l.memory_shape;
    }
    layers.push_back(std::move(lj));
  }
  return json{{"model_id", b.model_id},       {"adapter_id", b.adapter_id}, {"num_layers", b.num_layers},
              {"num_kv_heads", b.num_kv_heads}, {"head_dim", b.head_dim},   {"dtype", b.dtype},
              {"num_tokens", h.num_tokens},   {"pending", h.pending},       {"state_bytes", h.state_bytes},
              {"data_bytes", h.data_bytes},   {"layers", std::move(layers)}};
}

}  // namespace

int64_t SnapshotDtypeBytes(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "bfloat16" || dtype == "float16") return 2;
  return 0;
}

absl::Status ValidateSnapshotHeader(SnapshotHeader* h, const std::string& source) {
  const SnapshotBinding& b = h->binding;
  const int64_t esize = SnapshotDtypeBytes(b.dtype);
  if (esize == 0) return Bad(source, absl::StrCat("unsupported dtype '", b.dtype, "'"));
  if (b.num_layers < 0 || b.num_layers > kMaxLayers || static_cast<int64_t>(h->layers.size()) != b.num_layers) {
    return Bad(source, absl::StrCat("num_layers = ", b.num_layers, " with ", h->layers.size(), " layers"));
  }
  if (b.num_kv_heads < 1 || b.num_kv_heads > kMaxDim || b.head_dim < 1 || b.head_dim > kMaxDim) {
    return Bad(source, "num_kv_heads / head_dim out of range");
  }
  if (h->num_tokens < 0 || h->num_tokens > kMaxTokens) return Bad(source, "num_tokens out of range");
  if (h->pending.size() > 1) return Bad(source, "more than one pending token");
  for (int32_t t : h->pending) {
    if (t < 0) return Bad(source, "negative pending token id");
  }
  // Sizes: every factor is bounded (len <= 2^40, dims <= 2^16), so products fit after the checks.
  int64_t data = 0;
  for (size_t i = 0; i < h->layers.size(); ++i) {
    const SnapshotLayerInfo& l = h->layers[i];
    const std::string where = absl::StrCat("layer ", i, ": ");
    if (l.len < 0 || l.len > h->num_tokens) {
      return Bad(source, absl::StrCat(where, "len = ", l.len, " outside [0, num_tokens = ", h->num_tokens, "]"));
    }
    if (!l.has_kv && l.len != 0) return Bad(source, where + "len > 0 without a KV cache");
    if (l.has_kv) {
      const int64_t per_tok = b.num_kv_heads * b.head_dim * esize;  // <= 2^34
      if (l.len > kMaxDataBytes / per_tok / 2) return Bad(source, where + "KV cache too large");
      data += 2 * per_tok * l.len;
    }
    if (l.has_memory) {
      const auto& s = l.memory_shape;
      if (s.size() != 3 || s[0] < 1 || s[0] > kMaxDim || s[1] != b.head_dim || s[2] < 1 || s[2] > kMaxDim) {
        return Bad(source, where + "memory_shape is not [H, head_dim, Dv]");
      }
      data += s[0] * s[1] * s[2] * 4;  // <= 2^50
    } else if (!l.memory_shape.empty()) {
      return Bad(source, where + "memory_shape without memory");
    }
    if (data > kMaxDataBytes) return Bad(source, "tensor data too large");
  }
  h->data_bytes = data;
  const int64_t pending_bytes = static_cast<int64_t>(h->pending.size() * sizeof(int32_t));
  if (h->state_bytes != data + pending_bytes) {
    return Bad(source, absl::StrCat("state_bytes = ", h->state_bytes, ", expected ", data + pending_bytes));
  }
  return absl::OkStatus();
}

std::string EncodeSnapshotHeader(const SnapshotHeader& h) {
  const std::string text = HeaderToJson(h).dump();
  std::string out(kSnapshotMagic, 8);
  AppendU32(&out, kSnapshotVersion);
  AppendU32(&out, static_cast<uint32_t>(text.size()));
  out += text;
  Sha256 sha;
  sha.Update(out.data(), out.size());
  const auto digest = sha.Final();
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

absl::StatusOr<SnapshotHeader> ParseSnapshotHeader(std::string_view bytes, const std::string& source) {
  const size_t magic_seen = std::min<size_t>(bytes.size(), 8);
  if (magic_seen > 0 && std::memcmp(bytes.data(), kSnapshotMagic, magic_seen) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not a titand session snapshot (magic '",
        absl::CEscape(absl::string_view(bytes.data(), magic_seen)), "', expected 'TTNDSESS')"));
  }
  if (bytes.size() < kSnapshotPrefixBytes) {
    return absl::DataLossError(absl::StrCat(source, ": truncated snapshot (", bytes.size(), " bytes)"));
  }
  const uint32_t version = LoadU32(bytes.data() + 8);
  if (version != kSnapshotVersion) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unknown snapshot format version ", version,
                                                   " (this build reads version ", kSnapshotVersion, ")"));
  }
  const uint32_t hlen = LoadU32(bytes.data() + 12);
  if (hlen > kSnapshotMaxHeaderBytes) {
    return absl::DataLossError(absl::StrCat(source, ": corrupt snapshot (header length ", hlen, ")"));
  }
  const size_t prefix = kSnapshotPrefixBytes + hlen;
  if (bytes.size() < prefix + kSnapshotDigestBytes) {
    return absl::DataLossError(
        absl::StrCat(source, ": truncated snapshot (", bytes.size(), " bytes, header needs ", prefix + 32, ")"));
  }
  Sha256 sha;
  sha.Update(bytes.data(), prefix);
  const auto digest = sha.Final();
  if (std::memcmp(digest.data(), bytes.data() + prefix, kSnapshotDigestBytes) != 0) {
    return absl::DataLossError(absl::StrCat(source, ": snapshot header checksum mismatch"));
  }
  const json j = json::parse(bytes.data() + kSnapshotPrefixBytes, bytes.data() + prefix, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(source, "header is not valid JSON");
  absl::StatusOr<SnapshotHeader> parsed;
  try {  // backstop: HeaderFromJson checks every type, so this should be unreachable
    parsed = HeaderFromJson(j, source);
  } catch (const std::exception& e) {
    return Bad(source, absl::StrCat("malformed header: ", e.what()));
  }
  ASSIGN_OR_RETURN(SnapshotHeader h, std::move(parsed));
  h.version = version;
  h.file_bytes = static_cast<int64_t>(prefix + kSnapshotDigestBytes) + h.data_bytes + kSnapshotDigestBytes;
  return h;
}

absl::Status CheckSnapshotBinding(const SnapshotBinding& found, const SnapshotBinding& expected,
                                  const std::string& source) {
  std::string diff;
  auto cmp = [&diff](const char* field, const auto& a, const auto& b) {
    if (diff.empty() && !(a == b)) diff = absl::StrCat(field, " differs: snapshot ", a, ", server ", b);
  };
  cmp("model_id", found.model_id, expected.model_id);
  cmp("adapter_id", found.adapter_id, expected.adapter_id);
  cmp("num_layers", found.num_layers, expected.num_layers);
  cmp("num_kv_heads", found.num_kv_heads, expected.num_kv_heads);
  cmp("head_dim", found.head_dim, expected.head_dim);
  cmp("dtype", found.dtype, expected.dtype);
  if (diff.empty()) return absl::OkStatus();
  auto name = [](const std::string& s) { return s.empty() ? std::string("(none)") : s; };
  return absl::FailedPreconditionError(absl::StrCat(
      source, ": snapshot was made for model ", name(found.model_id), " adapter ", name(found.adapter_id),
      "; this server runs model ", name(expected.model_id), " adapter ", name(expected.adapter_id), " (", diff,
      ")"));
}

}  // namespace titand
