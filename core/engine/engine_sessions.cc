// Engine API side, session RPCs and the shared tier's hooks (core/engine/shared_tier.h). Without
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
  if (!local && !IsValidSessionId(sid)) return pinned;
  absl::StatusOr<SharedTier::Begin> b = shared_->BeginTurn(sid, local);
  if (!b.ok()) {
    if (local) store_->Unpin(sid);
    return b.status();
  }
  *token = b->token;
  if (b->bytes) {
    absl::Status st = store_->Adopt(sid, std::move(*b->bytes), /*pin=*/true, /*pinned_by_caller=*/local);
    if (!st.ok()) {
      if (local) store_->Unpin(sid);
      shared_->EndTurn(sid, *token, false, nullptr, [](SharedWrite) {});
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::EnsureLocal(const std::string& sid) {
  absl::StatusOr<SessionInfo> info = store_->Get(sid);
  if (!shared_ || !absl::IsNotFound(info.status()) || !IsValidSessionId(sid)) return info.status();
  ASSIGN_OR_RETURN(std::string bytes, shared_->FetchForRead(sid));
  return store_->Adopt(sid, std::move(bytes), /*pin=*/false);
}

absl::StatusOr<SessionInfo> EngineImpl::CreateSession(const std::string& requested_id) {
  if (shared_ && !requested_id.empty() && IsValidSessionId(requested_id)) {
    // Taken on another replica: ALREADY_EXISTS as for a local one (Redis down: decided by WriteNew).
    if (EnsureLocal(requested_id).ok()) return absl::AlreadyExistsError(absl::StrCat("session ", requested_id, " exists"));
  }
  ASSIGN_OR_RETURN(SessionInfo info, store_->Create(requested_id));
  if (!shared_) return info;
  absl::StatusOr<std::string> bytes = store_->Serialize(info.id);
  absl::Status st = bytes.ok() ? shared_->WriteNew(info.id, std::move(bytes).value()) : bytes.status();
  if (!st.ok()) {
    (void)store_->Delete(info.id);
    return st;
  }
  return info;
}

absl::StatusOr<SessionInfo> EngineImpl::GetSession(const std::string& id) {
  RETURN_IF_ERROR(EnsureLocal(id));
  return store_->Get(id);
}

absl::StatusOr<std::vector<SessionInfo>> EngineImpl::ListSessions() { return store_->List(); }

absl::Status EngineImpl::DeleteSession(const std::string& id) {
  if (!shared_) return store_->Delete(id);
  // Redis first: a session deleted locally but still stored would come back on its next turn.
  ASSIGN_OR_RETURN(bool stored, shared_->Delete(id));  // lease held -> FAILED_PRECONDITION; down -> UNAVAILABLE
  absl::Status local = store_->Delete(id);
  if (absl::IsNotFound(local) && stored) return absl::OkStatus();
  return local;
}

absl::StatusOr<SessionInfo> EngineImpl::ForkSession(const std::string& id, const std::string& new_id) {
  RETURN_IF_ERROR(EnsureLocal(id));
  if (shared_ && !new_id.empty() && IsValidSessionId(new_id) && EnsureLocal(new_id).ok())
    return absl::AlreadyExistsError(absl::StrCat("session ", new_id, " exists"));
  ASSIGN_OR_RETURN(SessionInfo info, store_->Fork(id, new_id));
  if (!shared_) return info;
  absl::StatusOr<std::string> bytes = store_->Serialize(info.id);
  absl::Status st = bytes.ok() ? shared_->WriteNew(info.id, std::move(bytes).value()) : bytes.status();
  if (!st.ok()) {
    (void)store_->Delete(info.id);
    return st;
  }
  return info;
}

}  // namespace titand
