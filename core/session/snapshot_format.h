// On-disk form of a session snapshot (format versions 1 and 2). All integers little-endian.
//
//   [0, 8)             magic "TTNDSESS"
//   [8, 12)            u32 format version (kSnapshotVersion)
//   [12, 16)           u32 header length Hl
//   [16, 16+Hl)        header: UTF-8 JSON object (see SnapshotHeader; keys below)
//   [16+Hl, 48+Hl)     digest of bytes [0, 16+Hl)         (lets a store trust a header without the data)
//   [48+Hl, 48+Hl+N)   tensor data, N = header "data_bytes": per layer in order
//                        k [n_kv, len, head_dim] (binding dtype), v (same), memory [H, D, Dv] float32,
//                      each C-contiguous, only the `len` valid KV entries, absent parts skipped
//   last 32 bytes      digest of every byte before it
//
// Version 1: both digests are SHA-256 (corruption detection only; anyone can forge one). Version 2: both
// are HMAC-SHA256 under the server's snapshot key (core/session/snapshot_mac.h), so a file planted in the
// session dir without the key is rejected. A server with a key writes version 2 and refuses version 1
// (INVALID_ARGUMENT, "unsigned snapshot"); a server without a key writes version 1 and refuses version 2
// (FAILED_PRECONDITION, "needs --snapshot-key-file"). A wrong key or tampering is DATA_LOSS.
//
// Header JSON keys: model_id, adapter_id, num_layers, num_kv_heads, head_dim, dtype, num_tokens, pending
// (list of 0 or 1 token ids), state_bytes, data_bytes, layers: [{len, has_kv, kv_dtype, kv_shape,
// has_memory, memory_dtype, memory_shape}].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace titand {

inline constexpr char kSnapshotMagic[] = "TTNDSESS";  // 8 bytes, no terminator on disk
inline constexpr uint32_t kSnapshotVersion = 1;        // unkeyed (SHA-256)
inline constexpr uint32_t kSnapshotVersionHmac = 2;    // keyed (HMAC-SHA256)
inline constexpr size_t kSnapshotPrefixBytes = 16;    // magic + version + header length
inline constexpr size_t kSnapshotDigestBytes = 32;
inline constexpr uint32_t kSnapshotMaxHeaderBytes = 16u << 20;

// What a snapshot is bound to: the model and adapter it came from and the KV geometry.
struct SnapshotBinding {
  std::string model_id;    // e.g. GgufBaseModelId()
  std::string adapter_id;  // "" = no adapter
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  std::string dtype;  // KV cache dtype: "float32" | "bfloat16" | "float16"
  // Not part of the file and not compared: the secret snapshots are signed with (HMAC-SHA256, version 2);
  // empty = unsigned version 1. Set once where the codec is made (the server's --snapshot-key-file).
  std::string hmac_key;
};

struct SnapshotLayerInfo {
  int64_t len = 0;  // valid KV entries
  bool has_kv = false;
  bool has_memory = false;
  std::vector<int64_t> memory_shape;  // [H, D, Dv] when has_memory
};

struct SnapshotHeader {
  uint32_t version = kSnapshotVersion;
  SnapshotBinding binding;
  int64_t num_tokens = 0;
  std::vector<int32_t> pending;
  std::vector<SnapshotLayerInfo> layers;
  int64_t state_bytes = 0;  // SessionCursor::ByteSize() of the saved cursor
  int64_t data_bytes = 0;   // tensor data section length
  int64_t file_bytes = 0;   // whole snapshot length (computed)

  int64_t history_tokens() const { return num_tokens + static_cast<int64_t>(pending.size()); }
};

// Bytes per element of a binding dtype name; 0 if unknown.
int64_t SnapshotDtypeBytes(const std::string& dtype);

// Checks the header's internal consistency (ranges, shapes vs binding) and computes data_bytes from the
// layers (overflow-checked). INVALID_ARGUMENT naming `source` on any inconsistency.
absl::Status ValidateSnapshotHeader(SnapshotHeader* h, const std::string& source);

// Magic + version + length + JSON + header digest. `h` must be valid (data_bytes filled in). Keyed with
// h.binding.hmac_key (version 2) when it is set, else version 1.
std::string EncodeSnapshotHeader(const SnapshotHeader& h);

// Parses the prefix of a snapshot (the whole snapshot or at least its first 48 + Hl bytes); does not
// read or verify the tensor data. INVALID_ARGUMENT for a wrong magic / unknown version / malformed
// header, DATA_LOSS for a truncated prefix or a header digest mismatch. Messages start with `source`.
// `hmac_key` decides which versions are accepted (see the top of this file).
absl::StatusOr<SnapshotHeader> ParseSnapshotHeader(std::string_view bytes, const std::string& source,
                                                   const std::string& hmac_key = "");

// OK if `found` == `expected`, else FAILED_PRECONDITION:
// "<source>: snapshot was made for model X adapter Y; this server runs model Z adapter W (<field> differs: a vs b)".
absl::Status CheckSnapshotBinding(const SnapshotBinding& found, const SnapshotBinding& expected,
                                  const std::string& source);

}  // namespace titand
