// SessionStore, second half: moves between tiers, budget enforcement, TTL sweep and drain (SaveAll).
// Every function here runs with mu_ held (the public ones take it). Durability rules: session_store.h.
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/session/session_store.h"
#include "core/session/atomic_file.h"

namespace titand {

void SessionStore::ToHost(Entry& e, std::string bytes) {
  device_bytes_ -= e.state_bytes;
  e.cursor.reset();
  e.bytes = std::move(bytes);
  e.state_bytes = static_cast<int64_t>(e.bytes.size());
  e.tier = SessionTier::kHost;
  host_bytes_ += e.state_bytes;
}

// Device or host -> disk. Writes only a stale file; `bytes` = the serialised device cursor (if known).
absl::Status SessionStore::ToDisk(const std::string& id, Entry& e, std::string_view bytes) {
  if (e.tier == SessionTier::kDisk) return absl::OkStatus();
  if (e.tier == SessionTier::kHost) bytes = e.bytes;
  if (!e.file_current) RETURN_IF_ERROR(WriteFile(id, e, bytes));
  if (e.tier == SessionTier::kDevice) {
    device_bytes_ -= e.state_bytes;
    e.cursor.reset();
  } else {
    host_bytes_ -= e.state_bytes;
    std::string().swap(e.bytes);
  }
  struct stat st;
  if (::stat(PathOf(id).c_str(), &st) == 0) e.state_bytes = static_cast<int64_t>(st.st_size);
  e.tier = SessionTier::kDisk;
  return absl::OkStatus();
}

// Restores to the device. The snapshot file stays: it is the last good copy until a newer one is durable.
absl::Status SessionStore::ToDevice(const std::string& id, Entry& e) {
  if (e.tier == SessionTier::kDevice) return absl::OkStatus();
  std::string from_disk;
  if (e.tier == SessionTier::kDisk) {
    ASSIGN_OR_RETURN(from_disk, ReadFile(id));
  }
  const std::string& bytes = e.tier == SessionTier::kDisk ? from_disk : e.bytes;
  auto cur = opt_.codec.deserialize(bytes);
  if (!cur.ok()) {
    return Unreadable(id, e, cur.status(), absl::StrCat(": ", cur.status().message()));
  }
  if (e.tier == SessionTier::kHost) host_bytes_ -= e.state_bytes;
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

void SessionStore::Unpin(const std::string& id, TurnEnd end) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (end == TurnEnd::kDrop) {
    // The state is unusable. A file that cannot be removed keeps the state from before this turn.
    (void)RemoveFileOf(id, it->second);
    Erase(it);
    return;
  }
  if (it->second.tier == SessionTier::kDevice) {
    Entry& e = it->second;
    device_bytes_ -= e.state_bytes;
    e.state_bytes = e.cursor->ByteSize();
    e.history_tokens = e.cursor->history_tokens();
    device_bytes_ += e.state_bytes;
    if (end == TurnEnd::kChanged) e.file_current = false;
    if (end == TurnEnd::kChanged && e.pinned && opt_.write_through && !opt_.dir.empty()) {
      // Write-through of the turn. The caller owns the pin, so nothing else reads or changes this cursor
      // or erases the entry (Delete, Fork, eviction, SweepExpired and SaveAll skip pinned sessions):
      // serialise and write (seconds for a large state on a slow disk) without blocking the store.
      const SessionCursor* cur = e.cursor.get();
      const std::string path = PathOf(id);
      lock.unlock();
      absl::Status written;
      {
        absl::StatusOr<std::string> bytes = opt_.codec.serialize(*cur);
        written = bytes.ok() ? WriteFileAtomically(path, {*bytes}) : bytes.status();
      }
      lock.lock();
      it = entries_.find(id);
      if (it == entries_.end()) return;
      // A failure is logged and counted; the file stays the last good one.
      (void)NoteWrite(id, it->second, written);
    }
  }
  Entry& e = it->second;
  e.pinned = false;
  e.last_used = Now();
  // Host tier (a state adopted from the shared tier whose turn never reached the device): written here.
  if (e.tier == SessionTier::kHost) (void)Persist(id, e);
  EnforceBudgets();
}

// LRU victims go device -> host -> disk. With a dir the host tier never exceeds host_budget: when the
// disk cannot take the host's LRU entries, the device victim stays on the device.
void SessionStore::EnforceBudgets() {
  auto victim = [&](SessionTier tier) {
    auto best = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      const Entry& e = it->second;
      if (e.tier != tier || e.pinned || !e.error.ok()) continue;
      if (best == entries_.end() || e.last_used < best->second.last_used) best = it;
    }
    return best;
  };
  auto host_full = [&](int64_t extra) { return !opt_.dir.empty() && host_bytes_ + extra > opt_.host_budget; };
  while (host_full(0)) {
    auto h = victim(SessionTier::kHost);
    if (h == entries_.end() || !ToDisk(h->first, h->second, {}).ok()) break;
  }
  while (device_bytes_ > opt_.device_budget) {
    auto it = victim(SessionTier::kDevice);
    if (it == entries_.end()) break;
    auto bytes = opt_.codec.serialize(*it->second.cursor);
    if (!bytes.ok()) break;
    const int64_t n = static_cast<int64_t>(bytes->size());
    while (host_full(n)) {
      auto h = victim(SessionTier::kHost);
      if (h == entries_.end() || !ToDisk(h->first, h->second, {}).ok()) break;
    }
    if (!host_full(n)) {
      ToHost(it->second, std::move(bytes).value());
    } else if (!ToDisk(it->first, it->second, *bytes).ok()) {
      break;  // the disk takes nothing: the victim stays on the device (StorageFull refuses new sessions)
    }
  }
}

int64_t SessionStore::SweepExpired() {
  std::lock_guard<std::mutex> lock(mu_);
  const SteadyTime now = Now();
  int64_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    const double idle = std::chrono::duration<double>(now - it->second.last_used).count();
    if (!it->second.pinned && idle > opt_.ttl_seconds) {
      if (RemoveFileOf(it->first, it->second).ok()) {
        Erase(it);
        ++n;
      } else {
        it->second.last_used = now;  // kept (a restart would bring it back); retried one TTL later
      }
    }
    it = next;
  }
  return n;
}

DrainResult SessionStore::SaveAll() {
  std::lock_guard<std::mutex> lock(mu_);
  DrainResult r;
  if (opt_.dir.empty()) {
    r.first_error = absl::FailedPreconditionError("no session dir configured");
    return r;
  }
  std::vector<std::map<std::string, Entry>::iterator> stale;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    Entry& e = it->second;
    if (e.pinned || !e.error.ok()) {
      ++r.skipped;
    } else if (e.file_current) {
      ++r.current;
      (void)ToDisk(it->first, e, {});  // no write: only frees memory
    } else {
      stale.push_back(it);
    }
  }
  auto fail = [&](const absl::Status& st) {
    ++r.failed;
    if (r.first_error.ok()) r.first_error = st;
  };
  for (size_t begin = 0; begin < stale.size();) {
    // One batch: serialise up to drain_batch_files sessions / drain_batch_bytes, one syncfs for all.
    std::vector<std::string> owned;
    std::vector<AtomicWrite> batch;
    std::vector<size_t> which;
    int64_t bytes = 0;
    size_t i = begin;
    for (; i < stale.size() && static_cast<int64_t>(batch.size()) < opt_.drain_batch_files &&
           (batch.empty() || bytes < opt_.drain_batch_bytes); ++i) {
      Entry& e = stale[i]->second;
      std::string_view data = e.bytes;
      if (e.tier == SessionTier::kDevice) {
        auto s = opt_.codec.serialize(*e.cursor);
        if (!s.ok()) {
          fail(s.status());
          continue;
        }
        owned.push_back(std::move(s).value());
      }
      batch.push_back(AtomicWrite{PathOf(stale[i]->first), data, {}});
      which.push_back(i);
      bytes += static_cast<int64_t>(e.tier == SessionTier::kDevice ? owned.back().size() : data.size());
    }
    // `owned` may have reallocated while filling: point device entries at their final strings.
    for (size_t j = 0, o = 0; j < batch.size(); ++j) {
      if (stale[which[j]]->second.tier == SessionTier::kDevice) batch[j].data = owned[o++];
    }
    counters_.drain_syncs += WriteFilesAtomically(opt_.dir, batch);
    for (size_t j = 0; j < batch.size(); ++j) {
      auto it = stale[which[j]];
      if (!batch[j].status.ok()) {
        ++counters_.disk_write_errors;
        last_write_error_ = batch[j].status;
        LogDiskError(batch[j].status);
        fail(batch[j].status);
        continue;
      }
      ++counters_.disk_writes;
      ++r.written;
      it->second.on_disk = it->second.file_current = true;
      (void)ToDisk(it->first, it->second, {});
    }
    begin = i;
  }
  return r;
}

SessionStoreStats SessionStore::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SessionStoreStats s = counters_;
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
