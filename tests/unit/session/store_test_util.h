// Shared fixture of the session store tests: hand-built cursors (small tensors), the real snapshot codec,
// an injected clock and a per-test directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/session/session_codec.h"
#include "core/session/session_store.h"

namespace titand {
namespace {

SnapshotBinding Binding() {
  SnapshotBinding b;
  b.model_id = "unit-test-model";
  b.num_layers = 2;
  b.num_kv_heads = 2;
  b.head_dim = 4;
  b.dtype = "float32";
  return b;
}

SessionCursor EmptyCursor() {
  SessionCursor c;
  c.state.layers.resize(2);
  return c;
}

// layer 0: softmax KV (capacity len+3); layer 1: KV + TPTT memory [3, 4, 4].
SessionCursor MakeCursor(int seed, int64_t len) {
  at::manual_seed(seed);
  SessionCursor c = EmptyCursor();
  for (int i = 0; i < 2; ++i) {
    LayerState& l = c.state.layers[i];
    l.k = at::randn({2, len + 3, 4});
    l.v = at::randn({2, len + 3, 4});
    l.len = len;
    if (i == 1) l.memory = at::randn({3, 4, 4});
  }
  c.state.num_tokens = len;
  c.pending = {seed % 50};
  return c;
}

void ExpectSame(const SessionCursor& a, const SessionCursor& b) {
  ASSERT_EQ(a.state.num_tokens, b.state.num_tokens);
  ASSERT_EQ(a.pending, b.pending);
  ASSERT_EQ(a.state.layers.size(), b.state.layers.size());
  for (size_t i = 0; i < a.state.layers.size(); ++i) {
    const LayerState &x = a.state.layers[i], &y = b.state.layers[i];
    ASSERT_EQ(x.len, y.len);
    EXPECT_TRUE(at::equal(x.k.narrow(1, 0, x.len), y.k.narrow(1, 0, y.len)));
    EXPECT_TRUE(at::equal(x.v.narrow(1, 0, x.len), y.v.narrow(1, 0, y.len)));
    ASSERT_EQ(x.memory.defined(), y.memory.defined());
    if (x.memory.defined()) {
      EXPECT_TRUE(at::equal(x.memory, y.memory));
    }
  }
}

struct FakeClock {
  SteadyTime t = SteadyTime() + std::chrono::hours(1);
  void Advance(double s) { t += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s)); }
};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("titand_store_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The options Open uses (tests that wrap the codec start from these).
  SessionStoreOptions Options(int64_t device_budget = 1 << 30, int64_t host_budget = 1 << 30,
                              bool write_through = false) {
    SessionStoreOptions o;
    o.write_through = write_through;
    o.drain_batch_files = drain_batch_files_;
    o.dir = dir_.string();
    o.device_budget = device_budget;
    o.host_budget = host_budget;
    o.ttl_seconds = 60;
    o.codec = MakeSnapshotCodec(Binding(), at::kCPU);
    o.fresh = EmptyCursor;
    o.clock = [this] { return clock_.t; };
    return o;
  }
  std::unique_ptr<SessionStore> Open(int64_t device_budget = 1 << 30, int64_t host_budget = 1 << 30,
                                     bool write_through = false) {
    auto s = SessionStore::Open(Options(device_budget, host_budget, write_through));
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(s).value();
  }
  // Runs a "turn" that replaces the session's cursor with `c`.
  void Put(SessionStore& s, const std::string& id, const SessionCursor& c) {
    ASSERT_TRUE(s.Pin(id).ok());
    auto cur = s.Materialize(id);
    ASSERT_TRUE(cur.ok()) << cur.status();
    **cur = c.Fork();
    s.Unpin(id);
  }
  SessionCursor Take(SessionStore& s, const std::string& id) {
    EXPECT_TRUE(s.Pin(id).ok());
    auto cur = s.Materialize(id);
    EXPECT_TRUE(cur.ok()) << cur.status();
    SessionCursor out = cur.ok() ? (*cur)->Fork() : SessionCursor{};
    s.Unpin(id);
    return out;
  }

  // Session turns on one thread while RPCs run on another (session_store_test.cc; for ThreadSanitizer).
  void RunTurnsBesideRpcs(bool write_through);

  std::filesystem::path dir_;
  FakeClock clock_;
  int64_t drain_batch_files_ = 512;
};

}  // namespace
}  // namespace titand
