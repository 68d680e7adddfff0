#include "core/session/session_codec.h"

#include "core/session/snapshot.h"

namespace titand {

SessionCodec MakeSnapshotCodec(const SnapshotBinding& binding, at::Device device) {
  SessionCodec c;
  c.serialize = [binding](const SessionCursor& cur) { return SerializeCursor(cur, binding); };
  c.deserialize = [binding, device](std::string_view bytes) { return DeserializeCursor(bytes, binding, device); };
  // Full check (checksum, binding, sizes) by a restore onto the CPU; the cursor is dropped.
  c.verify = [binding](std::string_view bytes) { return DeserializeCursor(bytes, binding, at::kCPU).status(); };
  c.peek_history = [key = binding.hmac_key](const std::string& path) -> absl::StatusOr<int64_t> {
    auto h = ReadSnapshotHeaderFile(path, key);
    if (!h.ok()) return h.status();
    return h->history_tokens();
  };
  c.peek_history_bytes = [](std::string_view bytes) -> absl::StatusOr<int64_t> {
    auto h = PeekSnapshotHeader(bytes);
    if (!h.ok()) return h.status();
    return h->history_tokens();
  };
  return c;
}

}  // namespace titand
