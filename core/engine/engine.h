// The inference engine: one thread owns the model, device memory and live session states; everything
// else talks to it through a queue. Knows nothing of gRPC.
//
//   Enqueue(req, on_chunk) -> id     the request waits in a bounded queue (full -> RESOURCE_EXHAUSTED);
//                                    a session runs one turn at a time (second -> FAILED_PRECONDITION);
//                                    unknown session -> NOT_FOUND; bad arguments -> INVALID_ARGUMENT;
//                                    draining -> UNAVAILABLE.
//   Cancel(id) / Abort(request_id)   cancellation is data: checked every step; the stream ends with
//                                    kCancelled and the request's slot is freed.
//   Shutdown(drain)                  drain: stop admitting, finish running requests, snapshot every
//                                    session to the session dir; else cancel everything.
// Each scheduler step packs chunked prefills and decodes of many sessions into one model forward.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/engine_types.h"

namespace titand {

struct Runtime;

struct EngineConfig {
  int64_t max_queue = 256;              // waiting requests; beyond -> RESOURCE_EXHAUSTED
  int64_t max_running = 16;             // sequences in one batch
  int64_t max_step_tokens = 512;        // token budget per step (prefill chunks + decodes)
  int64_t prefill_chunk = 256;          // largest prefill piece of one sequence per step
  int64_t max_prompt_tokens = 32768;
  int64_t max_new_tokens = 4096;
  // Session store.
  std::string session_dir;              // snapshots (disk tier, drain, restart); empty = no disk tier
  int64_t device_state_budget = 512ll << 20;   // resident bytes before LRU eviction to host
  int64_t host_state_budget = 2048ll << 20;    // host bytes before eviction to disk
  double session_ttl_seconds = 3600;    // idle sessions older than this are deleted
  int64_t max_sessions = 100000;
  bool session_write_through = true;    // write each session's snapshot at create/fork/turn end
  absl::Status Validate() const;
};

class Engine {
 public:
  // Takes ownership of the runtime; starts the engine thread; loads sessions found in session_dir.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config, std::unique_ptr<Runtime> rt);
  virtual ~Engine() = default;

  virtual absl::StatusOr<RequestId> Enqueue(GenerateRequest req, ChunkCallback on_chunk) = 0;
  virtual void Cancel(RequestId id) = 0;
  virtual absl::Status Abort(const std::string& request_id) = 0;   // NOT_FOUND if unknown

  // Sessions. Ids chosen by the server are unguessable (128 random bits, hex); a client-chosen id must
  // match [A-Za-z0-9._-]{1,128} (else INVALID_ARGUMENT; taken -> ALREADY_EXISTS).
  virtual absl::StatusOr<SessionInfo> CreateSession(const std::string& requested_id) = 0;
  virtual absl::StatusOr<SessionInfo> GetSession(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<SessionInfo>> ListSessions() = 0;
  virtual absl::Status DeleteSession(const std::string& id) = 0;
  virtual absl::StatusOr<SessionInfo> ForkSession(const std::string& id, const std::string& new_id) = 0;

  // Warm-up: one short generation so that the first real request pays no one-off costs.
  virtual absl::Status WarmUp() = 0;
  // Drain: NOT OK (naming how many sessions were not saved and the first error) when any session
  // could not be written; busy/unreadable sessions are skipped and do not count as failures.
  virtual absl::Status Shutdown(bool drain) = 0;
  virtual EngineStats Stats() const = 0;
  virtual const Runtime& runtime() const = 0;
};

}  // namespace titand
