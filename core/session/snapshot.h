// Versioned, checksummed serialised form of a SessionCursor, bound to the model and adapter it came from
// (layout in snapshot_format.h). Readers validate everything and never crash or over-read:
//   wrong magic / unknown version / malformed header      -> INVALID_ARGUMENT
//   truncated, trailing bytes, checksum or HMAC mismatch   -> DATA_LOSS
//   unsigned (v1) under a key                              -> INVALID_ARGUMENT; signed (v2) without -> FAILED_PRECONDITION
//   other model / adapter / layer count / KV shape / dtype -> FAILED_PRECONDITION naming both ids
//   missing file                                           -> NOT_FOUND
// Messages start with the file path (or "snapshot" for in-memory bytes). c10::Error never escapes.
#pragma once

#include <string>
#include <string_view>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/sequence_state.h"
#include "core/session/snapshot_format.h"

namespace titand {

// INVALID_ARGUMENT if the cursor does not fit the binding (layer count, KV [n_kv, cap, head_dim] of
// dtype, len <= capacity and <= num_tokens, memory [H, head_dim, Dv] float32, at most one pending id).
// Only the `len` valid KV entries are stored; tensors may live on any device.
absl::StatusOr<std::string> SerializeCursor(const SessionCursor& cur, const SnapshotBinding& b);

// Restores a cursor whose tensors live on `device` with the saved dtypes; KV capacity == len. The
// result continues exactly like the original (bit-identical valid entries and memory).
absl::StatusOr<SessionCursor> DeserializeCursor(std::string_view bytes, const SnapshotBinding& expected,
                                                at::Device device);

// Atomic: temp file in the same directory + fsync + rename + directory fsync; never leaves a partial
// file under `path`, and an existing `path` is intact when the write fails.
absl::Status WriteSnapshotFile(const std::string& path, const SessionCursor& cur, const SnapshotBinding& b);
absl::StatusOr<SessionCursor> ReadSnapshotFile(const std::string& path, const SnapshotBinding& expected,
                                               at::Device device);

// The header (binding, num_tokens, pending, layers, byte sizes) without loading or verifying tensor
// data. `bytes` is a whole snapshot or a prefix holding at least the header and its digest. The header
// digest is checked with `hmac_key` (empty = unsigned version 1; see snapshot_format.h).
absl::StatusOr<SnapshotHeader> PeekSnapshotHeader(std::string_view bytes, const std::string& hmac_key = "");
// Same for a file; also checks that the file has exactly header.file_bytes bytes (DATA_LOSS if not).
absl::StatusOr<SnapshotHeader> ReadSnapshotHeaderFile(const std::string& path, const std::string& hmac_key = "");

}  // namespace titand
