// Sessions shared across replicas in Redis: per-session leases with fencing tokens and versioned state
// written by compare-and-set. Synchronous, thread-safe (a small pool of RedisConnections); knows
// nothing of the engine. Values are opaque bytes (the engine stores the snapshot format of
// core/session/snapshot.h, checksummed, so a damaged value is rejected when it is restored).
//
// Keys (the {id} hash tag keeps one session's keys in one Redis Cluster slot, so the scripts are legal):
//   <prefix>{<id>}:s   hash  v = state version (1, 2, ...), e = etag (random, unique per write),
//                            f = fencing number of the writer's lease, d = the state bytes.
//                            PEXPIRE = the session TTL, renewed by every write.
//   <prefix>{<id>}:l   string  the lease: "<fence>/<replica>", PX = lease_ms, renewed while held.
//   <prefix>{<id>}:n   integer the session's fencing counter (INCR per lease), PEXPIRE = the TTL.
//
// Protocol (each step one Lua script = one atomic round trip):
//   Acquire  if :l exists -> the holder's token (not acquired); else n = INCR :n, SET :l "<n>/<replica>"
//            PX lease_ms -> acquired with that fencing token.
//   Renew    PEXPIRE :l only while it still holds our token (false = the lease was lost).
//   Commit   refuses (kLeaseHeld) when another token holds :l; refuses (kStale) when :s exists and
//            its etag is not our base etag, or its version >= ours, or its fence > ours; else writes
//            v, e, f, d and the TTL. Optionally releases our lease in the same script.
//   A missing :s (never written, expired, or lost in a Redis restart without persistence) accepts any
//   commit: there is nothing newer to protect.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/session/redis_client.h"

namespace titand {

struct SharedStoreOptions {
  RedisOptions redis;
  std::string key_prefix = "titand:";
  std::string replica_id;          // written into lease tokens: "<fence>/<replica_id>"
  int64_t lease_ms = 10000;
  double ttl_seconds = 3600;       // PEXPIRE of the state and the fencing counter
};

struct SharedHead {
  bool exists = false;
  int64_t version = 0;
  std::string etag;
};

struct SharedValue {
  SharedHead head;
  std::string bytes;
};

struct LeaseResult {
  bool acquired = false;
  std::string token;               // ours when acquired, else the holder's
};

enum class CommitResult { kOk, kStale, kLeaseHeld };

// The replica named in a token "<fence>/<replica>".
std::string LeaseTokenReplica(const std::string& token);

class SharedSessionStore {
 public:
  static absl::StatusOr<std::unique_ptr<SharedSessionStore>> Open(SharedStoreOptions options);

  absl::StatusOr<LeaseResult> Acquire(const std::string& id);
  absl::StatusOr<bool> Renew(const std::string& id, const std::string& token);
  absl::Status Release(const std::string& id, const std::string& token);
  absl::StatusOr<std::string> LeaseHolder(const std::string& id);  // "" = none

  absl::StatusOr<SharedHead> Head(const std::string& id);
  absl::StatusOr<SharedValue> Fetch(const std::string& id);       // head.exists false = no value
  // token "" = written without a lease (Redis was down when the turn began). base_etag "" = we know of
  // no stored value (then only a missing value is replaced).
  absl::StatusOr<CommitResult> Commit(const std::string& id, const std::string& token, const std::string& base_etag,
                                      int64_t new_version, const std::string& new_etag, const std::string& bytes,
                                      bool release_lease);
  // Deletes the state and counter unless a lease is held (FAILED_PRECONDITION). Returns whether a
  // value existed.
  absl::StatusOr<bool> Delete(const std::string& id);
  absl::Status Ping();

  const SharedStoreOptions& options() const { return opt_; }

 private:
  explicit SharedSessionStore(SharedStoreOptions o) : opt_(std::move(o)) {}
  std::string Key(const std::string& id, const char* suffix) const;
  absl::StatusOr<RedisReply> Run(const std::vector<std::string_view>& args);

  const SharedStoreOptions opt_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;  // guarded by mu_
};

}  // namespace titand
