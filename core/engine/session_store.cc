#include "core/engine/session_store.h"

#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/session/atomic_file.h"

namespace titand {
namespace {

constexpr char kSuffix[] = ".tsession";

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return absl::DataLossError(absl::StrCat("read failed: ", path));
  return ss.str();
}

// Crash-safe (core/session/atomic_file.h): a snapshot file is the old one or the new one, never a part.
absl::Status WriteAll(const std::string& path, const std::string& bytes) {
  return WriteFileAtomically(path, {std::string_view(bytes)});
}

}  // namespace

bool IsValidSessionId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
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
    if (!IsValidSessionId(id)) continue;
    Entry e;
    e.tier = SessionTier::kDisk;
    e.state_bytes = static_cast<int64_t>(de.file_size(ec));
    e.last_used = s->Now();
    struct stat st;
    e.created_unix = ::stat(de.path().c_str(), &st) == 0 ? static_cast<int64_t>(st.st_mtime) : std::time(nullptr);
    if (s->opt_.codec.peek_history) {
      auto h = s->opt_.codec.peek_history(de.path().string());
      if (h.ok()) {
        e.history_tokens = *h;
      } else {
        e.error = absl::Status(h.status().code(), absl::StrCat("session ", id, ": unreadable snapshot: ", h.status().message()));
      }
    }
    s->entries_.emplace(id, std::move(e));
  }
  if (ec) return absl::UnavailableError(absl::StrCat("session dir ", s->opt_.dir, ": ", ec.message()));
  return s;
}

SteadyTime SessionStore::Now() const { return opt_.clock ? opt_.clock() : std::chrono::steady_clock::now(); }

std::string SessionStore::PathOf(const std::string& id) const { return opt_.dir + "/" + id + kSuffix; }

SessionInfo SessionStore::InfoOf(const std::string& id, const Entry& e) const {
  SessionInfo i;
  i.id = id;
  i.history_tokens = e.history_tokens;
  i.state_bytes = e.state_bytes;
  i.tier = e.tier;
  i.busy = e.pinned;
  i.idle_seconds = e.pinned ? 0 : std::chrono::duration<double>(Now() - e.last_used).count();
  i.created_unix = e.created_unix;
  return i;
}

absl::StatusOr<std::string> SessionStore::NewId(const std::string& requested) {
  if (static_cast<int64_t>(entries_.size()) >= opt_.max_sessions)
    return absl::ResourceExhaustedError(absl::StrCat("session limit reached (", opt_.max_sessions, ")"));
  if (requested.empty()) {
    std::string id;
    do id = RandomSessionId(); while (entries_.count(id));
    return id;
  }
  if (!IsValidSessionId(requested))
    return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
  if (entries_.count(requested)) return absl::AlreadyExistsError(absl::StrCat("session ", requested, " exists"));
  return requested;
}

absl::StatusOr<SessionInfo> SessionStore::Create(const std::string& requested_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(std::string id, NewId(requested_id));
  Entry e;
  e.cursor = std::make_unique<SessionCursor>(opt_.fresh());
  e.state_bytes = e.cursor->ByteSize();
  e.last_used = Now();
  e.created_unix = std::time(nullptr);
  device_bytes_ += e.state_bytes;
  auto it = entries_.emplace(id, std::move(e)).first;
  SessionInfo info = InfoOf(id, it->second);
  EnforceBudgets();
  return info;
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
  if (!opt_.dir.empty()) std::remove(PathOf(it->first).c_str());
  entries_.erase(it);
}

absl::Status SessionStore::Delete(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (it->second.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  Erase(it);
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> SessionStore::Fork(const std::string& id, const std::string& new_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  const Entry& src = it->second;
  if (src.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  if (!src.error.ok()) return src.error;
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
      device_bytes_ += e.state_bytes;
      break;
    case SessionTier::kHost:
      e.bytes = src.bytes;
      host_bytes_ += e.state_bytes;
      break;
    case SessionTier::kDisk: {
      ASSIGN_OR_RETURN(std::string bytes, ReadAll(PathOf(id)));
      RETURN_IF_ERROR(WriteAll(PathOf(nid), bytes));
      break;
    }
  }
  auto nit = entries_.emplace(nid, std::move(e)).first;
  SessionInfo info = InfoOf(nid, nit->second);
  EnforceBudgets();
  return info;
}

absl::Status SessionStore::Pin(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (!it->second.error.ok()) return it->second.error;
  if (it->second.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
  it->second.pinned = true;
  return absl::OkStatus();
}

absl::Status SessionStore::ToHost(Entry& e) {
  ASSIGN_OR_RETURN(std::string bytes, opt_.codec.serialize(*e.cursor));
  device_bytes_ -= e.state_bytes;
  e.cursor.reset();
  e.bytes = std::move(bytes);
  e.state_bytes = static_cast<int64_t>(e.bytes.size());
  e.tier = SessionTier::kHost;
  host_bytes_ += e.state_bytes;
  return absl::OkStatus();
}

absl::Status SessionStore::ToDisk(const std::string& id, Entry& e) {
  if (e.tier == SessionTier::kDevice) RETURN_IF_ERROR(ToHost(e));
  if (e.tier != SessionTier::kHost) return absl::OkStatus();
  RETURN_IF_ERROR(WriteAll(PathOf(id), e.bytes));
  host_bytes_ -= e.state_bytes;
  std::string().swap(e.bytes);
  e.tier = SessionTier::kDisk;
  return absl::OkStatus();
}

absl::Status SessionStore::ToDevice(const std::string& id, Entry& e) {
  if (e.tier == SessionTier::kDevice) return absl::OkStatus();
  std::string from_disk;
  if (e.tier == SessionTier::kDisk) {
    ASSIGN_OR_RETURN(from_disk, ReadAll(PathOf(id)));
  }
  const std::string& bytes = e.tier == SessionTier::kDisk ? from_disk : e.bytes;
  auto cur = opt_.codec.deserialize(bytes);
  if (!cur.ok()) {
    e.error = absl::Status(cur.status().code(), absl::StrCat("session ", id, ": unreadable snapshot: ", cur.status().message()));
    return e.error;
  }
  if (e.tier == SessionTier::kHost) host_bytes_ -= e.state_bytes;
  if (e.tier == SessionTier::kDisk) std::remove(PathOf(id).c_str());  // memory is now the truth
  std::string().swap(e.bytes);
  e.cursor = std::make_unique<SessionCursor>(std::move(cur).value());
  e.history_tokens = e.cursor->history_tokens();
  e.state_bytes = e.cursor->ByteSize();
  e.tier = SessionTier::kDevice;
  device_bytes_ += e.state_bytes;
  return absl::OkStatus();
}

absl::StatusOr<SessionCursor*> SessionStore::Materialize(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  if (!it->second.pinned) return absl::FailedPreconditionError(absl::StrCat("session ", id, " is not pinned"));
  RETURN_IF_ERROR(ToDevice(id, it->second));
  return it->second.cursor.get();
}

void SessionStore::Unpin(const std::string& id, bool drop) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.pinned = false;
  if (drop) {
    Erase(it);
    return;
  }
  e.last_used = Now();
  if (e.tier == SessionTier::kDevice) {
    device_bytes_ -= e.state_bytes;
    e.state_bytes = e.cursor->ByteSize();
    e.history_tokens = e.cursor->history_tokens();
    device_bytes_ += e.state_bytes;
  }
  EnforceBudgets();
}

void SessionStore::EnforceBudgets() {
  // LRU victim of a tier: the unpinned entry of that tier used longest ago.
  auto victim = [&](SessionTier tier) {
    auto best = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      const Entry& e = it->second;
      if (e.tier != tier || e.pinned || !e.error.ok()) continue;
      if (best == entries_.end() || e.last_used < best->second.last_used) best = it;
    }
    return best;
  };
  while (device_bytes_ > opt_.device_budget) {
    auto it = victim(SessionTier::kDevice);
    if (it == entries_.end() || !ToHost(it->second).ok()) break;
  }
  while (!opt_.dir.empty() && host_bytes_ > opt_.host_budget) {
    auto it = victim(SessionTier::kHost);
    if (it == entries_.end() || !ToDisk(it->first, it->second).ok()) break;
  }
}

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
    if (!IsValidSessionId(id)) return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
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
    if (e.tier == SessionTier::kDisk && !opt_.dir.empty()) std::remove(PathOf(id).c_str());
    e.cursor.reset();
  }
  Entry& e = it->second;
  e.tier = SessionTier::kHost;
  e.bytes = std::move(bytes);
  e.state_bytes = static_cast<int64_t>(e.bytes.size());
  e.history_tokens = history;
  e.error = absl::OkStatus();
  e.last_used = Now();
  e.pinned = e.pinned || pin;
  host_bytes_ += e.state_bytes;
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
    case SessionTier::kDisk: return ReadAll(PathOf(id));
  }
  return absl::InternalError("unknown tier");
}

int64_t SessionStore::SweepExpired() {
  std::lock_guard<std::mutex> lock(mu_);
  const SteadyTime now = Now();
  int64_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    const double idle = std::chrono::duration<double>(now - it->second.last_used).count();
    if (!it->second.pinned && idle > opt_.ttl_seconds) {
      Erase(it);
      ++n;
    }
    it = next;
  }
  return n;
}

absl::Status SessionStore::SaveAll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (opt_.dir.empty()) return absl::FailedPreconditionError("no session dir configured");
  absl::Status first;
  for (auto& [id, e] : entries_) {
    if (e.pinned || !e.error.ok()) continue;
    absl::Status st = ToDisk(id, e);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

SessionStoreStats SessionStore::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SessionStoreStats s;
  for (const auto& [id, e] : entries_) {
    s.device += e.tier == SessionTier::kDevice;
    s.host += e.tier == SessionTier::kHost;
    s.disk += e.tier == SessionTier::kDisk;
  }
  s.device_bytes = device_bytes_;
  s.host_bytes = host_bytes_;
  return s;
}

}  // namespace titand
