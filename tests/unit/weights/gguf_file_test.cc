// GgufFile: a valid hand-built file (all 13 metadata kinds, tensors, getters) and every malformed case.
#include "core/weights/gguf_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <random>

#include "tests/unit/weights/gguf_test_util.h"

namespace titand {
namespace {

using testing_util::Bytes;
using testing_util::BuildGguf;
using testing_util::GgufSpec;
using testing_util::Kv;
using testing_util::TensorSpec;
using testing_util::WriteTemp;

std::string F32Data(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// Metadata of every kind (ids 0..12), incl. a nested array, and two tensors.
GgufSpec ValidSpec() {
  GgufSpec s;
  s.kvs = {
      Kv("u8", 0, Bytes().U8(200).str()),
      Kv("i8", 1, Bytes().U8(0x85).str()),  // -123
      Kv("u16", 2, Bytes().U16(65000).str()),
      Kv("i16", 3, Bytes().U16(static_cast<uint16_t>(-30000)).str()),
      Kv("u32", 4, Bytes().U32(4000000000u).str()),
      Kv("i32", 5, Bytes().U32(static_cast<uint32_t>(-2000000000)).str()),
      Kv("f32", 6, Bytes().F32(0.1f).str()),
      Kv("bool", 7, Bytes().U8(1).str()),
      Kv("general.architecture", 8, Bytes().Str("llama").str()),
      Kv("strs", 9, Bytes().U32(8).U64(3).Str("a").Str("").Str("\xc3\xa9").str()),
      Kv("u64", 10, Bytes().U64(std::numeric_limits<uint64_t>::max()).str()),
      Kv("i64", 11, Bytes().U64(static_cast<uint64_t>(std::numeric_limits<int64_t>::min())).str()),
      Kv("f64", 12, Bytes().F64(-2.5e300).str()),
      Kv("ints", 9, Bytes().U32(5).U64(3).U32(1).U32(static_cast<uint32_t>(-2)).U32(3).str()),
      Kv("floats", 9, Bytes().U32(6).U64(2).F32(0.5f).F32(-1.25f).str()),
      Kv("nested", 9, Bytes().U32(9).U64(2).U32(0).U64(2).U8(1).U8(2).U32(8).U64(1).Str("x").str()),
  };
  TensorSpec a{"a", {3, 2}, 0, F32Data({1, 2, 3, 4, 5, 6})};
  std::string q8(34, '\0');
  q8[0] = 0x00, q8[1] = 0x40;  // d = 2.0
  for (int e = 0; e < 32; ++e) q8[2 + e] = static_cast<char>(e - 16);
  TensorSpec b{"blk.0.q8", {32}, 8, q8};
  s.tensors = {a, b};
  return s;
}

TEST(GgufFileTest, ReadsValidFile) {
  const std::string path = WriteTemp("valid.gguf", BuildGguf(ValidSpec()));
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.path(), path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.MetadataKeys().size(), 16u);
  EXPECT_EQ(g.MetadataKeys()[0], "u8");
  EXPECT_EQ(*g.GetInt("u8"), 200);
  EXPECT_EQ(*g.GetInt("i8"), -123);
  EXPECT_EQ(*g.GetInt("u16"), 65000);
  EXPECT_EQ(*g.GetInt("i16"), -30000);
  EXPECT_EQ(*g.GetInt("u32"), 4000000000LL);
  EXPECT_EQ(*g.GetInt("i32"), -2000000000LL);
  EXPECT_EQ(*g.GetFloat("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(*g.GetInt("bool"), 1);
  EXPECT_EQ(g.Find("bool")->kind, GgufValue::Kind::kBool);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetStringArray("strs"), (std::vector<std::string>{"a", "", "\xc3\xa9"}));
  EXPECT_EQ(g.Find("u64")->u, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(g.GetInt("u64").status().code(), absl::StatusCode::kInvalidArgument);  // > int64 max
  EXPECT_EQ(*g.GetInt("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*g.GetFloat("f64"), -2.5e300);
  EXPECT_EQ(*g.GetFloat("u16"), 65000.0);
  EXPECT_EQ(*g.GetIntArray("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*g.GetFloatArray("floats"), (std::vector<double>{0.5, -1.25}));
  EXPECT_EQ(*g.GetFloatArray("ints"), (std::vector<double>{1, -2, 3}));
  const GgufValue* nested = g.Find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->elem_kind, GgufValue::Kind::kArray);
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].elem_kind, GgufValue::Kind::kU8);
  EXPECT_EQ(nested->array[0].array[1].u, 2u);
  EXPECT_EQ(nested->array[1].array[0].str, "x");
  // Wrong kinds and missing keys.
  EXPECT_EQ(g.GetString("u8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetInt("f32").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetStringArray("ints").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetIntArray("floats").status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = g.GetInt("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
  EXPECT_EQ(g.Find("nope"), nullptr);
  // Tensors.
  ASSERT_EQ(g.tensors().size(), 2u);
  const GgufTensorInfo* a = g.FindTensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a->numel(), 6);
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(a->offset % 32, 0u);
  std::vector<float> out;
  ASSERT_TRUE(g.ReadAsFloat(*a, &out).ok());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, 4, 5, 6}));  // C order [2, 3]
  const GgufTensorInfo* b = g.FindTensor("blk.0.q8");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type, GgmlType::kQ8_0);
  EXPECT_EQ(b->offset, a->offset + 32);
  ASSERT_TRUE(g.ReadAsFloat(*b, &out).ok());
  ASSERT_EQ(out.size(), 32u);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(out[e], 2.0f * (e - 16));
  EXPECT_EQ(g.FindTensor("zzz"), nullptr);
}

TEST(GgufFileTest, AcceptsV2AndCustomAlignment) {
  GgufSpec s = ValidSpec();
  s.version = 2;
  s.alignment = 64;
  s.kvs.push_back(Kv("general.alignment", 4, Bytes().U32(64).str()));
  auto f = GgufFile::Open(WriteTemp("v2.gguf", BuildGguf(s)));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->tensors()[1].offset - (*f)->tensors()[0].offset, 64u);
  std::vector<float> out;
  ASSERT_TRUE((*f)->ReadAsFloat((*f)->tensors()[1], &out).ok());
  EXPECT_EQ(out[31], 30.0f);
}

// Opens `bytes` as a file and expects `code` with the path (and `needle`) in the message.
void ExpectError(const std::string& name, const std::string& bytes, absl::StatusCode code,
                 const std::string& needle) {
  const std::string path = WriteTemp(name, bytes);
  auto f = GgufFile::Open(path);
  ASSERT_FALSE(f.ok()) << name;
  EXPECT_EQ(f.status().code(), code) << name << ": " << f.status();
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << name << ": " << f.status();
}

TEST(GgufFileTest, MissingFileAndHeaderErrors) {
  auto f = GgufFile::Open(::testing::TempDir() + "/titand_no_such.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("titand_no_such.gguf"), std::string::npos);
  ExpectError("empty.gguf", "", absl::StatusCode::kDataLoss, "truncated");
  GgufSpec s = ValidSpec();
  std::memcpy(s.magic, "GGUG", 4);
  ExpectError("magic.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "magic");
  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    s = ValidSpec();
    s.version = v;
    ExpectError("version.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "version");
  }
  ExpectError("header.gguf", BuildGguf(ValidSpec()).substr(0, 12), absl::StatusCode::kDataLoss,
              "tensor count");
}

TEST(GgufFileTest, EveryTruncationIsDataLoss) {
  const std::string full = BuildGguf(ValidSpec());
  // The last tensor (34 bytes of Q8_0) is followed by 30 bytes of padding: every cut before its end
  // must fail.
  for (size_t n = 0; n < full.size() - 30; ++n) {
    const std::string path = WriteTemp("trunc.gguf", full.substr(0, n));
    auto f = GgufFile::Open(path);
    ASSERT_FALSE(f.ok()) << n;
    ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << n << ": " << f.status();
    ASSERT_NE(f.status().message().find(path), std::string::npos);
  }
}

TEST(GgufFileTest, LengthsAndCountsBeyondTheFile) {
  GgufSpec s = ValidSpec();
  s.kvs.push_back(Bytes().Str("big").U32(8).U64(1ull << 40).str());  // string length
  ExpectError("strlen.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "string length");
  s = ValidSpec();
  s.kvs.insert(s.kvs.begin(), Bytes().U64(~0ull).str());  // key length
  ExpectError("keylen.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "string length");
  s = ValidSpec();
  s.kvs.push_back(Kv("arr", 9, Bytes().U32(12).U64(1ull << 61).str()));  // array count
  ExpectError("arrlen.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "array of");
  s = ValidSpec();
  s.n_kv_override = 1ll << 60;
  ExpectError("nkv.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "metadata count");
  s = ValidSpec();
  s.n_tensors_override = 1ll << 60;
  ExpectError("ntensors.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "tensor count");
}

TEST(GgufFileTest, UnknownKindsAndTypes) {
  GgufSpec s = ValidSpec();
  s.kvs.push_back(Kv("weird", 13, Bytes().U32(0).str()));
  ExpectError("kind.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "unknown value type 13");
  s = ValidSpec();
  s.kvs.push_back(Kv("weird_arr", 9, Bytes().U32(77).U64(1).U8(0).str()));
  ExpectError("elemkind.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument,
              "unknown value type 77");
  s = ValidSpec();
  s.kvs.push_back(Kv("b", 7, Bytes().U8(2).str()));
  ExpectError("bool.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "bool");
  for (uint32_t type : {10u, 4u, 39u, 1000u}) {  // Q2_K, removed Q4_2, past the end, garbage
    s = ValidSpec();
    s.tensors[1].type = type;
    ExpectError("ttype.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument,
                "unsupported tensor type " + std::to_string(type));
  }
  // Arrays nested 100 deep.
  Bytes deep;
  for (int k = 0; k < 100; ++k) deep.U32(9).U64(1);
  s = ValidSpec();
  s.kvs.push_back(Kv("deep", 9, deep.U32(0).U64(0).str()));
  ExpectError("deep.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "nested");
}

TEST(GgufFileTest, TensorLayoutErrors) {
  GgufSpec s = ValidSpec();
  s.tensors[1].dims = {33};  // Q8_0 rows must be whole blocks
  ExpectError("rowlen.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "block size");
  s = ValidSpec();
  s.tensors[0].dims = {3, 2, 1, 1, 1};
  ExpectError("dims.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "dims");
  s = ValidSpec();
  s.tensors[0].dims = {3, 1ull << 40};  // far more data than the file holds
  ExpectError("size.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "beyond the end");
  s = ValidSpec();
  s.tensors[0].dims = {1ull << 62, 1ull << 62};
  ExpectError("overflow.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "overflow");
  s = ValidSpec();
  s.tensors[1].offset_override = 1ll << 50;
  ExpectError("offset.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "beyond the end");
  s = ValidSpec();
  s.tensors[1].offset_override = 64;  // aligned, but the 34 bytes run past the end
  ExpectError("offset2.gguf", BuildGguf(s), absl::StatusCode::kDataLoss, "beyond the end");
  s = ValidSpec();
  s.tensors[1].offset_override = 8;
  ExpectError("misaligned.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "alignment");
  s = ValidSpec();
  s.tensors[1].name = "a";
  ExpectError("dupt.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "duplicate tensor");
  s = ValidSpec();
  s.kvs.push_back(s.kvs[0]);
  ExpectError("dupk.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "duplicate metadata");
  s = ValidSpec();
  s.kvs.push_back(Kv("general.alignment", 4, Bytes().U32(24).str()));
  ExpectError("align.gguf", BuildGguf(s), absl::StatusCode::kInvalidArgument, "alignment");
}

TEST(GgufFileTest, RandomCorruptionNeverCrashes) {
  const std::string full = BuildGguf(ValidSpec());
  std::mt19937 rng(3);
  int ok = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    std::string bytes = full;
    const int flips = 1 + rng() % 4;
    for (int k = 0; k < flips; ++k) bytes[rng() % 200] = static_cast<char>(rng() & 0xff);  // header area
    auto f = GgufFile::Open(WriteTemp("fuzz.gguf", bytes));
    if (!f.ok()) {
      ASSERT_TRUE(f.status().code() == absl::StatusCode::kDataLoss ||
                  f.status().code() == absl::StatusCode::kInvalidArgument)
          << f.status();
      continue;
    }
    ++ok;
    std::vector<float> out;
    for (const GgufTensorInfo& t : (*f)->tensors()) {
      ASSERT_LE(t.offset + t.nbytes, bytes.size());
      ASSERT_TRUE((*f)->ReadAsFloat(t, &out).ok());
    }
  }
  EXPECT_GT(ok, 0);  // some flips land in values and leave a valid file
}

}  // namespace
}  // namespace titand
