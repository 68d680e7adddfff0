// SafetensorsFile / WriteSafetensors / ListSafetensorsFiles: round trip, hand-built F16/BF16 files,
// and malformed headers.
#include "core/weights/safetensors_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/weights/safetensors_writer.h"

namespace titand {
namespace {

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/titand_st_" + name; }

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), bytes.size());
}

// u64 header length | header | data.
std::string StFile(const std::string& header, const std::string& data) {
  std::string out;
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((header.size() >> (8 * k)) & 0xff));
  return out + header + data;
}

TEST(SafetensorsTest, WriterRoundTrip) {
  const std::string path = TempPath("rt.safetensors");
  std::vector<std::pair<std::string, F32Tensor>> ts = {
      {"w", {{2, 3}, {1, -2, 3.5f, 4, 5, 1e-30f}}},
      {"b", {{3}, {0.25f, -0.0f, 7}}},
      {"scalar", {{}, {42}}},
  };
  ASSERT_TRUE(WriteSafetensors(path, ts, {{"format", "pt"}, {"step", "12"}}).ok());
  std::ifstream raw(path, std::ios::binary);
  uint64_t hlen = 0;
  raw.read(reinterpret_cast<char*>(&hlen), 8);
  EXPECT_EQ(hlen % 8, 0u);  // data section aligned
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->metadata().at("step"), "12");
  ASSERT_EQ((*f)->tensors().size(), 3u);
  EXPECT_EQ((*f)->tensors()[0].name, "w");  // sorted by data offset = written order
  for (const auto& [name, t] : ts) {
    const SafetensorsTensor* st = (*f)->Find(name);
    ASSERT_NE(st, nullptr) << name;
    EXPECT_EQ(st->dtype, StDtype::kF32);
    EXPECT_EQ(st->shape, t.shape);
    std::vector<float> out;
    ASSERT_TRUE((*f)->ReadAsFloat(*st, &out).ok());
    EXPECT_EQ(out, t.data);
  }
  EXPECT_EQ((*f)->Find("nope"), nullptr);
  // No temp file is left behind; rewriting replaces the file.
  ASSERT_TRUE(WriteSafetensors(path, {{"x", {{1}, {9}}}}).ok());
  auto g = SafetensorsFile::Open(path);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)->tensors().size(), 1u);
  struct stat st;
  EXPECT_NE(::stat((path + ".tmp." + std::to_string(::getpid())).c_str(), &st), 0);
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  const std::string path = TempPath("bad_w.safetensors");
  std::remove(path.c_str());
  EXPECT_EQ(WriteSafetensors(path, {{"w", {{2, 2}, {1, 2, 3}}}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"w", {{1}, {1}}}, {"w", {{1}, {2}}}}).code(),
            absl::StatusCode::kInvalidArgument);
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);  // nothing written
  EXPECT_EQ(WriteSafetensors("/nonexistent_dir/x.safetensors", {}).code(), absl::StatusCode::kInternal);
}

TEST(SafetensorsTest, ReadsF16AndBf16) {
  // F16 [2]: 1.0 (0x3C00), -2.0 (0xC000); BF16 [1, 2]: 1.0 (0x3F80), 3.140625 (0x4049).
  const std::string data("\x00\x3C\x00\xC0\x80\x3F\x49\x40", 8);
  const std::string hdr =
      R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]}})";
  const std::string path = TempPath("half.safetensors");
  WriteBytes(path, StFile(hdr, data));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->metadata().empty());
  std::vector<float> out;
  ASSERT_TRUE((*f)->ReadAsFloat(*(*f)->Find("h"), &out).ok());
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f}));
  ASSERT_TRUE((*f)->ReadAsFloat(*(*f)->Find("b"), &out).ok());
  EXPECT_EQ(out, (std::vector<float>{1.0f, 3.140625f}));
  EXPECT_EQ((*f)->Find("b")->shape, (std::vector<int64_t>{1, 2}));
}

void ExpectError(const std::string& name, const std::string& bytes, absl::StatusCode code,
                 const std::string& needle) {
  const std::string path = TempPath(name);
  WriteBytes(path, bytes);
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << name;
  EXPECT_EQ(f.status().code(), code) << name << ": " << f.status();
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << name << ": " << f.status();
}

TEST(SafetensorsTest, MalformedFiles) {
  using C = absl::StatusCode;
  EXPECT_EQ(SafetensorsFile::Open(TempPath("missing")).status().code(), C::kNotFound);
  const std::string t = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string d(8, '\0');
  ExpectError("short", "abc", C::kDataLoss, "truncated");
  ExpectError("hlen", StFile(t, d).substr(0, 20), C::kDataLoss, "header length");
  ExpectError("hhuge", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + t, C::kInvalidArgument,
              "too large");
  ExpectError("json", StFile("{\"t\": [", d), C::kInvalidArgument, "JSON");
  ExpectError("notobj", StFile("[1,2]", d), C::kInvalidArgument, "not an object");
  ExpectError("dtype", StFile(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", d),
              C::kInvalidArgument, "unsupported dtype");
  ExpectError("fields", StFile(R"({"t":{"dtype":"F32","shape":[2]}})", d), C::kInvalidArgument,
              "data_offsets");
  ExpectError("range", StFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d),
              C::kDataLoss, "outside");
  ExpectError("order", StFile(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", d),
              C::kDataLoss, "outside");
  ExpectError("mismatch", StFile(R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", d),
              C::kInvalidArgument, "need 4");
  ExpectError("negdim", StFile(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d),
              C::kInvalidArgument, "shape");
  ExpectError("bigdim",
              StFile(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d),
              C::kInvalidArgument, "overflow");
  ExpectError("overlap",
              StFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d),
              C::kInvalidArgument, "overlap");
  ExpectError("meta", StFile(R"({"__metadata__":{"k":1}})", ""), C::kInvalidArgument, "__metadata__");
}

TEST(SafetensorsTest, ListFiles) {
  const std::string dir = TempPath("model_dir");
  ::mkdir(dir.c_str(), 0755);
  std::remove((dir + "/model.safetensors.index.json").c_str());
  for (const char* f : {"/model.safetensors", "/model-00001-of-00002.safetensors",
                        "/model-00002-of-00002.safetensors"}) {
    std::remove((dir + f).c_str());
  }
  EXPECT_EQ(ListSafetensorsFiles(dir).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", {{"x", {{1}, {1}}}}).ok());
  EXPECT_EQ(*ListSafetensorsFiles(dir), std::vector<std::string>{dir + "/model.safetensors"});
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  EXPECT_EQ(ListSafetensorsFiles(dir).status().code(), absl::StatusCode::kNotFound);  // shards missing
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", {{"b", {{1}, {1}}}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", {{"a", {{1}, {1}}}}).ok());
  EXPECT_EQ(*ListSafetensorsFiles(dir),
            (std::vector<std::string>{dir + "/model-00001-of-00002.safetensors",
                                      dir + "/model-00002-of-00002.safetensors"}));
  WriteBytes(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../evil.safetensors"}})");
  EXPECT_EQ(ListSafetensorsFiles(dir).status().code(), absl::StatusCode::kInvalidArgument);
  WriteBytes(dir + "/model.safetensors.index.json", "not json");
  EXPECT_EQ(ListSafetensorsFiles(dir).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace titand
