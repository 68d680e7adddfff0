#include "core/session/session_store.h"

#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/common/log.h"
#include "core/common/status.h"
#include "core/session/atomic_file.h"

namespace titand {
namespace {

constexpr char kSuffix[] = ".tsession";

bool IsIdText(const std::string& s, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

constexpr char kTenantSep = '~';

// "alice~x" -> "alice~"; "x" -> "" (the prefix every key of the same tenant starts with).
std::string TenantPrefix(const std::string& key) {
  const size_t p = key.find(kTenantSep);
  return p == std::string::npos ? std::string() : key.substr(0, p + 1);
}

bool SameTenant(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key.find(kTenantSep) == std::string::npos : key.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

bool IsValidSessionId(const std::string& id) { return IsIdText(id, 128); }
bool IsValidTenant(const std::string& tenant) { return IsIdText(tenant, 64); }

std::string SessionKey(const std::string& tenant, const std::string& id) {
  return tenant.empty() ? id : tenant + kTenantSep + id;
}

bool IsValidSessionKey(const std::string& key) {
  const size_t p = key.find(kTenantSep);
  if (p == std::string::npos) return IsValidSessionId(key);
  return IsValidTenant(key.substr(0, p)) && IsValidSessionId(key.substr(p + 1));
}

std::string RandomSessionId() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) {  // 4 x 32 bits
    char buf[9];
    std::snprintf(buf, sizeof(buf), "%08x", static_cast<unsigned>(rd()));
    out += buf;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SessionStore>> SessionStore::Open(SessionStoreOptions options) {
  if (!options.fresh) return absl::InvalidArgumentError("session store: `fresh` is required");
  if (!options.codec.serialize || !options.codec.deserialize)
    return absl::InvalidArgumentError("session store: codec.serialize/deserialize are required");
  std::unique_ptr<SessionStore> s(new SessionStore(std::move(options)));
  if (s->opt_.dir.empty()) return s;
  std::error_code ec;
  std::filesystem::create_directories(s->opt_.dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("session dir ", s->opt_.dir, ": ", ec.message()));
  std::lock_guard<std::mutex> lock(s->mu_);
  for (const auto& de : std::filesystem::directory_iterator(s->opt_.dir, ec)) {
    const std::string name = de.path().filename().string();
    const size_t n = sizeof(kSuffix) - 1;
    if (!de.is_regular_file() || name.size() <= n || name.compare(name.size() - n, n, kSuffix) != 0) continue;
    const std::string id = name.substr(0, name.size() - n);
    if (!IsValidSessionKey(id)) continue;
    Entry e;
    e.tier = SessionTier::kDisk;
    e.on_disk = e.file_current = true;
    e.state_bytes = static_cast<int64_t>(de.file_size(ec));
    e.last_used = s->Now();
    struct stat st;
    e.created_unix = ::stat(de.path().c_str(), &st) == 0 ? static_cast<int64_t>(st.st_mtime) : std::time(nullptr);
    if (s->opt_.codec.peek_history) {
      auto h = s->opt_.codec.peek_history(de.path().string());
      if (h.ok()) {
        e.history_tokens = *h;
      } else {  // the message starts with the file's path: clients get the id, not the server's path
        absl::string_view msg = h.status().message();
        const std::string path = de.path().string();
        if (absl::StartsWith(msg, path)) msg.remove_prefix(path.size());
        (void)s->Unreadable(id, e, h.status(), msg);
      }
    }
    s->entries_.emplace(id, std::move(e));
  }
  if (ec) return absl::UnavailableError(absl::StrCat("session dir ", s->opt_.dir, ": ", ec.message()));
  return s;
}

SteadyTime SessionStore::Now() const { return opt_.clock ? opt_.clock() : std::chrono::steady_clock::now(); }

std::string SessionStore::PathOf(const std::string& id) const { return opt_.dir + "/" + id + kSuffix; }

void SessionStore::LogDiskError(const absl::Status& st) const { LogLine(absl::StrCat("session store: ", st.ToString())); }

absl::Status SessionStore::Unreadable(const std::string& id, Entry& e, const absl::Status& why,
                                      absl::string_view detail) {
  const absl::StatusCode code =
      why.code() == absl::StatusCode::kInvalidArgument ? absl::StatusCode::kDataLoss : why.code();
  // The codec names in-memory bytes "snapshot" (core/session/snapshot.h): not twice in one message.
  constexpr absl::string_view kCodecPrefix = ": snapshot";  // drop it, keep the ": " that follows
  if (absl::StartsWith(detail, ": snapshot: ")) detail.remove_prefix(kCodecPrefix.size());
  e.error = absl::Status(code, absl::StrCat("session ", id, ": unreadable snapshot", detail));
  ++counters_.disk_read_errors;
  LogDiskError(e.error);
  return e.error;
}

SessionInfo SessionStore::InfoOf(const std::string& id, const Entry& e) const {
  SessionInfo i;
  i.id = id;
  i.history_tokens = e.history_tokens;
  i.state_bytes = e.state_bytes;
  i.tier = e.tier;
  i.busy = e.pinned;
  i.idle_seconds = e.pinned ? 0 : std::chrono::duration<double>(Now() - e.last_used).count();
  i.created_unix = e.created_unix;
  if (!e.error.ok()) i.error = std::string(e.error.message());
  return i;
}

absl::StatusOr<std::string> SessionStore::NewId(const std::string& requested) {
  if (static_cast<int64_t>(entries_.size()) >= opt_.max_sessions)
    return absl::ResourceExhaustedError(absl::StrCat("session limit reached (", opt_.max_sessions, ")"));
  RETURN_IF_ERROR(StorageFull());
  if (requested.empty()) {
    std::string id;
    do id = RandomSessionId(); while (entries_.count(id));
    return id;
  }
  if (!IsValidSessionKey(requested))
    return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
  if (entries_.count(requested)) return absl::AlreadyExistsError("session id is taken");
  RETURN_IF_ERROR(CheckTenantQuota(requested, /*new_session=*/true));
  return requested;
}

// Disk writes fail and the device tier is over its budget: no new session until a write succeeds.
absl::Status SessionStore::StorageFull() const {
  if (opt_.dir.empty() || last_write_error_.ok() || device_bytes_ <= opt_.device_budget) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      "session storage full: memory budgets reached and session snapshots cannot be written to disk");
}

absl::Status SessionStore::WriteFile(const std::string& id, Entry& e, std::string_view bytes) {
  return NoteWrite(id, e, WriteFileAtomically(PathOf(id), {bytes}));
}

absl::Status SessionStore::NoteWrite(const std::string& id, Entry& e, const absl::Status& st) {
  if (!st.ok()) {
    ++counters_.disk_write_errors;
    last_write_error_ = st;
    LogDiskError(st);
    return absl::Status(st.code(), absl::StrCat("session ", id, ": snapshot write failed (see the server log)"));
  }
  ++counters_.disk_writes;
  last_write_error_ = absl::OkStatus();
  e.on_disk = e.file_current = true;
  return absl::OkStatus();
}

absl::Status SessionStore::Persist(const std::string& id, Entry& e) {
  if (!opt_.write_through || opt_.dir.empty() || e.file_current) return absl::OkStatus();
  if (e.tier == SessionTier::kHost) return WriteFile(id, e, e.bytes);
  if (e.tier != SessionTier::kDevice) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string bytes, opt_.codec.serialize(*e.cursor));
  return WriteFile(id, e, bytes);
}

absl::Status SessionStore::RemoveFileOf(const std::string& id, Entry& e) {
  if (!e.on_disk || opt_.dir.empty()) return absl::OkStatus();
  absl::Status st = RemoveFile(PathOf(id));
  if (!st.ok()) {
    ++counters_.disk_remove_errors;
    LogDiskError(st);
    return absl::InternalError(absl::StrCat("session ", id, ": its snapshot file could not be removed (see the server log)"));
  }
  e.on_disk = e.file_current = false;
  return absl::OkStatus();
}

// A new entry `e` under `id`; with write_through its snapshot is written first (failure: not created).
absl::StatusOr<SessionInfo> SessionStore::Insert(const std::string& id, Entry e) {
  if (absl::Status st = Persist(id, e); !st.ok()) return st;
  if (e.tier == SessionTier::kDevice) device_bytes_ += e.state_bytes;
  if (e.tier == SessionTier::kHost) host_bytes_ += e.state_bytes;
  auto it = entries_.emplace(id, std::move(e)).first;
  SessionInfo info = InfoOf(id, it->second);
  EnforceBudgets();
  return info;
}

absl::Status SessionStore::CheckTenantQuota(const std::string& key, bool new_session) const {
  if (opt_.max_tenant_sessions <= 0 && opt_.max_tenant_state_bytes <= 0) return absl::OkStatus();
  const std::string prefix = TenantPrefix(key);
  int64_t sessions = 0, bytes = 0;
  for (const auto& [k, e] : entries_) {
    if (!SameTenant(prefix, k)) continue;
    ++sessions;
    bytes += e.state_bytes;
  }
  if (new_session && opt_.max_tenant_sessions > 0 && sessions >= opt_.max_tenant_sessions)
    return absl::ResourceExhaustedError(absl::StrCat("tenant session quota reached (", opt_.max_tenant_sessions, ")"));
  if (opt_.max_tenant_state_bytes > 0 && bytes >= opt_.max_tenant_state_bytes)
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant state quota reached (", bytes, " of ", opt_.max_tenant_state_bytes, " bytes)"));
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> SessionStore::Create(const std::string& requested_id) {
  std::lock_guard<std::mutex> lock(mu_);
  EnforceBudgets();  // retries a failed eviction before StorageFull decides
  ASSIGN_OR_RETURN(std::string id, NewId(requested_id));
  Entry e;
  e.cursor = std::make_unique<SessionCursor>(opt_.fresh());
  e.state_bytes = e.cursor->ByteSize();
  e.last_used = Now();
  e.created_unix = std::time(nullptr);
  return Insert(id, std::move(e));
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (!it->second.error.ok()) return it->second.error;
  return InfoOf(id, it->second);
}

std::vector<SessionInfo> SessionStore::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, e] : entries_) out.push_back(InfoOf(id, e));
  return out;
}

void SessionStore::Erase(std::map<std::string, Entry>::iterator it) {
  Entry& e = it->second;
  if (e.tier == SessionTier::kDevice) device_bytes_ -= e.state_bytes;
  if (e.tier == SessionTier::kHost) host_bytes_ -= e.state_bytes;
  entries_.erase(it);
}

absl::Status SessionStore::Delete(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (it->second.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  // The file goes first: a session whose file stays would come back with old history after a restart.
  RETURN_IF_ERROR(RemoveFileOf(id, it->second));
  Erase(it);
  return absl::OkStatus();
}

absl::StatusOr<std::string> SessionStore::ReadFile(const std::string& id) {
  auto bytes = ReadWholeFile(PathOf(id));
  if (!bytes.ok()) {
    ++counters_.disk_read_errors;
    LogDiskError(bytes.status());
    return absl::Status(bytes.status().code(), absl::StrCat("session ", id, ": snapshot read failed (see the server log)"));
  }
  return bytes;
}

absl::StatusOr<SessionInfo> SessionStore::Fork(const std::string& id, const std::string& new_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  Entry& src = it->second;
  if (src.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  if (!src.error.ok()) return src.error;
  EnforceBudgets();
  ASSIGN_OR_RETURN(std::string nid, NewId(new_id));
  Entry e;
  e.tier = src.tier;
  e.state_bytes = src.state_bytes;
  e.history_tokens = src.history_tokens;
  e.last_used = Now();
  e.created_unix = std::time(nullptr);
  switch (src.tier) {
    case SessionTier::kDevice:
      e.cursor = std::make_unique<SessionCursor>(src.cursor->Fork());
      break;
    case SessionTier::kHost:
      e.bytes = src.bytes;
      break;
    case SessionTier::kDisk: {
      ASSIGN_OR_RETURN(std::string bytes, ReadFile(id));
      if (opt_.codec.verify) {
        if (absl::Status v = opt_.codec.verify(bytes); !v.ok()) {
          return Unreadable(id, src, v, absl::StrCat(": ", v.message()));
        }
      }
      RETURN_IF_ERROR(WriteFile(nid, e, bytes));
      break;
    }
  }
  return Insert(nid, std::move(e));
}

absl::Status SessionStore::Pin(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (!it->second.error.ok()) return it->second.error;
  if (it->second.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  RETURN_IF_ERROR(CheckTenantQuota(id, /*new_session=*/false));
  it->second.pinned = true;
  return absl::OkStatus();
}

}  // namespace titand
