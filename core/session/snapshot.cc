#include "core/session/snapshot.h"

#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "core/session/snapshot_mac.h"
#include "core/common/status.h"
#include "core/session/atomic_file.h"
#include "core/weights/mapped_file.h"

namespace titand {
namespace {

constexpr char kInMemory[] = "snapshot";

absl::StatusOr<at::ScalarType> DtypeOf(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  if (name == "float16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("unsupported snapshot dtype '", name, "'"));
}

absl::Status BadCursor(size_t layer, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("cannot snapshot cursor: layer ", layer, ": ", what));
}

// Describes `cur` as a header; checks it against the binding first.
absl::StatusOr<SnapshotHeader> DescribeCursor(const SessionCursor& cur, const SnapshotBinding& b) {
  ASSIGN_OR_RETURN(const at::ScalarType dtype, DtypeOf(b.dtype));
  if (static_cast<int64_t>(cur.state.layers.size()) != b.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("cannot snapshot cursor: ", cur.state.layers.size(),
                                                   " layers, binding says ", b.num_layers));
  }
  SnapshotHeader h;
  h.binding = b;
  h.num_tokens = cur.state.num_tokens;
  h.pending = cur.pending;
  h.state_bytes = cur.ByteSize();
  for (size_t i = 0; i < cur.state.layers.size(); ++i) {
    const LayerState& l = cur.state.layers[i];
    SnapshotLayerInfo info;
    info.len = l.len;
    info.has_kv = l.k.defined();
    if (info.has_kv) {
      if (!l.v.defined() || l.k.dim() != 3 || l.v.sizes() != l.k.sizes()) return BadCursor(i, "k/v shapes differ");
      if (l.k.size(0) != b.num_kv_heads || l.k.size(2) != b.head_dim) {
        return BadCursor(i, absl::StrCat("KV is [", l.k.size(0), ", _, ", l.k.size(2), "], binding [",
                                         b.num_kv_heads, ", _, ", b.head_dim, "]"));
      }
      if (l.k.scalar_type() != dtype || l.v.scalar_type() != dtype) {
        return BadCursor(i, absl::StrCat("KV dtype ", at::toString(l.k.scalar_type()), ", binding ", b.dtype));
      }
      if (l.len < 0 || l.len > l.k.size(1)) return BadCursor(i, absl::StrCat("len ", l.len, " > capacity"));
    } else if (l.v.defined() || l.len != 0) {
      return BadCursor(i, "len > 0 or v without k");
    }
    info.has_memory = l.memory.defined();
    if (info.has_memory) {
      if (l.memory.scalar_type() != at::kFloat || l.memory.dim() != 3) {
        return BadCursor(i, "memory is not a 3-d float32 tensor");
      }
      info.memory_shape = l.memory.sizes().vec();
    }
    h.layers.push_back(std::move(info));
  }
  RETURN_IF_ERROR(ValidateSnapshotHeader(&h, "cannot snapshot cursor"));
  return h;
}

void AppendTensor(std::string* out, const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  out->append(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

absl::StatusOr<std::string> Serialize(const SessionCursor& cur, const SnapshotBinding& b) {
  ASSIGN_OR_RETURN(const SnapshotHeader h, DescribeCursor(cur, b));
  std::string out = EncodeSnapshotHeader(h);
  const size_t data_start = out.size();
  out.reserve(data_start + h.data_bytes + kSnapshotDigestBytes);
  for (const LayerState& l : cur.state.layers) {
    if (l.k.defined()) {
      auto [k, v] = l.OrderedKv();  // a ring (decode steps) is written in order: files never hold one
      AppendTensor(&out, k);
      AppendTensor(&out, v);
    }
    if (l.memory.defined()) AppendTensor(&out, l.memory);
  }
  if (static_cast<int64_t>(out.size() - data_start) != h.data_bytes) {
    return absl::InternalError("snapshot data size differs from its header");
  }
  const SnapshotDigest digest = ComputeSnapshotDigest(b.hmac_key, out);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

// Copies `n` bytes from `*p` into a new CPU tensor of `shape`, moves it to `device`; advances *p.
at::Tensor TakeTensor(const char** p, at::IntArrayRef shape, at::ScalarType dtype, at::Device device) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kCPU));
  std::memcpy(t.data_ptr(), *p, t.nbytes());
  *p += t.nbytes();
  return device.is_cpu() ? t : t.to(device);
}

absl::StatusOr<SessionCursor> Deserialize(std::string_view bytes, const SnapshotBinding& expected,
                                          at::Device device, const std::string& source) {
  ASSIGN_OR_RETURN(const SnapshotHeader h, ParseSnapshotHeader(bytes, source, expected.hmac_key));
  if (bytes.size() != static_cast<uint64_t>(h.file_bytes)) {
    return absl::DataLossError(absl::StrCat(source, ": snapshot is ", bytes.size(), " bytes, its header says ",
                                            h.file_bytes, bytes.size() < h.file_bytes ? " (truncated)" : ""));
  }
  const SnapshotDigest digest =
      ComputeSnapshotDigest(expected.hmac_key, bytes.substr(0, bytes.size() - kSnapshotDigestBytes));
  if (!SnapshotDigestEquals(digest, bytes.data() + bytes.size() - kSnapshotDigestBytes)) {
    return absl::DataLossError(absl::StrCat(source, expected.hmac_key.empty()
                                                        ? ": snapshot checksum mismatch"
                                                        : ": snapshot authentication failed (HMAC mismatch)"));
  }
  RETURN_IF_ERROR(CheckSnapshotBinding(h.binding, expected, source));
  ASSIGN_OR_RETURN(const at::ScalarType dtype, DtypeOf(h.binding.dtype));
  // Sizes were checked against the byte count above, so every copy below stays inside `bytes`.
  const char* p = bytes.data() + (bytes.size() - kSnapshotDigestBytes - h.data_bytes);
  SessionCursor cur;
  cur.state.num_tokens = h.num_tokens;
  cur.pending = h.pending;
  cur.state.layers.reserve(h.layers.size());
  for (const SnapshotLayerInfo& info : h.layers) {
    LayerState l;
    l.len = info.len;
    if (info.has_kv) {
      const int64_t shape[3] = {h.binding.num_kv_heads, info.len, h.binding.head_dim};
      l.k = TakeTensor(&p, shape, dtype, device);
      l.v = TakeTensor(&p, shape, dtype, device);
    }
    if (info.has_memory) l.memory = TakeTensor(&p, info.memory_shape, at::kFloat, device);
    cur.state.layers.push_back(std::move(l));
  }
  return cur;
}

// Runs `fn` converting torch and allocation exceptions into INTERNAL / RESOURCE_EXHAUSTED.
template <typename Fn>
auto Guarded(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": torch error: ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::string> SerializeCursor(const SessionCursor& cur, const SnapshotBinding& b) {
  return Guarded("cannot snapshot cursor", [&] { return Serialize(cur, b); });
}

absl::StatusOr<SessionCursor> DeserializeCursor(std::string_view bytes, const SnapshotBinding& expected,
                                                at::Device device) {
  return Guarded(kInMemory, [&] { return Deserialize(bytes, expected, device, kInMemory); });
}

absl::Status WriteSnapshotFile(const std::string& path, const SessionCursor& cur, const SnapshotBinding& b) {
  ASSIGN_OR_RETURN(const std::string bytes, SerializeCursor(cur, b));
  return WriteFileAtomically(path, {bytes});
}

absl::StatusOr<SessionCursor> ReadSnapshotFile(const std::string& path, const SnapshotBinding& expected,
                                               at::Device device) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> map, MappedFile::Open(path));
  const std::string_view bytes(reinterpret_cast<const char*>(map->data()), map->size());
  return Guarded(path, [&] { return Deserialize(bytes, expected, device, path); });
}

absl::StatusOr<SnapshotHeader> PeekSnapshotHeader(std::string_view bytes, const std::string& hmac_key) {
  return ParseSnapshotHeader(bytes, kInMemory, hmac_key);
}

absl::StatusOr<SnapshotHeader> ReadSnapshotHeaderFile(const std::string& path, const std::string& hmac_key) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> map, MappedFile::Open(path));
  const std::string_view bytes(reinterpret_cast<const char*>(map->data()), map->size());
  ASSIGN_OR_RETURN(SnapshotHeader h, ParseSnapshotHeader(bytes, path, hmac_key));
  if (bytes.size() != static_cast<uint64_t>(h.file_bytes)) {
    return absl::DataLossError(
        absl::StrCat(path, ": snapshot is ", bytes.size(), " bytes, its header says ", h.file_bytes));
  }
  return h;
}

}  // namespace titand
