// The shared session tier: what the engine does with core/session/shared_session_store.h (Redis).
//
// A session turn on a replica with --shared-store:
//   BeginTurn (API thread, in Enqueue)  acquire the session's lease (another replica holds it -> ABORTED;
//              this replica's other turn -> FAILED_PRECONDITION), read the stored version and etag, and
//              return the stored bytes when they are newer than the local copy (or there is no local
//              copy: a session created or last used on another replica). Redis unreachable: a local
//              session runs on its local state without a lease ("degraded"); a non-local one ->
//              UNAVAILABLE.
//   the turn   runs on the engine thread exactly as without the tier; a renewer thread extends the
//              lease every lease/3 while the turn and its write run.
//   EndTurn    (engine thread, returns at once) the writer thread serialises the state (the session is
//              still pinned), commits it with version+1 by compare-and-set against the version/etag it
//              was based on and the lease's fencing token, releases the lease in the same script, and
//              only then the turn's final message goes out, saying:
//                kDurable   the state is in Redis;
//                kPending   Redis was unreachable: kept locally and retried every retry_seconds;
//                kRejected  a newer state or another lease won (this replica was stale): the local copy
//                           is dropped so the next turn here fetches the stored one.
// A pending write that later finds a newer stored state, or another replica's lease, is a conflict:
// `on_conflict(id)` lets the engine drop its local copy. Thread-safety: every public method may be
// called from any thread; internal state is guarded by one mutex, Redis calls are made outside it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "core/session/session_types.h"
#include "core/session/shared_session_store.h"

namespace titand {

struct SharedTierConfig {
  SharedStoreOptions store;
  double retry_seconds = 1.0;
};

class SharedTier {
 public:
  static absl::StatusOr<std::unique_ptr<SharedTier>> Start(SharedTierConfig config,
                                                           std::function<void(const std::string&)> on_conflict);
  ~SharedTier();  // finishes queued jobs (their `done` runs), then stops the threads

  struct Begin {
    std::string token;                 // "" = no lease (Redis unreachable)
    std::optional<std::string> bytes;  // newer stored state: adopt it before the turn
  };
  absl::StatusOr<Begin> BeginTurn(const std::string& id, bool local);
  // `serialize` runs on the writer thread (only when `changed`); `done` runs there after the commit.
  void EndTurn(const std::string& id, const std::string& token, bool changed,
               std::function<absl::StatusOr<std::string>()> serialize, std::function<void(SharedWrite)> done);
  // A new session (Create/Fork): stored as version 1 unless the id exists in Redis (ALREADY_EXISTS).
  // Redis unreachable: OK, written later by the retry loop.
  absl::Status WriteNew(const std::string& id, std::string bytes);
  // The stored state of a session this replica does not have (no lease: Get/Fork read it).
  absl::StatusOr<std::string> FetchForRead(const std::string& id);
  // Deletes the stored state. Returns whether it existed; lease held -> FAILED_PRECONDITION.
  absl::StatusOr<bool> Delete(const std::string& id);
  // Waits (bounded) for queued jobs and pending writes (drain).
  void Flush(std::chrono::milliseconds limit);
  SharedStoreStats Stats() const;

 private:
  struct Track {  // one session as this replica knows it
    int64_t version = 0;
    std::string etag;              // of the local state
    std::string base_etag;         // what Redis holds as far as we know (CAS base); "" = nothing
    int64_t base_version = 0;
    bool pending = false;          // local state not yet in Redis: `bytes` waits for a retry
    std::string token;
    std::string bytes;
  };
  struct Job {
    std::string id, token;
    bool changed = false;
    std::function<absl::StatusOr<std::string>()> serialize;
    std::function<void(SharedWrite)> done;
  };
  explicit SharedTier(SharedTierConfig c) : cfg_(std::move(c)) {}
  void WriterLoop();
  void RenewerLoop();
  SharedWrite RunJob(Job& job);
  void RetryPending();
  // Commits t (pending) and updates it; returns the outcome. Called without mu_.
  SharedWrite Commit(const std::string& id, Track t, bool release);
  void Note(const absl::Status& st);  // up/down bookkeeping from a Redis call's status

  const SharedTierConfig cfg_;
  std::unique_ptr<SharedSessionStore> store_;
  std::function<void(const std::string&)> on_conflict_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Track> tracks_;     // guarded by mu_
  std::map<std::string, std::string> held_; // id -> lease token being renewed; guarded by mu_
  std::deque<Job> jobs_;                    // guarded by mu_
  bool busy_ = false;                       // the writer is running a job; guarded by mu_
  bool stop_ = false;                       // guarded by mu_
  SharedStoreStats stats_;                  // guarded by mu_ (except `up`)
  std::atomic<bool> up_{true};
  std::thread writer_, renewer_;
};

}  // namespace titand
