// Owner of every session's cursor (core/model/sequence_state.h), in three tiers:
//   device : the live SessionCursor (tensors on the model's device), counted by cursor.ByteSize();
//   host   : the cursor serialised to bytes (the versioned snapshot form, codec.serialize);
//   disk   : a snapshot file <dir>/<id>.tsession holding those same bytes.
// Resident bytes above device_budget evict the least recently used unpinned session to host; host bytes
// above host_budget evict the LRU host session to disk (when a dir is set). A session is restored
// transparently to the device by Materialize.
// A pinned session (a turn is running) is never evicted, forked or deleted.
//
// Durability (with a dir; docs/operations.md "Session durability"):
//   * the last good snapshot file of a session is kept until a newer one is durable: a restore keeps
//     the file, a new snapshot replaces it by write-temp + fsync + rename (never delete-then-write);
//   * write_through: Create, Fork and every changed turn's Unpin write the session's snapshot before
//     returning, so an acknowledged turn or session survives kill -9; without it a crash loses the turns
//     a session ran since it last reached disk (eviction or drain), never an older snapshot;
//   * the disk tier absorbs host overflow; when disk writes fail the host tier still never exceeds
//     host_budget (the victim stays on the device) and Create/Fork answer RESOURCE_EXHAUSTED while the
//     device tier is over its budget; every failed write/read/remove is logged and counted (Stats);
//   * Delete removes the file first and refuses (INTERNAL, session kept) when it cannot, so a deleted
//     session never comes back after a restart;
//   * SaveAll (drain) writes only sessions whose file is stale, in batches of drain_batch_files files
//     with one syncfs per batch instead of one fsync per file.
// Tenants: a store key is "<id>" (no tenant) or "<tenant>~<id>" (SessionKey); the snapshot file of a
// key is <dir>/<key>.tsession. Per-tenant quotas count the sessions and state bytes of each tenant.
//
// Thread-safety: every public method takes the store's own std::mutex, so session RPCs may call it
// from any thread while the engine thread runs turns. Only the pin's owner touches a pinned cursor's
// tensors (through the pointer Materialize returns, valid until Unpin); the store itself serialises/forks
// only unpinned cursors, except the owner's own Serialize and Unpin. The turn-end write-through (Unpin)
// serialises and writes outside the mutex while the session is still pinned, so a slow disk delays only
// the caller of Unpin, never other sessions' Pin/Materialize/Unpin. Create, Fork, eviction and drain
// still serialise and write under the mutex (bounded by one session's size; rare next to turns). The
// mutex is a std::mutex (not absl::Mutex) so ThreadSanitizer, which intercepts pthread mutexes but cannot
// see inside Debian's uninstrumented abseil, checks it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/session/session_types.h"
#include "core/model/sequence_state.h"

namespace titand {

// How cursors become bytes and back (session_codec.h binds these to core/session/snapshot.h).
struct SessionCodec {
  std::function<absl::StatusOr<std::string>(const SessionCursor&)> serialize;
  std::function<absl::StatusOr<SessionCursor>(std::string_view)> deserialize;  // onto the device
  // History length recorded in a snapshot file, read from its header only (optional; listing at start).
  std::function<absl::StatusOr<int64_t>(const std::string& path)> peek_history;
  // The same from in-memory snapshot bytes (optional; shared tier: sessions fetched from Redis).
  std::function<absl::StatusOr<int64_t>(std::string_view bytes)> peek_history_bytes;
  // Full check of snapshot bytes (checksum, binding) without keeping a cursor (optional; Fork of a disk
  // session validates its source with it before answering OK).
  std::function<absl::Status(std::string_view)> verify;
};

struct SessionStoreOptions {
  std::string dir;                        // disk tier + drain + restart; empty = none
  int64_t device_budget = 512ll << 20;
  int64_t host_budget = 2048ll << 20;
  double ttl_seconds = 3600;              // idle longer than this -> deleted by SweepExpired
  int64_t max_sessions = 100000;
  bool write_through = false;             // write each session's snapshot at Create/Fork/turn end
  int64_t drain_batch_files = 512;        // SaveAll: files per syncfs
  int64_t drain_batch_bytes = 256ll << 20;  // SaveAll: snapshot bytes held in memory per batch
  int64_t max_tenant_sessions = 0;        // per tenant (key prefix); 0 = no quota
  int64_t max_tenant_state_bytes = 0;     // per tenant, every tier; 0 = no quota
  SessionCodec codec;
  std::function<SessionCursor()> fresh;   // an empty cursor for the model (required)
  std::function<SteadyTime()> clock;      // null = steady_clock::now (tests inject one)
};

struct SessionStoreStats {
  int64_t device = 0, host = 0, disk = 0;
  int64_t device_bytes = 0, host_bytes = 0;
  // Cumulative since Open: snapshot files written (atomically), syncs made by SaveAll batches, and
  // failures to write, read or remove a snapshot file.
  int64_t disk_writes = 0, drain_syncs = 0;
  int64_t disk_write_errors = 0, disk_read_errors = 0, disk_remove_errors = 0;
};

// What SaveAll did: sessions written now, already durable (file current), not saved (busy or broken
// sessions are skipped; `failed` could not be written: they are lost if the process exits).
struct DrainResult {
  int64_t written = 0, current = 0, skipped = 0, failed = 0;
  absl::Status first_error;
};

// How a turn left its session's state (SessionStore::Unpin).
enum class TurnEnd {
  kChanged,    // the turn changed the state: with write_through it is on disk when Unpin returns
  kUnchanged,  // the state is the one the turn started from (a refused, cancelled or failed turn)
  kDrop,       // the state is unusable: the session is deleted
};

// [A-Za-z0-9._-]{1,128}
bool IsValidSessionId(const std::string& id);
// Tenant names: [A-Za-z0-9._-]{1,64}.
bool IsValidTenant(const std::string& tenant);
// The store key of a tenant's session: id when tenant is "", else tenant + "~" + id.
std::string SessionKey(const std::string& tenant, const std::string& id);
// A valid id, or "<valid tenant>~<valid id>".
bool IsValidSessionKey(const std::string& key);
// 128 random bits from std::random_device, 32 lowercase hex digits.
std::string RandomSessionId();

class SessionStore {
 public:
  // Creates `dir` if needed and lists the snapshots found there (restored lazily).
  static absl::StatusOr<std::unique_ptr<SessionStore>> Open(SessionStoreOptions options);

  // requested_id: a key (see SessionKey); empty = server-chosen id (no tenant).
  // INVALID_ARGUMENT / ALREADY_EXISTS / RESOURCE_EXHAUSTED (server limit or the tenant's quota).
  absl::StatusOr<SessionInfo> Create(const std::string& requested_id);
  absl::StatusOr<SessionInfo> Get(const std::string& id) const;
  std::vector<SessionInfo> List() const;
  // busy -> FAILED_PRECONDITION; the snapshot file cannot be removed -> INTERNAL, session kept.
  absl::Status Delete(const std::string& id);
  // Deep copy from any tier (the copy lands in the source's tier); new_id empty = server-chosen. A disk
  // source is verified (codec.verify) first: a corrupt one fails here with its error.
  absl::StatusOr<SessionInfo> Fork(const std::string& id, const std::string& new_id);

  // A turn: Pin (NOT_FOUND, busy -> FAILED_PRECONDITION, broken snapshot -> its error, tenant's state
  // quota used up -> RESOURCE_EXHAUSTED), then on the engine thread Materialize (restores to the
  // device), then Unpin by the pin's owner, from any thread (`end`: see TurnEnd). With write_through a
  // changed state is written before Unpin returns, outside the store's mutex (a failed write is logged
  // and counted; the file stays the last good copy). Budgets are enforced at Unpin.
  absl::Status Pin(const std::string& id);
  absl::StatusOr<SessionCursor*> Materialize(const std::string& id);
  void Unpin(const std::string& id, TurnEnd end = TurnEnd::kChanged);

  // Shared tier (core/session/shared_tier.h). Adopt: the session's state becomes `bytes` (snapshot form,
  // host tier, verified when materialised), creating the entry if absent; pin = also pin it (the
  // caller's turn; an entry pinned by someone else -> FAILED_PRECONDITION unless the caller already
  // holds that pin: `pinned_by_caller`). Serialize: the state's snapshot bytes from any tier; for a
  // pinned session only by the pin's owner once its turn has stopped touching the cursor (it is then
  // serialised outside the store's mutex).
  absl::Status Adopt(const std::string& id, std::string bytes, bool pin, bool pinned_by_caller = false);
  absl::StatusOr<std::string> Serialize(const std::string& id);

  int64_t SweepExpired();          // deletes idle unpinned sessions past the TTL; returns how many
  // Drain: writes every unpinned session whose file is stale to dir; all written become disk tier.
  DrainResult SaveAll();
  SessionStoreStats Stats() const;

 private:
  struct Entry {
    SessionTier tier = SessionTier::kDevice;
    std::unique_ptr<SessionCursor> cursor;  // device tier
    std::string bytes;                      // host tier
    int64_t state_bytes = 0;
    int64_t history_tokens = 0;
    bool pinned = false;
    SteadyTime last_used;
    int64_t created_unix = 0;
    absl::Status error;                     // unreadable snapshot
    bool on_disk = false;                   // a snapshot file exists for this id
    bool file_current = false;              // ... and holds exactly this session's present state
  };
  explicit SessionStore(SessionStoreOptions o) : opt_(std::move(o)) {}
  SteadyTime Now() const;
  std::string PathOf(const std::string& id) const;
  // InfoOf .. Erase: the caller holds mu_.
  SessionInfo InfoOf(const std::string& id, const Entry& e) const;
  absl::StatusOr<std::string> NewId(const std::string& requested);
  absl::StatusOr<SessionInfo> Insert(const std::string& id, Entry e);
  absl::Status WriteFile(const std::string& id, Entry& e, std::string_view bytes);
  // Bookkeeping of a snapshot write of `id` that ended with `st` (counters, flags, log); returns the
  // error a client may see (no server path).
  absl::Status NoteWrite(const std::string& id, Entry& e, const absl::Status& st);
  absl::StatusOr<std::string> ReadFile(const std::string& id);
  absl::Status Persist(const std::string& id, Entry& e);       // write_through after a change
  void ToHost(Entry& e, std::string bytes);
  absl::Status ToDisk(const std::string& id, Entry& e, std::string_view device_bytes);
  absl::Status CheckTenantQuota(const std::string& key, bool new_session) const;
  absl::Status ToDevice(const std::string& id, Entry& e);
  void EnforceBudgets();
  absl::Status StorageFull() const;
  absl::Status RemoveFileOf(const std::string& id, Entry& e);
  void Erase(std::map<std::string, Entry>::iterator it);
  void LogDiskError(const absl::Status& st) const;
  // The error of a stored snapshot that cannot be restored (`why` from the codec): logged, counted as a
  // disk read error, and reported as DATA_LOSS where the codec calls the bytes malformed (INVALID_ARGUMENT:
  // bad magic, unknown version, broken header), since the client sent nothing wrong; a snapshot of another
  // model keeps FAILED_PRECONDITION. Sets and returns e.error. Needs mu_ held (or the store not shared yet).
  absl::Status Unreadable(const std::string& id, Entry& e, const absl::Status& why, absl::string_view detail);

  const SessionStoreOptions opt_;
  mutable std::mutex mu_;
  // Guarded by mu_: the session table, every Entry in it (tier, bytes, pinned, last_used, ...) and the
  // two tier byte counters below.
  std::map<std::string, Entry> entries_;
  int64_t device_bytes_ = 0;  // sum of state_bytes over device-tier entries
  int64_t host_bytes_ = 0;    // sum of state_bytes over host-tier entries
  absl::Status last_write_error_;  // the last disk write failed (cleared by the next success)
  SessionStoreStats counters_;     // the cumulative disk_* fields only
};

}  // namespace titand
