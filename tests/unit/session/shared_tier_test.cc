// SharedTier (core/session/shared_tier.h) against a real redis-server: two tiers = two replicas.
#include "core/session/shared_tier.h"

#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "tests/unit/session/redis_server_util.h"

namespace titand {
namespace {

using redis_test::RedisServer;

struct Replica {
  std::unique_ptr<SharedTier> tier;
  std::vector<std::string> conflicts;
  std::mutex mu;
};

std::unique_ptr<Replica> Open(const RedisServer& r, const std::string& name) {
  auto rep = std::make_unique<Replica>();
  SharedTierConfig c;
  c.store.redis = r.options();
  c.store.replica_id = name;
  c.store.lease_ms = 2000;
  c.store.ttl_seconds = 60;
  c.retry_seconds = 0.1;
  Replica* p = rep.get();
  auto t = SharedTier::Start(c, [p](const std::string& id) {
    std::lock_guard<std::mutex> lock(p->mu);
    p->conflicts.push_back(id);
  });
  EXPECT_TRUE(t.ok()) << t.status();
  rep->tier = std::move(t).value();
  return rep;
}

// Ends a turn whose new state is `bytes` (nullopt = unchanged) and waits for the writer's verdict.
SharedWrite End(SharedTier& t, const std::string& id, const std::string& token, std::optional<std::string> bytes) {
  std::promise<SharedWrite> p;
  t.EndTurn(id, token, bytes.has_value(), [bytes]() -> absl::StatusOr<std::string> { return *bytes; },
            [&p](SharedWrite w) { p.set_value(w); });
  return p.get_future().get();
}

std::string Stored(const RedisServer& r, const std::string& id) {
  auto c = *RedisConnection::Open(r.options());
  auto v = c->Command({"HGET", "titand:{" + id + "}:s", "d"});
  return v.ok() ? v->str : "";
}

template <typename F>
bool WaitFor(F f) {
  for (int i = 0; i < 100; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(SharedTier, TurnsOnTwoReplicasShareTheState) {
  RedisServer r;
  auto a = Open(r, "A"), b = Open(r, "B");
  ASSERT_TRUE(a->tier->WriteNew("s", "v1").ok());
  EXPECT_EQ(b->tier->WriteNew("s", "other").code(), absl::StatusCode::kAlreadyExists);
  auto ba = a->tier->BeginTurn("s", /*local=*/true);
  ASSERT_TRUE(ba.ok()) << ba.status();
  EXPECT_FALSE(ba->token.empty());
  EXPECT_FALSE(ba->bytes.has_value());  // local copy is the stored one
  // B's turn while A's runs: ABORTED, naming A.
  auto bb = b->tier->BeginTurn("s", false);
  EXPECT_EQ(bb.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(bb.status().message().find("replica A"), std::string::npos);
  // A second turn on A itself: FAILED_PRECONDITION (busy), as without the tier.
  EXPECT_EQ(a->tier->BeginTurn("s", true).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(End(*a->tier, "s", ba->token, "v2"), SharedWrite::kDurable);
  EXPECT_EQ(Stored(r, "s"), "v2");
  bb = b->tier->BeginTurn("s", false);  // lease released with the write
  ASSERT_TRUE(bb.ok()) << bb.status();
  ASSERT_TRUE(bb->bytes.has_value());
  EXPECT_EQ(*bb->bytes, "v2");
  EXPECT_EQ(End(*b->tier, "s", bb->token, "v3"), SharedWrite::kDurable);
  // A's copy is now older: its next turn fetches B's.
  ba = a->tier->BeginTurn("s", true);
  ASSERT_TRUE(ba.ok());
  ASSERT_TRUE(ba->bytes.has_value());
  EXPECT_EQ(*ba->bytes, "v3");
  EXPECT_EQ(End(*a->tier, "s", ba->token, std::nullopt), SharedWrite::kDurable);  // unchanged: lease released
  EXPECT_TRUE(b->tier->BeginTurn("s", true).ok());
  SharedStoreStats s = b->tier->Stats();
  EXPECT_TRUE(s.up);
  EXPECT_EQ(s.fetches, 1);
  EXPECT_EQ(s.writes_ok, 1);
  EXPECT_EQ(s.lease_conflicts, 1);
  EXPECT_EQ(a->tier->BeginTurn("missing", false).status().code(), absl::StatusCode::kNotFound);
}

TEST(SharedTier, RedisDownTurnsGoOnPendingThenWritten) {
  RedisServer r;
  auto a = Open(r, "A"), b = Open(r, "B");
  ASSERT_TRUE(a->tier->WriteNew("s", "v1").ok());
  r.Stop();
  auto ba = a->tier->BeginTurn("s", true);
  ASSERT_TRUE(ba.ok()) << ba.status();
  EXPECT_TRUE(ba->token.empty());  // degraded: no lease
  EXPECT_EQ(b->tier->BeginTurn("s", false).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(End(*a->tier, "s", "", "v2"), SharedWrite::kPending);
  EXPECT_FALSE(a->tier->Stats().up);
  EXPECT_EQ(a->tier->Stats().pending_writes, 1);
  // A later turn on the pending session supersedes the pending write (same CAS base).
  ba = a->tier->BeginTurn("s", true);
  EXPECT_EQ(End(*a->tier, "s", ba->token, "v3"), SharedWrite::kPending);
  r.Start();  // empty: the retry loop writes v3
  EXPECT_TRUE(WaitFor([&] { return a->tier->Stats().pending_writes == 0; }));
  EXPECT_EQ(Stored(r, "s"), "v3");
  EXPECT_TRUE(a->tier->Stats().up);
}

TEST(SharedTier, DivergedPendingWriteIsRejectedAndReported) {
  RedisServer r;
  auto a = Open(r, "A"), b = Open(r, "B");
  ASSERT_TRUE(a->tier->WriteNew("s", "v1").ok());
  auto bb = b->tier->BeginTurn("s", false);  // B has the session too
  ASSERT_TRUE(bb.ok());
  EXPECT_EQ(End(*b->tier, "s", bb->token, std::nullopt), SharedWrite::kDurable);
  // A stalls past its lease mid-turn; B takes over and writes; A's write from the old base is refused.
  auto ba = a->tier->BeginTurn("s", true);
  ASSERT_TRUE(ba.ok());
  // A's renewer keeps the lease alive: drop it by hand, as an expiry during a stall of A would.
  auto c = *RedisConnection::Open(r.options());
  ASSERT_TRUE(c->Command({"DEL", "titand:{s}:l"}).ok());
  bb = b->tier->BeginTurn("s", true);
  ASSERT_TRUE(bb.ok()) << bb.status();
  EXPECT_EQ(End(*b->tier, "s", bb->token, "B's"), SharedWrite::kDurable);
  EXPECT_EQ(End(*a->tier, "s", ba->token, "A's"), SharedWrite::kRejected);
  EXPECT_EQ(Stored(r, "s"), "B's");
  EXPECT_EQ(a->tier->Stats().writes_rejected, 1);
  // Degraded turns on both while Redis is down: the first write back wins, the other is a conflict.
  r.Stop();
  r.Start();
  ASSERT_TRUE(a->tier->WriteNew("t", "t1").ok());
  ASSERT_TRUE(b->tier->FetchForRead("t").ok());
  r.Stop();
  auto ta = a->tier->BeginTurn("t", true);
  auto tb = b->tier->BeginTurn("t", true);
  EXPECT_EQ(End(*a->tier, "t", ta->token, "tA"), SharedWrite::kPending);
  EXPECT_EQ(End(*b->tier, "t", tb->token, "tB"), SharedWrite::kPending);
  r.Start();
  EXPECT_TRUE(WaitFor([&] { return a->tier->Stats().pending_writes + b->tier->Stats().pending_writes == 0; }));
  const std::string won = Stored(r, "t");
  ASSERT_TRUE(won == "tA" || won == "tB") << won;
  Replica& loser = won == "tA" ? *b : *a;
  std::lock_guard<std::mutex> lock(loser.mu);
  EXPECT_EQ(loser.conflicts, std::vector<std::string>{"t"});
}

}  // namespace
}  // namespace titand
