#include "core/session/shared_tier.h"

#include <cstdio>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/common/log.h"
#include "core/common/status.h"

namespace titand {
namespace {

std::string NewEtag() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedTier>> SharedTier::Start(SharedTierConfig config,
                                                               std::function<void(const std::string&)> on_conflict) {
  if (config.retry_seconds <= 0) return absl::InvalidArgumentError("shared store: retry interval must be > 0");
  std::unique_ptr<SharedTier> t(new SharedTier(std::move(config)));
  ASSIGN_OR_RETURN(t->store_, SharedSessionStore::Open(t->cfg_.store));
  t->on_conflict_ = std::move(on_conflict);
  t->stats_.enabled = true;
  t->Note(t->store_->Ping());  // a replica may start while Redis is down: it runs degraded
  t->writer_ = std::thread([p = t.get()] { p->WriterLoop(); });
  t->renewer_ = std::thread([p = t.get()] { p->RenewerLoop(); });
  return t;
}

SharedTier::~SharedTier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (renewer_.joinable()) renewer_.join();
}

void SharedTier::Note(const absl::Status& st) {
  // Only transport failures say Redis is down; an error reply means it answered.
  up_ = !absl::IsUnavailable(st);
}

absl::StatusOr<SharedTier::Begin> SharedTier::BeginTurn(const std::string& id, bool local) {
  absl::StatusOr<LeaseResult> lease = store_->Acquire(id);
  Note(lease.status());
  if (!lease.ok()) {
    if (local) return Begin{};  // degraded: local state, no lease
    return absl::UnavailableError(absl::StrCat("session ", id, " is not on this replica and the shared store is unreachable (",
                                               lease.status().message(), ")"));
  }
  if (!lease->acquired) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.lease_conflicts;
    if (LeaseTokenReplica(lease->token) == cfg_.store.replica_id)
      return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a turn running"));
    return absl::AbortedError(absl::StrCat("session ", id, " has a turn running on replica ",
                                           LeaseTokenReplica(lease->token), " (lease ", lease->token,
                                           "); retry when that turn ends"));
  }
  Begin b;
  b.token = lease->token;
  absl::StatusOr<SharedHead> head = store_->Head(id);
  Note(head.status());
  auto fail = [&](absl::Status st) {
    (void)store_->Release(id, b.token);
    return st;
  };
  if (!head.ok()) {
    if (local) return Begin{};
    return fail(absl::UnavailableError(absl::StrCat("session ", id, ": shared store: ", head.status().message())));
  }
  bool fetch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Track& t = tracks_[id];
    if (!head->exists) {
      if (!local) {
        tracks_.erase(id);
        return fail(absl::NotFoundError(absl::StrCat("session ", id, " not found")));
      }
      if (!t.pending) t.base_etag.clear();  // expired or lost in a Redis restart: ours is the state
      fetch = false;
    } else {
      fetch = !local || !(head->etag == t.etag || (t.pending && head->etag == t.base_etag));
    }
    held_[id] = b.token;
  }
  if (!fetch) return b;
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<SharedValue> v = store_->Fetch(id);
  Note(v.status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.fetch_seconds += Seconds(t0);
  }
  auto unhold = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(id);
  };
  if (local && !v.ok()) {  // Redis went away between the calls: degraded, as if it had been down
    unhold();
    (void)store_->Release(id, b.token);
    return Begin{};
  }
  if (local && !v->head.exists) return b;  // deleted or expired meanwhile: the local state goes on
  if (!v.ok() || !v->head.exists) {
    unhold();
    return fail(v.ok() ? absl::NotFoundError(absl::StrCat("session ", id, " not found"))
                       : absl::UnavailableError(absl::StrCat("session ", id, ": shared store: ", v.status().message())));
  }
  std::lock_guard<std::mutex> lock(mu_);
  Track& t = tracks_[id];
  if (t.pending) ++stats_.writes_rejected;  // our unwritten state lost to a newer stored one
  t = Track{};
  t.version = t.base_version = v->head.version;
  t.etag = t.base_etag = v->head.etag;
  ++stats_.fetches;
  stats_.bytes_fetched += static_cast<int64_t>(v->bytes.size());
  b.bytes = std::move(v->bytes);
  return b;
}

void SharedTier::EndTurn(const std::string& id, const std::string& token, bool changed,
                         std::function<absl::StatusOr<std::string>()> serialize, std::function<void(SharedWrite)> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{id, token, changed, std::move(serialize), std::move(done)});
  }
  cv_.notify_all();
}

SharedWrite SharedTier::Commit(const std::string& id, Track t, bool release) {
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<CommitResult> r = store_->Commit(id, t.token, t.base_etag, t.version, t.etag, t.bytes, release);
  Note(r.status());
  std::lock_guard<std::mutex> lock(mu_);
  stats_.commit_seconds += Seconds(t0);
  auto it = tracks_.find(id);
  const bool current = it != tracks_.end() && it->second.etag == t.etag;  // not superseded meanwhile
  if (!r.ok()) {
    ++stats_.write_errors;
    return SharedWrite::kPending;
  }
  if (*r == CommitResult::kOk) {
    ++stats_.writes_ok;
    stats_.bytes_written += static_cast<int64_t>(t.bytes.size());
    stats_.last_value_bytes = static_cast<int64_t>(t.bytes.size());
    if (current) {
      it->second.pending = false;
      it->second.base_version = t.version;
      it->second.base_etag = t.etag;
      std::string().swap(it->second.bytes);
    }
    return SharedWrite::kDurable;
  }
  ++stats_.writes_rejected;
  if (current) tracks_.erase(it);
  return SharedWrite::kRejected;
}

SharedWrite SharedTier::RunJob(Job& job) {
  if (!job.changed) {
    if (!job.token.empty()) Note(store_->Release(job.id, job.token));
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(job.id);
    auto it = tracks_.find(job.id);
    if (it == tracks_.end()) return SharedWrite::kPending;
    return it->second.pending ? SharedWrite::kPending : SharedWrite::kDurable;
  }
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> bytes = job.serialize();
  Track t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.serialize_seconds += Seconds(t0);
    held_.erase(job.id);
    if (!bytes.ok()) {
      LogLine(absl::StrCat("shared store: cannot serialise session ", job.id, ": ", bytes.status().ToString()));
      return SharedWrite::kPending;
    }
    Track& cur = tracks_[job.id];
    cur.version = std::max(cur.version, cur.base_version) + 1;
    cur.etag = NewEtag();
    cur.pending = true;
    cur.token = job.token;
    cur.bytes = std::move(bytes).value();
    t = cur;
  }
  return Commit(job.id, std::move(t), /*release=*/true);
}

void SharedTier::RetryPending() {
  std::vector<std::pair<std::string, Track>> todo;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, t] : tracks_) {
      if (t.pending && !t.bytes.empty() && !held_.count(id)) todo.emplace_back(id, t);
    }
  }
  for (auto& [id, t] : todo) {
    if (!up_ && !store_->Ping().ok()) return;
    up_ = true;
    if (Commit(id, t, /*release=*/true) == SharedWrite::kRejected && on_conflict_) on_conflict_(id);
  }
}

void SharedTier::WriterLoop() {
  const auto every = std::chrono::milliseconds(static_cast<int64_t>(cfg_.retry_seconds * 1000));
  auto last_retry = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, every, [&] { return stop_ || !jobs_.empty(); });
    if (!jobs_.empty()) {
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      busy_ = true;
      lock.unlock();
      SharedWrite w = RunJob(job);
      job.done(w);
      lock.lock();
      busy_ = false;
      cv_.notify_all();
      continue;
    }
    if (stop_) return;
    if (std::chrono::steady_clock::now() - last_retry >= every) {
      lock.unlock();
      RetryPending();
      lock.lock();
      last_retry = std::chrono::steady_clock::now();
      cv_.notify_all();
    }
  }
}

void SharedTier::RenewerLoop() {
  const auto every = std::chrono::milliseconds(std::max<int64_t>(cfg_.store.lease_ms / 3, 20));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, every, [&] { return stop_; })) {
    std::map<std::string, std::string> held = held_;
    lock.unlock();
    if (held.empty()) Note(store_->Ping());  // keeps health and metrics current while idle
    for (const auto& [id, token] : held) {
      absl::StatusOr<bool> r = store_->Renew(id, token);
      Note(r.status());
      if (r.ok() && !*r) {
        std::lock_guard<std::mutex> l(mu_);
        ++stats_.leases_lost;
        auto it = held_.find(id);
        if (it != held_.end() && it->second == token) held_.erase(it);
      }
    }
    lock.lock();
  }
}

absl::Status SharedTier::WriteNew(const std::string& id, std::string bytes) {
  Track t;
  t.version = 1;
  t.etag = NewEtag();
  t.pending = true;
  t.bytes = std::move(bytes);
  {
    std::lock_guard<std::mutex> lock(mu_);
    tracks_[id] = t;
  }
  SharedWrite w = Commit(id, t, /*release=*/false);
  if (w == SharedWrite::kRejected) return absl::AlreadyExistsError(absl::StrCat("session ", id, " exists"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> SharedTier::FetchForRead(const std::string& id) {
  absl::StatusOr<SharedValue> v = store_->Fetch(id);
  Note(v.status());
  if (!v.ok()) return absl::UnavailableError(absl::StrCat("session ", id, ": shared store: ", v.status().message()));
  if (!v->head.exists) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  std::lock_guard<std::mutex> lock(mu_);
  Track& t = tracks_[id];
  t = Track{};
  t.version = t.base_version = v->head.version;
  t.etag = t.base_etag = v->head.etag;
  ++stats_.fetches;
  stats_.bytes_fetched += static_cast<int64_t>(v->bytes.size());
  return std::move(v->bytes);
}

absl::StatusOr<bool> SharedTier::Delete(const std::string& id) {
  absl::StatusOr<bool> r = store_->Delete(id);
  Note(r.status());
  if (r.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    tracks_.erase(id);
  }
  return r;
}

void SharedTier::Flush(std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  std::unique_lock<std::mutex> lock(mu_);
  auto idle = [&] {
    if (!jobs_.empty() || busy_) return false;
    for (const auto& [id, t] : tracks_) {
      if (t.pending && !t.bytes.empty()) return false;
    }
    return true;
  };
  while (!idle() && std::chrono::steady_clock::now() < end) {
    cv_.notify_all();
    cv_.wait_until(lock, std::min(end, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
}

SharedStoreStats SharedTier::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SharedStoreStats s = stats_;
  s.up = up_;
  for (const auto& [id, t] : tracks_) s.pending_writes += t.pending;
  return s;
}

}  // namespace titand
