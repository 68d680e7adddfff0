#include "core/weights/gguf_file.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/status.h"
#include "core/weights/dequant.h"
#include "core/weights/half.h"

namespace titand {
namespace {

constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are rejected (stack guard)
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr size_t kTensorInfoMinBytes = 8 + 4 + 4 + 8;  // empty name, 0 dims, type, offset
constexpr size_t kKvMinBytes = 8 + 4 + 1;               // empty key, kind, 1-byte value

}  // namespace

// Bounds-checked little-endian cursor over the mapped file. Every failure names the file.
class GgufFile::Parser {
 public:
  Parser(const GgufFile& f) : f_(f), data_(f.map_->data()), size_(f.map_->size()) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  void Skip(size_t n) { pos_ += n; }  // only after Need(n)

  absl::Status Need(size_t n, const std::string& what) {
    if (n > remaining()) {
      return f_.Error(absl::StatusCode::kDataLoss,
                      absl::StrFormat("truncated %s at offset %u (need %u bytes, %u left)", what, pos_,
                                      n, remaining()));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<uint32_t> U32(const std::string& what) {
    RETURN_IF_ERROR(Need(4, what));
    const uint32_t v = LoadU32(data_ + pos_);
    pos_ += 4;
    return v;
  }
  absl::StatusOr<uint64_t> U64(const std::string& what) {
    RETURN_IF_ERROR(Need(8, what));
    const uint64_t v = LoadU64(data_ + pos_);
    pos_ += 8;
    return v;
  }
  absl::StatusOr<std::string> String(const std::string& what) {
    ASSIGN_OR_RETURN(const uint64_t len, U64(what));
    if (len > remaining()) {
      return f_.Error(absl::StatusCode::kDataLoss,
                      absl::StrFormat("%s: string length %u at offset %u exceeds the %u bytes left", what,
                                      len, pos_ - 8, remaining()));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  absl::StatusOr<GgufValue::Kind> Kind(const std::string& what) {
    ASSIGN_OR_RETURN(const uint32_t k, U32(what));
    if (k > static_cast<uint32_t>(GgufValue::Kind::kF64)) {
      return f_.Error(absl::StatusCode::kInvalidArgument,
                      absl::StrFormat("%s: unknown value type %u at offset %u", what, k, pos_ - 4));
    }
    return static_cast<GgufValue::Kind>(k);
  }

  // Reads one value of `kind` into *v (arrays recursively).
  absl::Status Value(GgufValue::Kind kind, int depth, const std::string& what, GgufValue* v) {
    using K = GgufValue::Kind;
    v->kind = kind;
    const size_t fixed = kind == K::kString || kind == K::kArray ? 0 : GgufKindMinBytes(kind);
    if (fixed > 0) {
      RETURN_IF_ERROR(Need(fixed, what));
      const uint8_t* p = data_ + pos_;
      pos_ += fixed;
      switch (kind) {
        case K::kU8: v->u = p[0]; break;
        case K::kI8: v->i = static_cast<int8_t>(p[0]); break;
        case K::kBool:
          if (p[0] > 1) {
            return f_.Error(absl::StatusCode::kInvalidArgument,
                            absl::StrFormat("%s: bool byte %u is neither 0 nor 1", what, p[0]));
          }
          v->u = p[0];
          break;
        case K::kU16: v->u = LoadU16(p); break;
        case K::kI16: v->i = static_cast<int16_t>(LoadU16(p)); break;
        case K::kU32: v->u = LoadU32(p); break;
        case K::kI32: v->i = static_cast<int32_t>(LoadU32(p)); break;
        case K::kF32: v->f = BitsToFloat(LoadU32(p)); break;
        case K::kU64: v->u = LoadU64(p); break;
        case K::kI64: v->i = static_cast<int64_t>(LoadU64(p)); break;
        case K::kF64: {
          const uint64_t bits = LoadU64(p);
          std::memcpy(&v->f, &bits, 8);
          break;
        }
        default: break;
      }
      return absl::OkStatus();
    }
    if (kind == K::kString) {
      ASSIGN_OR_RETURN(v->str, String(what));
      return absl::OkStatus();
    }
    // Array: u32 element kind, u64 count, elements.
    if (depth >= kMaxArrayDepth) {
      return f_.Error(absl::StatusCode::kInvalidArgument,
                      absl::StrFormat("%s: arrays nested deeper than %d", what, kMaxArrayDepth));
    }
    ASSIGN_OR_RETURN(v->elem_kind, Kind(what));
    ASSIGN_OR_RETURN(const uint64_t count, U64(what));
    const size_t min_bytes = GgufKindMinBytes(v->elem_kind);
    if (count > remaining() / min_bytes) {
      return f_.Error(absl::StatusCode::kDataLoss,
                      absl::StrFormat("%s: array of %u %s elements at offset %u exceeds the %u bytes left",
                                      what, count, GgufKindName(v->elem_kind), pos_ - 12, remaining()));
    }
    v->array.resize(static_cast<size_t>(count));
    for (GgufValue& e : v->array) RETURN_IF_ERROR(Value(v->elem_kind, depth + 1, what, &e));
    return absl::OkStatus();
  }

 private:
  const GgufFile& f_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status GgufFile::Error(absl::StatusCode code, const std::string& what) const {
  return absl::Status(code, absl::StrCat(path(), ": ", what));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  try {  // backstop: every count and length below is checked against the bytes left
    return OpenUnguarded(path);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": GGUF metadata too large for memory"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed GGUF: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::OpenUnguarded(const std::string& path) {
  ASSIGN_OR_RETURN(auto map, MappedFile::Open(path));
  std::unique_ptr<GgufFile> f(new GgufFile(std::move(map)));
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const auto kLoss = absl::StatusCode::kDataLoss;
  Parser p(*f);

  // Header.
  RETURN_IF_ERROR(p.Need(4, "header (magic)"));
  if (std::memcmp(f->map_->data(), "GGUF", 4) != 0) return f->Error(kInvalid, "bad magic, not a GGUF file");
  p.Skip(4);
  ASSIGN_OR_RETURN(f->version_, p.U32("header (version)"));
  if (f->version_ != 2 && f->version_ != 3) {
    return f->Error(kInvalid, absl::StrFormat("unsupported GGUF version %u (expected 2 or 3, "
                                              "little-endian)", f->version_));
  }
  ASSIGN_OR_RETURN(const uint64_t n_tensors, p.U64("header (tensor count)"));
  ASSIGN_OR_RETURN(const uint64_t n_kv, p.U64("header (metadata count)"));
  if (n_kv > p.remaining() / kKvMinBytes) {
    return f->Error(kLoss, absl::StrFormat("metadata count %u cannot fit in the %u bytes left", n_kv,
                                           p.remaining()));
  }

  // Metadata key/value pairs.
  f->kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = absl::StrCat("metadata entry ", k);
    ASSIGN_OR_RETURN(std::string key, p.String(where + " key"));
    const std::string what = absl::StrCat("metadata '", std::string(key), "'");
    ASSIGN_OR_RETURN(const GgufValue::Kind kind, p.Kind(what));
    GgufValue v;
    RETURN_IF_ERROR(p.Value(kind, 0, what, &v));
    if (!f->kv_index_.emplace(key, f->kv_.size()).second) {
      return f->Error(kInvalid, absl::StrCat("duplicate metadata key '", key, "'"));
    }
    f->kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f->Find("general.alignment")) {
    const bool is_int = a->IsUnsignedInt() || a->IsSignedInt();
    const uint64_t al = a->IsUnsignedInt() ? a->u : static_cast<uint64_t>(a->i);
    if (!is_int || al == 0 || (al & (al - 1)) != 0 || al > (1u << 20)) {
      return f->Error(kInvalid, "general.alignment must be a power-of-two integer <= 2^20");
    }
    f->alignment_ = al;
  }

  // Tensor infos.
  if (n_tensors > p.remaining() / kTensorInfoMinBytes) {
    return f->Error(kLoss, absl::StrFormat("tensor count %u cannot fit in the %u bytes left", n_tensors,
                                           p.remaining()));
  }
  f->tensors_.resize(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo& t = f->tensors_[k];
    ASSIGN_OR_RETURN(t.name, p.String(absl::StrCat("tensor info ", k, " name")));
    const std::string what = absl::StrCat("tensor '", t.name, "'");
    ASSIGN_OR_RETURN(const uint32_t n_dims, p.U32(what + " dim count"));
    if (n_dims > kMaxDims) {
      return f->Error(kInvalid, absl::StrFormat("%s has %u dims (max %u)", what, n_dims, kMaxDims));
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(const uint64_t dim, p.U64(what + " shape"));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim > 0 && numel > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(dim))) {
        return f->Error(kInvalid, absl::StrFormat("%s: shape dim %u = %u overflows", what, d, dim));
      }
      t.shape.push_back(static_cast<int64_t>(dim));
      numel *= static_cast<int64_t>(dim);
    }
    ASSIGN_OR_RETURN(const uint32_t type, p.U32(what + " type"));
    if (!IsSupportedGgmlType(type)) {
      return f->Error(kInvalid, absl::StrFormat("%s: unsupported tensor type %u", what, type));
    }
    t.type = static_cast<GgmlType>(type);
    ASSIGN_OR_RETURN(t.offset, p.U64(what + " offset"));
    const int64_t row = t.shape.empty() ? 1 : t.shape[0];
    if (row % GgmlBlockSize(t.type) != 0) {
      return f->Error(kInvalid, absl::StrFormat("%s: row length %d is not a multiple of the %s block "
                                                "size %d", what, row, GgmlTypeName(t.type),
                                                GgmlBlockSize(t.type)));
    }
    auto bytes = GgmlTensorBytes(t.type, numel);
    if (!bytes.ok()) return f->Error(kInvalid, absl::StrCat(what, ": ", bytes.status().message()));
    t.nbytes = *bytes;
    if (!f->tensor_index_.emplace(t.name, k).second) {
      return f->Error(kInvalid, absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
  }

  // Data section: relative offsets -> absolute, each range inside the file.
  const uint64_t size = f->map_->size();
  const uint64_t data_start = (p.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  for (GgufTensorInfo& t : f->tensors_) {
    const std::string what = absl::StrCat("tensor '", t.name, "'");
    if (t.offset % f->alignment_ != 0) {
      return f->Error(kInvalid, absl::StrFormat("%s: data offset %u is not a multiple of the alignment "
                                                "%u", what, t.offset, f->alignment_));
    }
    if (data_start > size || t.offset > size - data_start || t.nbytes > size - data_start - t.offset) {
      return f->Error(kLoss, absl::StrFormat("%s: data [%u, +%u) at relative offset %u lies beyond the "
                                             "end of the file (%u bytes, data section at %u)", what,
                                             t.offset, t.nbytes, t.offset, size, data_start));
    }
    t.offset += data_start;
  }
  return f;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::vector<std::string> GgufFile::MetadataKeys() const {
  std::vector<std::string> keys;
  keys.reserve(kv_.size());
  for (const auto& kv : kv_) keys.push_back(kv.first);
  return keys;
}

absl::StatusOr<const GgufValue*> GgufFile::FindOrError(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": no metadata key '", std::string(key), "'"));
  }
  return v;
}

namespace {

// Integer view of an integer or bool value; false if v is not integral or does not fit int64.
bool AsInt(const GgufValue& v, int64_t* out) {
  if (v.IsSignedInt()) {
    *out = v.i;
    return true;
  }
  if (v.IsUnsignedInt() || v.kind == GgufValue::Kind::kBool) {
    if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(v.u);
    return true;
  }
  return false;
}

bool AsFloat(const GgufValue& v, double* out) {
  if (v.IsFloat()) {
    *out = v.f;
    return true;
  }
  if (v.IsSignedInt()) {
    *out = static_cast<double>(v.i);
    return true;
  }
  if (v.IsUnsignedInt()) {
    *out = static_cast<double>(v.u);
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  if (v->kind != GgufValue::Kind::kString) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' is ", GgufKindName(v->kind), ", not STRING"));
  }
  return v->str;
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  int64_t out;
  if (!AsInt(*v, &out)) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' (", GgufKindName(v->kind), ") is not an int64"));
  }
  return out;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  double out;
  if (!AsFloat(*v, &out)) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' (", GgufKindName(v->kind), ") is not a number"));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  if (v->kind != GgufValue::Kind::kArray || v->elem_kind != GgufValue::Kind::kString) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' is not an array of strings"));
  }
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.str);
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  std::vector<int64_t> out(v->array.size());
  bool ok = v->kind == GgufValue::Kind::kArray;
  for (size_t k = 0; ok && k < out.size(); ++k) ok = AsInt(v->array[k], &out[k]);
  if (!ok) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' is not an array of int64 values"));
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, FindOrError(key));
  std::vector<double> out(v->array.size());
  bool ok = v->kind == GgufValue::Kind::kArray;
  for (size_t k = 0; ok && k < out.size(); ++k) ok = AsFloat(v->array[k], &out[k]);
  if (!ok) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata '", std::string(key), "' is not an array of numbers"));
  }
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::Status GgufFile::ReadAsFloat(const GgufTensorInfo& t, std::vector<float>* out) const {
  out->resize(static_cast<size_t>(t.numel()));
  absl::Status st = Dequantize(t.type, data(t), t.nbytes, t.numel(), out->data());
  if (!st.ok()) return Error(st.code(), absl::StrCat("tensor '", t.name, "': ", st.message()));
  return absl::OkStatus();
}

}  // namespace titand
