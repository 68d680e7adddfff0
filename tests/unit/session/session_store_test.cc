// SessionStore over hand-built cursors (small tensors) and the real snapshot codec: ids, TTL with an
// injected clock, LRU eviction device -> host -> disk and back (bit-identical), pinning, fork, restart
// over the same directory, and a corrupted snapshot that fails only its own session.
#include "core/session/session_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <future>
#include <atomic>

#include "tests/unit/session/store_test_util.h"

namespace titand {
namespace {

TEST_F(StoreTest, IdsServerAndClientChosen) {
  auto s = Open();
  auto a = s->Create("");
  auto b = s->Create("");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id.size(), 32u);
  EXPECT_NE(a->id, b->id);
  EXPECT_EQ(a->id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(s->Create("my-session_1.x").ok());
  EXPECT_EQ(s->Create("my-session_1.x").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s->Create("a/b").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Create(std::string(129, 'a')).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(s->Create(std::string(128, 'a')).ok());
  EXPECT_EQ(s->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->Pin("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, TtlSweepDeletesOnlyIdleUnpinned) {
  auto s = Open();
  ASSERT_TRUE(s->Create("old").ok());
  ASSERT_TRUE(s->Create("used").ok());
  ASSERT_TRUE(s->Create("busy").ok());
  clock_.Advance(30);
  Put(*s, "used", MakeCursor(1, 3));
  ASSERT_TRUE(s->Pin("busy").ok());
  clock_.Advance(40);  // old: 70 s idle, used: 40 s, busy: pinned
  EXPECT_EQ(s->SweepExpired(), 1);
  EXPECT_EQ(s->Get("old").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(s->Get("used").ok());
  EXPECT_NEAR(s->Get("used")->idle_seconds, 40, 1e-6);
  EXPECT_TRUE(s->Get("busy")->busy);
  s->Unpin("busy");
  clock_.Advance(61);
  EXPECT_EQ(s->SweepExpired(), 2);
  EXPECT_TRUE(s->List().empty());
}

TEST_F(StoreTest, LruEvictionDeviceHostDiskAndBackBitIdentical) {
  const int64_t one = MakeCursor(0, 8).ByteSize();
  auto s = Open(/*device_budget=*/one, /*host_budget=*/one + one / 2);  // one resident, ~one host
  std::vector<SessionCursor> want;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->Create("s" + std::to_string(i)).ok());
    want.push_back(MakeCursor(10 + i, 8));
    clock_.Advance(1);
    Put(*s, "s" + std::to_string(i), want.back());
  }
  // s2 newest on the device, s1 in host bytes, s0 (oldest) on disk.
  EXPECT_EQ(s->Get("s2")->tier, SessionTier::kDevice);
  EXPECT_EQ(s->Get("s1")->tier, SessionTier::kHost);
  EXPECT_EQ(s->Get("s0")->tier, SessionTier::kDisk);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "s0.tsession"));
  SessionStoreStats st = s->Stats();
  EXPECT_EQ(st.device, 1);
  EXPECT_EQ(st.host, 1);
  EXPECT_EQ(st.disk, 1);
  EXPECT_LE(st.device_bytes, one);
  EXPECT_EQ(s->Get("s0")->history_tokens, 9);
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(1);
    ExpectSame(Take(*s, "s" + std::to_string(i)), want[i]);
  }
  EXPECT_EQ(s->Get("s2")->tier, SessionTier::kDevice);  // most recently used
}

TEST_F(StoreTest, PinnedSessionIsNeverEvictedForkedOrDeleted) {
  const int64_t one = MakeCursor(0, 8).ByteSize();
  auto s = Open(one / 2, 1 << 30);
  ASSERT_TRUE(s->Create("p").ok());
  ASSERT_TRUE(s->Pin("p").ok());
  auto cur = s->Materialize("p");
  ASSERT_TRUE(cur.ok());
  **cur = MakeCursor(3, 8);
  EXPECT_EQ(s->Pin("p").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->Delete("p").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->Fork("p", "q").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(s->Create("other").ok());  // triggers budget enforcement while p is pinned
  EXPECT_EQ(s->Get("p")->tier, SessionTier::kDevice);
  EXPECT_TRUE(s->Get("p")->busy);
  s->Unpin("p");
  EXPECT_EQ(s->Get("p")->tier, SessionTier::kHost);  // over budget once unpinned
  ExpectSame(Take(*s, "p"), MakeCursor(3, 8));
}

TEST_F(StoreTest, ForkFromEveryTierIsIndependent) {
  const int64_t one = MakeCursor(0, 8).ByteSize();
  auto s = Open(one, one + one / 2);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->Create("s" + std::to_string(i)).ok());
    clock_.Advance(1);
    Put(*s, "s" + std::to_string(i), MakeCursor(20 + i, 8));
  }
  ASSERT_EQ(s->Get("s0")->tier, SessionTier::kDisk);
  for (int i = 0; i < 3; ++i) {
    auto f = s->Fork("s" + std::to_string(i), "f" + std::to_string(i));
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->history_tokens, 9);
  }
  auto anon = s->Fork("s1", "");
  ASSERT_TRUE(anon.ok());
  EXPECT_EQ(anon->id.size(), 32u);
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(1);
    Put(*s, "f" + std::to_string(i), MakeCursor(99, 4));  // change the fork
  }
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(1);
    ExpectSame(Take(*s, "s" + std::to_string(i)), MakeCursor(20 + i, 8));
    ExpectSame(Take(*s, "f" + std::to_string(i)), MakeCursor(99, 4));
  }
}

TEST_F(StoreTest, SaveAllThenRestartRestoresLazily) {
  {
    auto s = Open();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(s->Create("r" + std::to_string(i)).ok());
      Put(*s, "r" + std::to_string(i), MakeCursor(30 + i, 5 + i));
    }
    ASSERT_EQ(s->SaveAll().failed, 0);
    EXPECT_EQ(s->Stats().disk, 3);
  }
  auto s = Open();
  auto list = s->List();
  ASSERT_EQ(list.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(list[i].id, "r" + std::to_string(i));
    EXPECT_EQ(list[i].tier, SessionTier::kDisk);
    EXPECT_EQ(list[i].history_tokens, 5 + i + 1);
  }
  ExpectSame(Take(*s, "r1"), MakeCursor(31, 6));
  EXPECT_EQ(s->Get("r1")->tier, SessionTier::kDevice);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "r1.tsession"));  // the last good copy stays
  ASSERT_TRUE(s->Delete("r2").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "r2.tsession"));
}

TEST_F(StoreTest, CorruptedSnapshotFailsOnlyItsSession) {
  {
    auto s = Open();
    for (const char* id : {"good", "flipped", "truncated"}) {
      ASSERT_TRUE(s->Create(id).ok());
      Put(*s, id, MakeCursor(40, 6));
    }
    ASSERT_EQ(s->SaveAll().failed, 0);
  }
  {  // flip the last byte (tensor data / digest): header still reads, checksum fails on restore
    std::fstream f(dir_ / "flipped.tsession", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char c;
    f.get(c);
    f.seekp(-1, std::ios::end);
    f.put(static_cast<char>(c ^ 0x5a));
  }
  std::filesystem::resize_file(dir_ / "truncated.tsession", std::filesystem::file_size(dir_ / "truncated.tsession") - 7);
  auto s = Open();
  EXPECT_FALSE(s->Get("truncated").ok());       // header check at start: wrong length
  EXPECT_FALSE(s->Pin("truncated").ok());
  ASSERT_TRUE(s->Pin("flipped").ok());
  auto bad = s->Materialize("flipped");
  EXPECT_FALSE(bad.ok());
  s->Unpin("flipped");
  EXPECT_FALSE(s->Pin("flipped").ok());         // stays broken, says why
  EXPECT_FALSE(s->Get("flipped").ok());
  for (const SessionInfo& i : s->List()) {      // the listing flags both broken sessions, not the good one
    if (i.id == "good") {
      EXPECT_EQ(i.error, "");
    } else {
      EXPECT_EQ(i.error, std::string(s->Get(i.id).status().message())) << i.id;
      EXPECT_NE(i.error.find("unreadable snapshot"), std::string::npos) << i.error;
      EXPECT_EQ(i.error.find("snapshot: snapshot:"), std::string::npos) << i.error;  // the codec's prefix once
    }
  }
  ExpectSame(Take(*s, "good"), MakeCursor(40, 6));
  EXPECT_TRUE(s->Delete("flipped").ok());
}

// The turn-end write-through runs outside the store's mutex: while one session's Unpin is stuck in its
// serialisation (a slow disk), every other call on the store completes, including a whole turn of
// another session with its own write-through; the stuck session stays pinned (busy) until its write is
// done, and then both snapshots are on disk.
TEST_F(StoreTest, WriteThroughOfATurnDoesNotBlockOtherSessions) {
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> gate{0};  // 1 = the next serialisation blocks until `release`
  SessionStoreOptions o = Options(1 << 30, 1 << 30, /*write_through=*/true);
  o.codec.serialize = [inner = o.codec.serialize, &gate, &entered, released](const SessionCursor& c) {
    if (gate.exchange(0) == 1) {
      entered.set_value();
      released.wait();
    }
    return inner(c);
  };
  auto opened = SessionStore::Open(std::move(o));
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<SessionStore> s = std::move(opened).value();
  ASSERT_TRUE(s->Create("slow").ok());
  ASSERT_TRUE(s->Create("other").ok());
  const int64_t writes_before = s->Stats().disk_writes;  // the two creations

  ASSERT_TRUE(s->Pin("slow").ok());
  auto cur = s->Materialize("slow");
  ASSERT_TRUE(cur.ok()) << cur.status();
  **cur = MakeCursor(7, 5);
  gate = 1;
  std::thread turn_end([&] { s->Unpin("slow"); });
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);

  // Everything else, on another thread with a deadline: a store that held its mutex here would hang.
  auto others = std::async(std::launch::async, [&] {
    Put(*s, "other", MakeCursor(8, 3));  // a whole turn, written through
    EXPECT_TRUE(s->Get("slow")->busy);
    EXPECT_EQ(s->Pin("slow").code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(s->Delete("slow").code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(s->Fork("slow", "").status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(s->SaveAll().skipped, 1);  // the pinned one
    EXPECT_EQ(s->List().size(), 2u);
  });
  const bool done = others.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  release.set_value();
  turn_end.join();
  ASSERT_TRUE(done) << "the store blocked while a turn's snapshot was being written";
  others.get();

  EXPECT_FALSE(s->Get("slow")->busy);
  EXPECT_EQ(s->Get("slow")->history_tokens, MakeCursor(7, 5).history_tokens());
  EXPECT_EQ(s->Stats().disk_writes, writes_before + 2);
  s.reset();
  auto again = Open();  // a restart reads both turns back from their files
  ExpectSame(Take(*again, "slow"), MakeCursor(7, 5));
  ExpectSame(Take(*again, "other"), MakeCursor(8, 3));
}

// A turn that left the state as it found it (refused, cancelled, failed) writes nothing, and a file that
// was current stays current; a changed turn makes it stale until written.
TEST_F(StoreTest, UnchangedTurnWritesNothing) {
  auto s = Open(1 << 30, 1 << 30, /*write_through=*/false);
  ASSERT_TRUE(s->Create("u").ok());
  Put(*s, "u", MakeCursor(3, 4));
  EXPECT_EQ(s->SaveAll().written, 1);  // now on disk, file current
  const int64_t writes = s->Stats().disk_writes;
  ASSERT_TRUE(s->Pin("u").ok());
  ASSERT_TRUE(s->Materialize("u").ok());  // restored to the device for a turn that is then refused
  s->Unpin("u", TurnEnd::kUnchanged);
  DrainResult d = s->SaveAll();
  EXPECT_EQ(d.written, 0);
  EXPECT_EQ(d.current, 1);
  EXPECT_EQ(s->Stats().disk_writes, writes);
  Put(*s, "u", MakeCursor(4, 6));  // kChanged: the file is stale now
  EXPECT_EQ(s->SaveAll().written, 1);
  s.reset();
  ExpectSame(Take(*Open(), "u"), MakeCursor(4, 6));
}

TEST_F(StoreTest, ConcurrentRpcsWhileTurnsRun) {  // for ThreadSanitizer
  for (bool write_through : {false, true}) {
    SCOPED_TRACE(write_through ? "write-through" : "no write-through");
    RunTurnsBesideRpcs(write_through);
    std::filesystem::remove_all(dir_);
  }
}

void StoreTest::RunTurnsBesideRpcs(bool write_through) {
  auto s = Open(MakeCursor(0, 4).ByteSize() * 2, 1 << 30, write_through);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s->Create("c" + std::to_string(i)).ok());
  std::thread engine([&] {
    for (int r = 0; r < 50; ++r) {
      const std::string id = "c" + std::to_string(r % 4);
      if (!s->Pin(id).ok()) continue;
      auto cur = s->Materialize(id);
      if (cur.ok()) **cur = MakeCursor(r, 4);
      s->Unpin(id);
    }
  });
  for (int r = 0; r < 50; ++r) {
    s->List();
    (void)s->Get("c1");
    auto f = s->Fork("c2", "");
    if (f.ok()) (void)s->Delete(f->id);
    s->SweepExpired();
    s->Stats();
  }
  engine.join();
  EXPECT_EQ(s->List().size(), 4u);
}

}  // namespace
}  // namespace titand
