// Snapshot files: write/read round trip, header listing without tensors, NOT_FOUND for a missing file,
// and atomic replacement: a failed write (file-size limit mid-write, rename onto a directory, missing
// directory) leaves an existing snapshot intact and no temp files behind.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "core/session/snapshot.h"
#include "session_test_util.h"

namespace titand {
namespace {

using session_test::Binding;
using session_test::ExpectSameCursor;
using session_test::MixedCursor;

class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/titand_snapshot_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::set<std::string> Entries() const {
    std::set<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.insert(n);
    }
    ::closedir(d);
    return names;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
};

TEST_F(SnapshotFileTest, WriteReadAndListHeader) {
  at::manual_seed(11);
  const SessionCursor cur = MixedCursor("bfloat16", 1);
  const std::string path = dir_ + "/s1.snap";
  ASSERT_TRUE(WriteSnapshotFile(path, cur, Binding("bfloat16")).ok());
  EXPECT_EQ(Entries(), std::set<std::string>{"s1.snap"});
  auto back = ReadSnapshotFile(path, Binding("bfloat16"), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameCursor(cur, *back);
  auto h = ReadSnapshotHeaderFile(path);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->history_tokens(), cur.history_tokens());
  EXPECT_EQ(h->state_bytes, cur.ByteSize());
  EXPECT_EQ(h->file_bytes, static_cast<int64_t>(Slurp(path).size()));
  EXPECT_EQ(h->binding.adapter_id, Binding("bfloat16").adapter_id);
}

TEST_F(SnapshotFileTest, ErrorsNameTheFile) {
  const std::string missing = dir_ + "/nope.snap";
  auto r = ReadSnapshotFile(missing, Binding("float32"), at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSnapshotHeaderFile(missing).status().code(), absl::StatusCode::kNotFound);
  // A truncated file: the header still parses, the size check catches it.
  at::manual_seed(12);
  const std::string path = dir_ + "/t.snap";
  ASSERT_TRUE(WriteSnapshotFile(path, MixedCursor("float32", 0), Binding("float32")).ok());
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(Slurp(path).size() - 10)), 0);
  r = ReadSnapshotFile(path, Binding("float32"), at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
  EXPECT_EQ(ReadSnapshotHeaderFile(path).status().code(), absl::StatusCode::kDataLoss);
  // Not a snapshot.
  std::ofstream(dir_ + "/junk.snap") << "hello, world; not a snapshot at all";
  r = ReadSnapshotFile(dir_ + "/junk.snap", Binding("float32"), at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("junk.snap"), std::string::npos) << r.status();
  // Wrong binding names the file and both models.
  ASSERT_TRUE(WriteSnapshotFile(path, MixedCursor("float32", 0), Binding("float32")).ok());
  SnapshotBinding other = Binding("float32");
  other.adapter_id = "adapter-B@0000000000000000";
  r = ReadSnapshotFile(path, other, at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("adapter adapter-B@0000000000000000"), std::string::npos) << r.status();
}

TEST_F(SnapshotFileTest, FailedWriteKeepsOldSnapshotAndLeavesNoTemp) {
  at::manual_seed(13);
  const std::string path = dir_ + "/s.snap";
  const SessionCursor old_cur = MixedCursor("float32", 0);
  ASSERT_TRUE(WriteSnapshotFile(path, old_cur, Binding("float32")).ok());
  const std::string old_bytes = Slurp(path);
  const SessionCursor big = MixedCursor("float32", 1, /*scale=*/200);  // ~200 KB

  // 1. The write itself fails half-way: file-size limit below the snapshot size (EFBIG, not SIGXFSZ).
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = saved;
  lim.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  absl::Status st = WriteSnapshotFile(path, big, Binding("float32"));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Slurp(path), old_bytes);
  EXPECT_EQ(Entries(), std::set<std::string>{"s.snap"});

  // 2. The rename fails: the target is a (non-empty) directory.
  const std::string dpath = dir_ + "/d.snap";
  ASSERT_EQ(::mkdir(dpath.c_str(), 0755), 0);
  std::ofstream(dpath + "/keep") << "x";
  st = WriteSnapshotFile(dpath, big, Binding("float32"));
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Entries(), (std::set<std::string>{"s.snap", "d.snap"}));

  // 3. The directory does not exist.
  st = WriteSnapshotFile(dir_ + "/no/such/dir.snap", big, Binding("float32"));
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;

  // 4. An invalid cursor is refused before anything touches the disk.
  st = WriteSnapshotFile(path, big, Binding("bfloat16"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Slurp(path), old_bytes);

  auto back = ReadSnapshotFile(path, Binding("float32"), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameCursor(old_cur, *back);
  // And a successful replacement is seen whole.
  ASSERT_TRUE(WriteSnapshotFile(path, big, Binding("float32")).ok());
  back = ReadSnapshotFile(path, Binding("float32"), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameCursor(big, *back);
  EXPECT_EQ(Entries(), (std::set<std::string>{"s.snap", "d.snap"}));
}

}  // namespace
}  // namespace titand
