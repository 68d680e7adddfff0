// SessionStore, the shared tier's two calls (core/session/shared_tier.h): Adopt a state fetched from
// Redis, Serialize a state for a write to Redis.
#include <ctime>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/session/session_store.h"

namespace titand {

absl::Status SessionStore::Adopt(const std::string& id, std::string bytes, bool pin, bool pinned_by_caller) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t history = 0;
  if (opt_.codec.peek_history_bytes) {
    auto h = opt_.codec.peek_history_bytes(bytes);
    if (!h.ok()) return absl::Status(h.status().code(), absl::StrCat("session ", id, ": stored state: ", h.status().message()));
    history = *h;
  }
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    if (!IsValidSessionKey(id)) return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
    if (static_cast<int64_t>(entries_.size()) >= opt_.max_sessions)
      return absl::ResourceExhaustedError(absl::StrCat("session limit reached (", opt_.max_sessions, ")"));
    Entry e;
    e.created_unix = std::time(nullptr);
    it = entries_.emplace(id, std::move(e)).first;
  } else {
    Entry& e = it->second;
    if (e.pinned && !pinned_by_caller)
      return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
    if (e.tier == SessionTier::kDevice) device_bytes_ -= e.state_bytes;
    if (e.tier == SessionTier::kHost) host_bytes_ -= e.state_bytes;
    e.cursor.reset();
  }
  Entry& e = it->second;
  e.tier = SessionTier::kHost;
  e.bytes = std::move(bytes);
  e.state_bytes = static_cast<int64_t>(e.bytes.size());
  e.history_tokens = history;
  e.error = absl::OkStatus();
  e.file_current = false;  // a snapshot file of this id (if any) holds an older state
  e.last_used = Now();
  e.pinned = e.pinned || pin;
  host_bytes_ += e.state_bytes;
  (void)Persist(id, e);  // disk write-through as for a turn; a failure is logged, Redis has the state
  EnforceBudgets();
  return absl::OkStatus();
}

absl::StatusOr<std::string> SessionStore::Serialize(const std::string& id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  const Entry& e = it->second;
  if (!e.error.ok()) return e.error;
  if (e.pinned && e.tier == SessionTier::kDevice) {
    // The caller owns the pinned session's turn: nothing else touches this cursor until Unpin, so the
    // (large) serialisation runs without blocking the store.
    const SessionCursor* cur = e.cursor.get();
    lock.unlock();
    return opt_.codec.serialize(*cur);
  }
  switch (e.tier) {
    case SessionTier::kDevice: return opt_.codec.serialize(*e.cursor);
    case SessionTier::kHost: return e.bytes;
    case SessionTier::kDisk: return ReadFile(id);
  }
  return absl::InternalError("unknown tier");
}

}  // namespace titand
