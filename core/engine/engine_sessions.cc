// Engine API side, session RPCs and the shared tier's hooks (core/session/shared_tier.h). Without
// --shared-store these are the session store's own calls.
#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/engine/engine_impl.h"

namespace titand {

absl::Status EngineImpl::PinForTurn(const std::string& sid, std::string* token) {
  if (!shared_) return store_->Pin(sid);  // NOT_FOUND / FAILED_PRECONDITION (busy) / snapshot error
  absl::Status pinned = store_->Pin(sid);
  const bool local = pinned.ok();
  if (!local && !absl::IsNotFound(pinned)) return pinned;
  if (!local && !IsValidSessionKey(sid)) return pinned;
  absl::StatusOr<SharedTier::Begin> b = shared_->BeginTurn(sid, local);
  if (!b.ok()) {
    if (local) store_->Unpin(sid, TurnEnd::kUnchanged);
    return b.status();
  }
  *token = b->token;
  if (b->bytes) {
    absl::Status st = store_->Adopt(sid, std::move(*b->bytes), /*pin=*/true, /*pinned_by_caller=*/local);
    if (!st.ok()) {
      if (local) store_->Unpin(sid, TurnEnd::kUnchanged);
      shared_->EndTurn(sid, *token, false, nullptr, [](SharedWrite) {});
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::EnsureLocal(const std::string& sid) {
  absl::StatusOr<SessionInfo> info = store_->Get(sid);
  if (!shared_ || !absl::IsNotFound(info.status()) || !IsValidSessionKey(sid)) return info.status();
  ASSIGN_OR_RETURN(std::string bytes, shared_->FetchForRead(sid));
  return store_->Adopt(sid, std::move(bytes), /*pin=*/false);
}

// A session just created or forked under `key`, written to the shared store (no-op without one); a failed
// write deletes the local copy and returns the error.
absl::Status EngineImpl::PublishNew(const std::string& key) {
  if (!shared_) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = store_->Serialize(key);
  absl::Status st = bytes.ok() ? shared_->WriteNew(key, std::move(bytes).value()) : bytes.status();
  if (!st.ok()) (void)store_->Delete(key);
  return st;
}

}  // namespace titand
