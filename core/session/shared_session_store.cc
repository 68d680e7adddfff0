#include "core/session/shared_session_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/common/status.h"

namespace titand {
namespace {

// KEYS: lease, counter. ARGV: replica, lease_ms, ttl_ms. -> {1, token} | {0, holder}
constexpr char kAcquire[] = R"lua(
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local token = n .. '/' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token}
)lua";

// KEYS: lease. ARGV: token, lease_ms. -> 1 renewed | 0 lost
constexpr char kRenew[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
)lua";

// KEYS: lease. ARGV: token.
constexpr char kRelease[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

// KEYS: state, lease. ARGV: token, base_etag, version, etag, bytes, ttl_ms, release(0|1).
// -> 1 written | 0 stale | -1 another lease holds the session
constexpr char kCommit[] = R"lua(
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return -1 end
local fence = 0
if ARGV[1] ~= '' then fence = tonumber(string.match(ARGV[1], '^(%d+)/')) or 0 end
local cur = redis.call('HMGET', KEYS[1], 'v', 'e', 'f')
local ok = true
if cur[1] then
  if cur[2] ~= ARGV[2] or tonumber(cur[1]) >= tonumber(ARGV[3]) then ok = false end
  if fence > 0 and cur[3] and tonumber(cur[3]) > fence then ok = false end
end
if ok then
  redis.call('HMSET', KEYS[1], 'v', ARGV[3], 'e', ARGV[4], 'f', fence, 'd', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if holder and ARGV[7] == '1' then redis.call('DEL', KEYS[2]) end
if ok then return 1 end
return 0
)lua";

// KEYS: state, lease, counter. -> -1 leased | number of state keys deleted
constexpr char kDelete[] = R"lua(
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[3])
return n
)lua";

int64_t Int(const std::string& s) {
  int64_t v = 0;
  return absl::SimpleAtoi(s, &v) ? v : 0;
}

absl::Status Unexpected(const char* what) {
  return absl::InternalError(absl::StrCat("Redis: unexpected reply to ", what));
}

}  // namespace

std::string LeaseTokenReplica(const std::string& token) {
  size_t slash = token.find('/');
  return slash == std::string::npos ? std::string() : token.substr(slash + 1);
}

absl::StatusOr<std::unique_ptr<SharedSessionStore>> SharedSessionStore::Open(SharedStoreOptions options) {
  if (options.lease_ms < 100) return absl::InvalidArgumentError("shared store: lease must be >= 100 ms");
  if (options.ttl_seconds <= 0) return absl::InvalidArgumentError("shared store: TTL must be > 0");
  if (options.replica_id.empty() || options.replica_id.find('/') != std::string::npos)
    return absl::InvalidArgumentError("shared store: replica id must be non-empty and contain no '/'");
  // Validates the options (TLS availability) without connecting.
  ASSIGN_OR_RETURN(auto probe, RedisConnection::Open(options.redis));
  std::unique_ptr<SharedSessionStore> s(new SharedSessionStore(std::move(options)));
  s->idle_.push_back(std::move(probe));
  return s;
}

std::string SharedSessionStore::Key(const std::string& id, const char* suffix) const {
  return absl::StrCat(opt_.key_prefix, "{", id, "}:", suffix);
}

absl::StatusOr<RedisReply> SharedSessionStore::Run(const std::vector<std::string_view>& args) {
  std::unique_ptr<RedisConnection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!c) {
    ASSIGN_OR_RETURN(c, RedisConnection::Open(opt_.redis));
  }
  absl::StatusOr<RedisReply> r = c->Command(args);
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < 8) idle_.push_back(std::move(c));
  return r;
}

absl::StatusOr<LeaseResult> SharedSessionStore::Acquire(const std::string& id) {
  const std::string lease = Key(id, "l"), counter = Key(id, "n");
  const std::string ms = std::to_string(opt_.lease_ms);
  const std::string ttl = std::to_string(static_cast<int64_t>(opt_.ttl_seconds * 1000));
  ASSIGN_OR_RETURN(RedisReply r, Run({"EVAL", kAcquire, "2", lease, counter, opt_.replica_id, ms, ttl}));
  if (r.kind != RedisReply::kArray || r.elements.size() != 2 || r.elements[1].kind != RedisReply::kString)
    return Unexpected("lease acquire");
  return LeaseResult{r.elements[0].integer == 1, r.elements[1].str};
}

absl::StatusOr<bool> SharedSessionStore::Renew(const std::string& id, const std::string& token) {
  ASSIGN_OR_RETURN(RedisReply r, Run({"EVAL", kRenew, "1", Key(id, "l"), token, std::to_string(opt_.lease_ms)}));
  if (r.kind != RedisReply::kInteger) return Unexpected("lease renew");
  return r.integer == 1;
}

absl::Status SharedSessionStore::Release(const std::string& id, const std::string& token) {
  if (token.empty()) return absl::OkStatus();
  return Run({"EVAL", kRelease, "1", Key(id, "l"), token}).status();
}

absl::StatusOr<std::string> SharedSessionStore::LeaseHolder(const std::string& id) {
  ASSIGN_OR_RETURN(RedisReply r, Run({"GET", Key(id, "l")}));
  return r.kind == RedisReply::kString ? r.str : std::string();
}

absl::StatusOr<SharedHead> SharedSessionStore::Head(const std::string& id) {
  ASSIGN_OR_RETURN(RedisReply r, Run({"HMGET", Key(id, "s"), "v", "e"}));
  if (r.kind != RedisReply::kArray || r.elements.size() != 2) return Unexpected("HMGET");
  SharedHead h;
  if (r.elements[0].kind != RedisReply::kString) return h;
  h.exists = true;
  h.version = Int(r.elements[0].str);
  h.etag = r.elements[1].str;
  return h;
}

absl::StatusOr<SharedValue> SharedSessionStore::Fetch(const std::string& id) {
  ASSIGN_OR_RETURN(RedisReply r, Run({"HMGET", Key(id, "s"), "v", "e", "d"}));
  if (r.kind != RedisReply::kArray || r.elements.size() != 3) return Unexpected("HMGET");
  SharedValue v;
  if (r.elements[0].kind != RedisReply::kString || r.elements[2].kind != RedisReply::kString) return v;
  v.head.exists = true;
  v.head.version = Int(r.elements[0].str);
  v.head.etag = r.elements[1].str;
  v.bytes = std::move(r.elements[2].str);
  return v;
}

absl::StatusOr<CommitResult> SharedSessionStore::Commit(const std::string& id, const std::string& token,
                                                         const std::string& base_etag, int64_t new_version,
                                                         const std::string& new_etag, const std::string& bytes,
                                                         bool release_lease) {
  const std::string v = std::to_string(new_version);
  const std::string ttl = std::to_string(static_cast<int64_t>(opt_.ttl_seconds * 1000));
  ASSIGN_OR_RETURN(RedisReply r, Run({"EVAL", kCommit, "2", Key(id, "s"), Key(id, "l"), token, base_etag, v,
                                      new_etag, bytes, ttl, release_lease ? "1" : "0"}));
  if (r.kind != RedisReply::kInteger) return Unexpected("commit");
  return r.integer == 1 ? CommitResult::kOk : r.integer == 0 ? CommitResult::kStale : CommitResult::kLeaseHeld;
}

absl::StatusOr<bool> SharedSessionStore::Delete(const std::string& id) {
  ASSIGN_OR_RETURN(RedisReply r, Run({"EVAL", kDelete, "3", Key(id, "s"), Key(id, "l"), Key(id, "n")}));
  if (r.kind != RedisReply::kInteger) return Unexpected("delete");
  if (r.integer < 0) return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running on a replica"));
  return r.integer > 0;
}

absl::Status SharedSessionStore::Ping() { return Run({"PING"}).status(); }

}  // namespace titand
