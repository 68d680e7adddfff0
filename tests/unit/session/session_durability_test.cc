// Durability of the session store (issue 11 items 5-8): the last good snapshot survives a restore and a
// "crash" (the store dropped without a drain), write-through makes every acknowledged turn durable, disk
// write / remove failures are counted, keep the host tier inside its budget and refuse deletes, drain
// work is counted (files and syncs), and a fork validates a disk source before answering OK.
// Disk failures are made by replacing the session dir with a regular file (every open/unlink in it then
// fails with ENOTDIR) -- the live tests (tests/py/test_durability.py) use a real full / read-only tmpfs.
#include <fstream>

#include "tests/unit/session/store_test_util.h"

namespace titand {
namespace {

class DurabilityTest : public StoreTest {
 protected:
  // Makes every file operation in the session dir fail (and Restore undoes it). Files are kept aside.
  void BreakDir() {
    std::filesystem::rename(dir_, aside());
    std::ofstream(dir_) << "not a directory";
  }
  void RestoreDir() {
    std::filesystem::remove(dir_);
    std::filesystem::rename(aside(), dir_);
  }
  std::filesystem::path aside() const { return dir_.string() + ".aside"; }
  void TearDown() override {
    std::filesystem::remove_all(aside());
    StoreTest::TearDown();
  }
};

TEST_F(DurabilityTest, RestoreKeepsTheLastGoodSnapshotUntilANewerOneIsDurable) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Create("a").ok());
    Put(*s, "a", MakeCursor(1, 4));
    ASSERT_EQ(s->SaveAll().written, 1);
  }
  {
    auto s = Open();  // restart: "a" on disk
    Put(*s, "a", MakeCursor(2, 6));  // restored, a turn runs; no drain: the process "crashes"
    EXPECT_TRUE(std::filesystem::exists(dir_ / "a.tsession"));
  }
  auto s = Open();
  EXPECT_EQ(s->Get("a")->history_tokens, 5);  // the old snapshot, intact
  ExpectSame(Take(*s, "a"), MakeCursor(1, 4));
}

TEST_F(DurabilityTest, WriteThroughMakesEveryAcknowledgedTurnDurable) {
  {
    auto s = Open(1 << 30, 1 << 30, /*write_through=*/true);
    ASSERT_TRUE(s->Create("a").ok());
    ASSERT_TRUE(s->Create("empty").ok());
    Put(*s, "a", MakeCursor(3, 5));
    ASSERT_TRUE(s->Fork("a", "f").ok());
    Put(*s, "a", MakeCursor(4, 7));
    EXPECT_EQ(s->Stats().disk_writes, 5);  // 2 creates, 2 turns, 1 fork
  }  // "crash": no SaveAll
  auto s = Open();
  ASSERT_EQ(s->List().size(), 3u);
  ExpectSame(Take(*s, "a"), MakeCursor(4, 7));
  ExpectSame(Take(*s, "f"), MakeCursor(3, 5));
  EXPECT_EQ(s->Get("empty")->history_tokens, 0);
}

TEST_F(DurabilityTest, DrainWritesOnlyStaleSessionsInBatches) {
  drain_batch_files_ = 64;
  auto s = Open();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(s->Create("s" + std::to_string(i)).ok());
  DrainResult r = s->SaveAll();
  EXPECT_EQ(r.written, 1000);
  EXPECT_EQ(r.failed, 0);
  SessionStoreStats st = s->Stats();
  EXPECT_EQ(st.disk_writes, 1000);
  EXPECT_EQ(st.drain_syncs, 2 * ((1000 + 63) / 64));  // one syncfs + one dir fsync per batch, not 1000 fsyncs
  EXPECT_EQ(st.disk, 1000);
  Put(*s, "s7", MakeCursor(7, 3));  // restored and changed: the only stale one
  r = s->SaveAll();
  EXPECT_EQ(r.written, 1);
  EXPECT_EQ(r.current, 999);
  EXPECT_EQ(s->Stats().disk_writes, 1001);
}

TEST_F(DurabilityTest, WithWriteThroughTheDrainHasNothingLeftToWrite) {
  auto s = Open(1 << 30, 1 << 30, /*write_through=*/true);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(s->Create("s" + std::to_string(i)).ok());
    Put(*s, "s" + std::to_string(i), MakeCursor(i, 2));
  }
  const int64_t writes = s->Stats().disk_writes;
  DrainResult r = s->SaveAll();
  EXPECT_EQ(r.written, 0);
  EXPECT_EQ(r.current, 50);
  EXPECT_EQ(s->Stats().disk_writes, writes);
  EXPECT_EQ(s->Stats().drain_syncs, 0);
}

TEST_F(DurabilityTest, FailedWritesAreCountedAndTheHostTierStaysInsideItsBudget) {
  const int64_t one = MakeCursor(0, 8).ByteSize();
  auto s = Open(/*device_budget=*/one, /*host_budget=*/1);
  ASSERT_TRUE(s->Create("a").ok());
  Put(*s, "a", MakeCursor(1, 8));
  BreakDir();
  ASSERT_TRUE(s->Create("b").ok());
  clock_.Advance(1);
  Put(*s, "b", MakeCursor(2, 8));  // evicting "a" fails: it stays on the device, host stays empty
  SessionStoreStats st = s->Stats();
  EXPECT_GE(st.disk_write_errors, 1);
  EXPECT_EQ(st.host_bytes, 0);
  EXPECT_EQ(st.host, 0);
  EXPECT_GT(st.device_bytes, one);
  auto c = s->Create("c");  // device over budget and the disk takes nothing: refused, said why
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  DrainResult r = s->SaveAll();  // the drain tells the truth
  EXPECT_EQ(r.failed, 2);
  EXPECT_FALSE(r.first_error.ok());
  RestoreDir();
  ASSERT_TRUE(s->Create("c").ok());  // the disk works again: eviction succeeds, creation allowed
  EXPECT_EQ(s->SaveAll().failed, 0);
  ExpectSame(Take(*s, "a"), MakeCursor(1, 8));
  ExpectSame(Take(*s, "b"), MakeCursor(2, 8));
}

TEST_F(DurabilityTest, DeleteThatCannotRemoveTheFileIsRefusedAndTheSessionKept) {
  auto s = Open();
  ASSERT_TRUE(s->Create("a").ok());
  ASSERT_TRUE(s->Create("mem").ok());
  ASSERT_EQ(s->SaveAll().written, 2);
  ASSERT_TRUE(s->Create("never-on-disk").ok());
  BreakDir();
  EXPECT_EQ(s->Delete("a").code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(s->Get("a").ok());
  EXPECT_EQ(s->Stats().disk_remove_errors, 1);
  EXPECT_TRUE(s->Delete("never-on-disk").ok());  // no file: nothing to remove
  clock_.Advance(61);
  EXPECT_EQ(s->SweepExpired(), 0);  // TTL: cannot remove either, kept for a later sweep
  EXPECT_EQ(s->List().size(), 2u);
  RestoreDir();
  EXPECT_TRUE(s->Delete("a").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "a.tsession"));
  auto again = Open();  // a deleted session does not come back
  EXPECT_EQ(again->Get("a").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DurabilityTest, ForkOfACorruptDiskSessionFailsBeforeOk) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Create("src").ok());
    Put(*s, "src", MakeCursor(5, 6));
    ASSERT_EQ(s->SaveAll().written, 1);
  }
  {  // flip a byte of the tensor data: the header (and its digest) still read
    std::fstream f(dir_ / "src.tsession", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-40, std::ios::end);
    f.put('\x7f');
  }
  auto s = Open();
  ASSERT_TRUE(s->Get("src").ok());
  auto f = s->Fork("src", "copy");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_EQ(s->Get("copy").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "copy.tsession"));
  EXPECT_FALSE(s->Pin("src").ok());  // the source is now known broken
}

// A file in the session dir that is not a snapshot at all (random bytes) is the server's data loss, not
// the client's invalid argument: DATA_LOSS, logged and counted as a read error, at start-up already; a
// snapshot with a flipped data byte is counted once more when a turn tries to restore it.
TEST_F(DurabilityTest, UnreadableSnapshotsAreDataLossAndCounted) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Create("good").ok());
    ASSERT_TRUE(s->Create("flipped").ok());
    Put(*s, "good", MakeCursor(1, 4));
    Put(*s, "flipped", MakeCursor(2, 4));
    ASSERT_EQ(s->SaveAll().written, 2);
  }
  std::ofstream(dir_ / "junk.tsession", std::ios::binary) << std::string(4096, '\x5a');
  {
    std::fstream f(dir_ / "flipped.tsession", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-40, std::ios::end);
    f.put('\x7f');
  }
  auto s = Open();
  EXPECT_EQ(s->Stats().disk_read_errors, 1);  // junk: its header cannot be read at start
  EXPECT_EQ(s->Pin("junk").code(), absl::StatusCode::kDataLoss);
  ASSERT_TRUE(s->Pin("flipped").ok());  // the header reads; the data is checked on restore
  auto m = s->Materialize("flipped");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << m.status();
  s->Unpin("flipped");
  EXPECT_EQ(s->Stats().disk_read_errors, 2);
  ExpectSame(Take(*s, "good"), MakeCursor(1, 4));  // the intact session is untouched
}

}  // namespace
}  // namespace titand
