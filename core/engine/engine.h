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
#include "core/session/shared_session_store.h"

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
  // Shared session tier in Redis (core/session/shared_tier.h); off unless use_shared_store.
  bool use_shared_store = false;
  SharedStoreOptions shared_store;      // ttl_seconds is set from session_ttl_seconds by the engine
  double shared_retry_seconds = 1.0;    // interval of write retries while Redis is unreachable
  bool session_write_through = true;    // write each session's snapshot at create/fork/turn end
  // Threads that write turn-end snapshots off the engine thread (core/engine/session_writer.h); [1, 64].
  int session_write_threads = 2;
  // Per-tenant quotas (0 = none): sessions, and the state bytes of a tenant's sessions (checked when a
  // session is created or forked and when a turn starts; a running turn may pass it by its own growth).
  int64_t max_tenant_sessions = 0;
  int64_t max_tenant_state_bytes = 0;
  // HMAC-SHA256 key of session snapshots (raw bytes, >= 32; empty = unsigned SHA-256 snapshots).
  std::string snapshot_key;
  absl::Status Validate() const;
};

class Engine {
 public:
  // Takes ownership of the runtime; starts the engine thread; loads sessions found in session_dir. The engine
  // thread computes with rt->intra_op_threads intra-op threads and the calling thread is left with one
  // (UseIntraOpThreads, core/runtime/runtime.h).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config, std::unique_ptr<Runtime> rt);
  virtual ~Engine() = default;

  // Tenants: session ids and request ids live in the caller's tenant (req.tenant / `tenant` below; a
  // plain string, [A-Za-z0-9._-]{1,64}, or "" = the single tenant of a server without authentication).
  // Another tenant's ids answer NOT_FOUND exactly like ids that do not exist (no existence oracle).
  virtual absl::StatusOr<RequestId> Enqueue(GenerateRequest req, ChunkCallback on_chunk) = 0;
  virtual void Cancel(RequestId id) = 0;
  virtual absl::Status Abort(const std::string& request_id, const std::string& tenant = "") = 0;  // NOT_FOUND if unknown

  // Sessions. Ids chosen by the server are unguessable (128 random bits, hex); a client-chosen id must
  // match [A-Za-z0-9._-]{1,128} (else INVALID_ARGUMENT; taken -> ALREADY_EXISTS). Tenant quota or the
  // server's session limit reached -> RESOURCE_EXHAUSTED.
  virtual absl::StatusOr<SessionInfo> CreateSession(const std::string& requested_id, const std::string& tenant = "") = 0;
  virtual absl::StatusOr<SessionInfo> GetSession(const std::string& id, const std::string& tenant = "") = 0;
  // The tenant's sessions, ordered by id.
  virtual absl::StatusOr<std::vector<SessionInfo>> ListSessions(const std::string& tenant = "") = 0;
  virtual absl::Status DeleteSession(const std::string& id, const std::string& tenant = "") = 0;
  virtual absl::StatusOr<SessionInfo> ForkSession(const std::string& id, const std::string& new_id,
                                                  const std::string& tenant = "") = 0;

  // Warm-up: one short generation so that the first real request pays no one-off costs.
  virtual absl::Status WarmUp() = 0;
  // Drain: NOT OK (naming how many sessions were not saved and the first error) when any session
  // could not be written; busy/unreadable sessions are skipped and do not count as failures.
  virtual absl::Status Shutdown(bool drain) = 0;
  virtual EngineStats Stats() const = 0;
  virtual const Runtime& runtime() const = 0;
};

}  // namespace titand
