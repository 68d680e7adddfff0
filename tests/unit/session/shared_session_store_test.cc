// SharedSessionStore and RedisConnection against a real redis-server (tests/unit/session/redis_server_util.h).
#include "core/session/shared_session_store.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/unit/session/redis_server_util.h"

namespace titand {
namespace {

using redis_test::RedisServer;

std::unique_ptr<SharedSessionStore> OpenStore(const RedisServer& r, const std::string& replica, int64_t lease_ms = 5000) {
  SharedStoreOptions o;
  o.redis = r.options();
  o.replica_id = replica;
  o.lease_ms = lease_ms;
  o.ttl_seconds = 60;
  auto s = SharedSessionStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

TEST(RedisUrl, Parses) {
  auto o = ParseRedisUrl("redis://10.0.0.5:6380/3");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->host, "10.0.0.5");
  EXPECT_EQ(o->port, 6380);
  EXPECT_EQ(o->db, 3);
  EXPECT_FALSE(o->tls);
  o = ParseRedisUrl("rediss://user:p%w@redis.example:7000");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->tls);
  EXPECT_EQ(o->username, "user");
  EXPECT_EQ(o->password, "p%w");
  EXPECT_EQ(o->port, 7000);
  o = ParseRedisUrl("redis://redis");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->port, 6379);
  EXPECT_EQ(o->db, 0);
  EXPECT_EQ(ParseRedisUrl("http://x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRedisUrl("redis://x:99999").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRedisUrl("redis://x/abc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRedisUrl("redis://").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisConnection, TlsRejectedClearlyWhenNotBuiltIn) {
  RedisOptions o;
  o.tls = true;
  auto c = RedisConnection::Open(o);
  if (RedisTlsAvailable()) {
    EXPECT_TRUE(c.ok()) << c.status();
  } else {
    ASSERT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(c.status().message().find("TLS"), std::string::npos);
  }
}

TEST(RedisConnection, UnreachableIsUnavailableAndReconnects) {
  RedisServer r;
  auto c = *RedisConnection::Open(r.options());
  ASSERT_TRUE(c->Command({"SET", "k", std::string("a\0b", 3)}).ok());
  auto got = c->Command({"GET", "k"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->str, std::string("a\0b", 3));  // binary safe
  EXPECT_EQ(c->Command({"NOSUCHCMD"}).status().code(), absl::StatusCode::kInternal);
  r.Stop();
  EXPECT_EQ(c->Command({"PING"}).status().code(), absl::StatusCode::kUnavailable);
  r.Start();
  EXPECT_TRUE(c->Command({"PING"}).ok());
}

TEST(RedisConnection, PasswordAndDb) {
  RedisServer r;
  auto admin = *RedisConnection::Open(r.options());
  ASSERT_TRUE(admin->Command({"CONFIG", "SET", "requirepass", "s3cret"}).ok());
  RedisOptions o = r.options();
  EXPECT_EQ((*RedisConnection::Open(o))->Command({"PING"}).status().code(), absl::StatusCode::kInternal);  // NOAUTH
  o.password = "wrong";
  EXPECT_FALSE((*RedisConnection::Open(o))->Command({"PING"}).ok());
  o.password = "s3cret";
  o.db = 2;
  auto c = *RedisConnection::Open(o);
  ASSERT_TRUE(c->Command({"SET", "x", "1"}).ok());
  auto dbsize = c->Command({"DBSIZE"});
  ASSERT_TRUE(dbsize.ok());
  EXPECT_EQ(dbsize->integer, 1);
}

TEST(SharedSessionStore, LeaseIsExclusiveWithIncreasingFence) {
  RedisServer r;
  auto a = OpenStore(r, "A"), b = OpenStore(r, "B");
  auto la = a->Acquire("s1");
  ASSERT_TRUE(la.ok()) << la.status();
  EXPECT_TRUE(la->acquired);
  EXPECT_EQ(LeaseTokenReplica(la->token), "A");
  auto lb = b->Acquire("s1");
  ASSERT_TRUE(lb.ok());
  EXPECT_FALSE(lb->acquired);
  EXPECT_EQ(lb->token, la->token);  // the holder
  EXPECT_FALSE(*b->Renew("s1", "999/B"));
  EXPECT_TRUE(*a->Renew("s1", la->token));
  ASSERT_TRUE(b->Release("s1", "999/B").ok());  // not ours: no effect
  EXPECT_EQ(*a->LeaseHolder("s1"), la->token);
  ASSERT_TRUE(a->Release("s1", la->token).ok());
  EXPECT_EQ(*a->LeaseHolder("s1"), "");
  lb = b->Acquire("s1");
  ASSERT_TRUE(lb->acquired);
  EXPECT_GT(std::stoll(lb->token), std::stoll(la->token));
}

TEST(SharedSessionStore, LeaseExpiresWithoutRenewal) {
  RedisServer r;
  auto a = OpenStore(r, "A", 200), b = OpenStore(r, "B", 200);
  auto la = *a->Acquire("s");
  ASSERT_TRUE(la.acquired);
  EXPECT_FALSE(b->Acquire("s")->acquired);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_FALSE(*a->Renew("s", la.token));  // lost
  EXPECT_TRUE(b->Acquire("s")->acquired);
}

TEST(SharedSessionStore, CommitIsCompareAndSetOnVersionEtagAndLease) {
  RedisServer r;
  auto a = OpenStore(r, "A"), b = OpenStore(r, "B");
  auto la = *a->Acquire("s");
  EXPECT_EQ(*a->Commit("s", la.token, "", 1, "e1", "state-1", /*release=*/true), CommitResult::kOk);
  EXPECT_EQ(*a->LeaseHolder("s"), "");  // released by the commit
  auto v = *b->Fetch("s");
  ASSERT_TRUE(v.head.exists);
  EXPECT_EQ(v.head.version, 1);
  EXPECT_EQ(v.head.etag, "e1");
  EXPECT_EQ(v.bytes, "state-1");
  // Based on an etag that is not the stored one: stale.
  EXPECT_EQ(*b->Commit("s", "", "other", 2, "e2", "x", false), CommitResult::kStale);
  // Not a newer version: stale.
  EXPECT_EQ(*b->Commit("s", "", "e1", 1, "e2", "x", false), CommitResult::kStale);
  // Someone else's lease: refused whatever the version.
  auto lb = *b->Acquire("s");
  EXPECT_EQ(*a->Commit("s", "", "e1", 2, "e2", "x", false), CommitResult::kLeaseHeld);
  EXPECT_EQ(*b->Commit("s", lb.token, "e1", 2, "e2", "state-2", true), CommitResult::kOk);
  EXPECT_EQ(b->Fetch("s")->bytes, "state-2");
  EXPECT_EQ(b->Head("s")->version, 2);
}

TEST(SharedSessionStore, TakenOverLeaseCannotWriteItsStaleState) {
  RedisServer r;
  auto a = OpenStore(r, "A", 200), b = OpenStore(r, "B", 200);
  ASSERT_EQ(*a->Commit("s", "", "", 1, "e1", "v1", false), CommitResult::kOk);
  auto la = *a->Acquire("s");  // A starts a turn from v1, then stalls past its lease
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto lb = *b->Acquire("s");
  ASSERT_TRUE(lb.acquired);
  // While B holds the lease, A cannot write.
  EXPECT_EQ(*a->Commit("s", la.token, "e1", 2, "eA", "A's", true), CommitResult::kLeaseHeld);
  EXPECT_EQ(*b->Commit("s", lb.token, "e1", 2, "eB", "B's", true), CommitResult::kOk);
  // After B released: A's write is from an older base and an older fence: refused.
  EXPECT_EQ(*a->Commit("s", la.token, "e1", 2, "eA", "A's", true), CommitResult::kStale);
  EXPECT_EQ(*a->Commit("s", la.token, "eB", 3, "eA", "A's", true), CommitResult::kStale);  // fence older
  EXPECT_EQ(b->Fetch("s")->bytes, "B's");
}

TEST(SharedSessionStore, TtlFollowsSessionTtlAndDeleteRespectsLease) {
  RedisServer r;
  auto a = OpenStore(r, "A");
  ASSERT_EQ(*a->Commit("s", "", "", 1, "e1", "v1", false), CommitResult::kOk);
  auto c = *RedisConnection::Open(r.options());
  auto pttl = c->Command({"PTTL", "titand:{s}:s"});
  ASSERT_TRUE(pttl.ok());
  EXPECT_GT(pttl->integer, 55000);
  EXPECT_LE(pttl->integer, 60000);
  auto l = *a->Acquire("s");
  EXPECT_EQ(a->Delete("s").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(a->Release("s", l.token).ok());
  EXPECT_TRUE(*a->Delete("s"));
  EXPECT_FALSE(a->Head("s")->exists);
  EXPECT_FALSE(*a->Delete("s"));
}

TEST(SharedSessionStore, RedisDownIsUnavailableThenRecovers) {
  RedisServer r;
  auto a = OpenStore(r, "A");
  ASSERT_EQ(*a->Commit("s", "", "", 1, "e1", "v1", false), CommitResult::kOk);
  r.Stop();
  EXPECT_EQ(a->Acquire("s").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a->Commit("s", "", "e1", 2, "e2", "v2", false).status().code(), absl::StatusCode::kUnavailable);
  r.Start();  // no persistence: the value is gone, so any commit is accepted
  EXPECT_FALSE(a->Head("s")->exists);
  EXPECT_EQ(*a->Commit("s", "", "e1", 2, "e2", "v2", false), CommitResult::kOk);
  EXPECT_EQ(a->Fetch("s")->bytes, "v2");
}

}  // namespace
}  // namespace titand
