// Value types of sessions shared by the session module (store, tiers, shared tier) and the engine API
// (core/engine/engine_types.h re-exports them): where a session's state lives, what a listing shows, and
// where a turn's state stands in the shared store. No torch, no gRPC.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace titand {

using SteadyTime = std::chrono::steady_clock::time_point;

// Where a session turn's resulting state stands in the shared store (--shared-store) when the turn's
// final chunk is sent (core/session/shared_tier.h).
enum class SharedWrite {
  kNone,      // no shared store, or a stateless request
  kDurable,   // the state is in the shared store
  kPending,   // not yet: the shared store was unreachable; kept locally, the write is retried
  kRejected,  // a newer state or another replica's lease won: this turn's state was discarded
};
const char* SharedWriteName(SharedWrite w);

enum class SessionTier { kDevice, kHost, kDisk };
const char* SessionTierName(SessionTier t);

struct SessionInfo {
  std::string id;
  int64_t history_tokens = 0;
  int64_t state_bytes = 0;
  SessionTier tier = SessionTier::kDevice;
  bool busy = false;                   // a turn is running
  double idle_seconds = 0;
  int64_t created_unix = 0;
  std::string error;                   // "" = usable; else why its stored snapshot cannot be restored
};

// The shared session tier (all zero without --shared-store). Counters are totals since start.
struct SharedStoreStats {
  bool enabled = false;
  bool up = false;                     // the last Redis call succeeded
  int64_t pending_writes = 0;          // sessions whose latest state is not yet in Redis
  int64_t writes_ok = 0, writes_rejected = 0, write_errors = 0;
  int64_t fetches = 0;                 // states read from Redis (not local, or newer than local)
  int64_t bytes_written = 0, bytes_fetched = 0;
  int64_t last_value_bytes = 0;        // size of the last state written
  int64_t lease_conflicts = 0;         // turns refused: another turn held the session's lease
  int64_t leases_lost = 0;             // renewals that found the lease taken or expired
  double serialize_seconds = 0;        // total time serialising states for writes (writer thread)
  double commit_seconds = 0;           // total time of write round trips to Redis
  double fetch_seconds = 0;            // total time of state fetches from Redis
};

}  // namespace titand
