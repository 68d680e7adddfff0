// Tenants in the session store: keys "<tenant>~<id>", per-tenant session and state-byte quotas, and a
// restart that lists tenant-scoped snapshot files again (and ignores malformed names).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/session/session_codec.h"
#include "core/session/session_store.h"

namespace titand {
namespace {

SnapshotBinding TinyBinding() {
  SnapshotBinding b;
  b.model_id = "unit-test-model";
  b.num_layers = 1;
  b.num_kv_heads = 1;
  b.head_dim = 4;
  b.dtype = "float32";
  return b;
}

// An "empty" cursor that still has state bytes: one TPTT memory [1, 4, 4] float32 = 64 bytes.
SessionCursor Cursor64() {
  SessionCursor c;
  c.state.layers.resize(1);
  c.state.layers[0].memory = at::zeros({1, 4, 4});
  return c;
}

std::unique_ptr<SessionStore> OpenStore(const std::string& dir, int64_t max_sessions, int64_t max_bytes) {
  SessionStoreOptions o;
  o.dir = dir;
  o.max_tenant_sessions = max_sessions;
  o.max_tenant_state_bytes = max_bytes;
  o.codec = MakeSnapshotCodec(TinyBinding(), at::kCPU);
  o.fresh = Cursor64;
  auto s = SessionStore::Open(std::move(o));
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

TEST(SessionKeys, Format) {
  EXPECT_EQ(SessionKey("", "abc"), "abc");
  EXPECT_EQ(SessionKey("alice", "abc"), "alice~abc");
  EXPECT_TRUE(IsValidSessionKey("abc"));
  EXPECT_TRUE(IsValidSessionKey("alice~abc"));
  EXPECT_FALSE(IsValidSessionKey("alice~"));
  EXPECT_FALSE(IsValidSessionKey("~abc"));
  EXPECT_FALSE(IsValidSessionKey("a~b~c"));
  EXPECT_FALSE(IsValidSessionKey(std::string(65, 't') + "~abc"));
  EXPECT_TRUE(IsValidTenant(std::string(64, 't')));
  EXPECT_FALSE(IsValidTenant("a/b"));
}

TEST(SessionStoreTenants, QuotasCountEachTenantApart) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("titand_tenant_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  {
    auto s = OpenStore(dir, /*max_sessions=*/2, /*max_bytes=*/0);
    ASSERT_TRUE(s->Create("alice~a1").ok());
    ASSERT_TRUE(s->Create("alice~a2").ok());
    auto third = s->Create("alice~a3");
    EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
    EXPECT_EQ(s->Fork("alice~a1", "alice~a4").status().code(), absl::StatusCode::kResourceExhausted);
    // Another tenant (and the tenant-less namespace) have their own count.
    EXPECT_TRUE(s->Create("bob~a1").ok());
    EXPECT_TRUE(s->Create("x1").ok());
    EXPECT_TRUE(s->Create("x2").ok());
    EXPECT_EQ(s->Create("x3").status().code(), absl::StatusCode::kResourceExhausted);
    ASSERT_TRUE(s->Delete("alice~a2").ok());
    EXPECT_TRUE(s->Create("alice~a3").ok());
    ASSERT_EQ(s->SaveAll().failed, 0);
  }
  // Restart: tenant-scoped files are listed again; a malformed name is ignored.
  std::ofstream(dir + "/bad~~name.tsession") << "x";
  auto s = OpenStore(dir, 0, 0);
  EXPECT_TRUE(s->Get("alice~a1").ok());
  EXPECT_TRUE(s->Get("alice~a3").ok());
  EXPECT_TRUE(s->Get("bob~a1").ok());
  EXPECT_EQ(s->Get("alice~a2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->List().size(), 5u);
  std::filesystem::remove_all(dir);
}

TEST(SessionStoreTenants, StateQuotaBlocksNewSessionsAndTurns) {
  auto s = OpenStore("", /*max_sessions=*/0, /*max_bytes=*/100);  // room for one 64-byte session
  ASSERT_TRUE(s->Create("carol~c1").ok());
  ASSERT_TRUE(s->Create("carol~c2").ok());  // 64 < 100: still admitted; now 128 bytes
  EXPECT_EQ(s->Create("carol~c3").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s->Pin("carol~c1").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(s->Pin("dave~d1").code() == absl::StatusCode::kNotFound);  // other tenants unaffected
  ASSERT_TRUE(s->Create("dave~d1").ok());
  EXPECT_TRUE(s->Pin("dave~d1").ok());
  s->Unpin("dave~d1");
  ASSERT_TRUE(s->Delete("carol~c2").ok());
  EXPECT_TRUE(s->Pin("carol~c1").ok());
  s->Unpin("carol~c1");
}

}  // namespace
}  // namespace titand
