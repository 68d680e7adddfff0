// TokenTable: the token file format, lookups, and reloads that keep the old table on a broken file.
#include "server/token_table.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>

namespace titand {
namespace {

class TokenTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() / ("titand_tokens_" + std::to_string(::getpid()))).string();
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);  // a new inode, as a Kubernetes Secret update makes
  }
  std::string path_;
};

const std::string kA = "aaaaaaaaaaaaaaaa-token-1";
const std::string kB = "bbbbbbbbbbbbbbbb-token-2";

TEST_F(TokenTableTest, LoadsAndLooksUp) {
  Write("# comment\n\nalice " + kA + "\r\nbob\t" + kB + "\nalice " + kA + "-rotated\n");
  auto t = TokenTable::Open(path_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->size(), 3u);
  EXPECT_EQ((*t)->tenants(), 2u);
  EXPECT_EQ((*t)->TenantOf(kA), "alice");
  EXPECT_EQ((*t)->TenantOf(kA + "-rotated"), "alice");
  EXPECT_EQ((*t)->TenantOf(kB), "bob");
  EXPECT_FALSE((*t)->TenantOf(kA.substr(0, kA.size() - 1)).has_value());
  EXPECT_FALSE((*t)->TenantOf("").has_value());
}

TEST_F(TokenTableTest, MalformedFilesAreRefusedWithoutEchoingSecrets) {
  const std::vector<std::string> texts = {"alice\n", "alice " + kA + " extra\n", "al/ice " + kA + "\n",
                                         "alice short\n", "alice " + kA + "\nbob " + kA + "\n", "# nothing\n"};
  for (const std::string& text : texts) {
    Write(text);
    auto t = TokenTable::Open(path_);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(t.status().message()).find(kA), std::string::npos) << t.status();
  }
  EXPECT_EQ(TokenTable::Open(path_ + ".missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TokenTableTest, ReloadsOnChangeAndKeepsTheOldTableOnError) {
  Write("alice " + kA + "\n");
  auto t = TokenTable::Open(path_);
  ASSERT_TRUE(t.ok());
  absl::Status st;
  EXPECT_FALSE((*t)->ReloadIfChanged(&st));  // unchanged
  Write("bob " + kB + "\n");
  ASSERT_TRUE((*t)->ReloadIfChanged(&st));
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_FALSE((*t)->TenantOf(kA).has_value());
  EXPECT_EQ((*t)->TenantOf(kB), "bob");
  Write("bob\n");  // broken: bob's token stays valid
  ASSERT_TRUE((*t)->ReloadIfChanged(&st));
  EXPECT_FALSE(st.ok());
  EXPECT_EQ((*t)->TenantOf(kB), "bob");
  EXPECT_FALSE((*t)->ReloadIfChanged(&st));  // not retried until the file changes again
}

}  // namespace
}  // namespace titand
