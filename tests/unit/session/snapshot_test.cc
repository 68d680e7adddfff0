// Session snapshots in memory: round trips of mixed cursors (fp32/bf16, pending 0/1) are bit-identical;
// a fork serialises like its original; every single-byte corruption and every truncation is detected;
// each binding field is enforced; invalid cursors are refused at write time.
#include "core/session/snapshot.h"

#include <chrono>
#include <cstdio>

#include <gtest/gtest.h>

#include "session_test_util.h"

namespace titand {
namespace {

using session_test::Binding;
using session_test::ExpectSameCursor;
using session_test::MixedCursor;

TEST(Snapshot, RoundTripMixedLayers) {
  at::manual_seed(1);
  for (const std::string dtype : {"float32", "bfloat16"}) {
    for (int pending : {0, 1}) {
      SCOPED_TRACE(dtype + " pending=" + std::to_string(pending));
      const SessionCursor cur = MixedCursor(dtype, pending);
      auto bytes = SerializeCursor(cur, Binding(dtype));
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      auto back = DeserializeCursor(*bytes, Binding(dtype), at::kCPU);
      ASSERT_TRUE(back.ok()) << back.status();
      ExpectSameCursor(cur, *back);
      EXPECT_EQ(back->history_tokens(), cur.history_tokens());
      // Restored KV has capacity == len; no bytes beyond the valid entries were stored.
      EXPECT_EQ(back->state.layers[0].k.size(1), 11);
      EXPECT_FALSE(back->state.layers[3].k.defined());
      EXPECT_FALSE(back->state.layers[3].memory.defined());
      EXPECT_TRUE(back->state.layers[4].k.defined());
      // Serialising the restored cursor reproduces the same bytes.
      auto again = SerializeCursor(*back, Binding(dtype));
      ASSERT_TRUE(again.ok());
      EXPECT_TRUE(*again == *bytes);
      // Header without tensors.
      auto h = PeekSnapshotHeader(*bytes);
      ASSERT_TRUE(h.ok()) << h.status();
      EXPECT_EQ(h->binding.model_id, Binding(dtype).model_id);
      EXPECT_EQ(h->binding.dtype, dtype);
      EXPECT_EQ(h->num_tokens, 11);
      EXPECT_EQ(h->pending, cur.pending);
      EXPECT_EQ(h->state_bytes, cur.ByteSize());
      EXPECT_EQ(h->file_bytes, static_cast<int64_t>(bytes->size()));
      ASSERT_EQ(h->layers.size(), 5u);
      EXPECT_EQ(h->layers[2].memory_shape, (std::vector<int64_t>{3, 8, 8}));
    }
  }
}

TEST(Snapshot, StoresOnlyValidEntries) {
  at::manual_seed(2);
  SessionCursor a = MixedCursor("float32", 0);
  SessionCursor b = a.Fork();  // same valid entries, capacity == len, no garbage tail
  b.state.layers[0].k = at::cat({b.state.layers[0].k, at::full({2, 100, 8}, 7.0f)}, 1);
  b.state.layers[0].v = at::cat({b.state.layers[0].v, at::full({2, 100, 8}, 7.0f)}, 1);
  auto sa = SerializeCursor(a, Binding("float32"));
  auto sb = SerializeCursor(b, Binding("float32"));
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_TRUE(*sa == *sb);
}

TEST(Snapshot, ForkThenSerialize) {
  at::manual_seed(3);
  SessionCursor a = MixedCursor("bfloat16", 1);
  const SessionCursor f = a.Fork();
  auto before = SerializeCursor(a, Binding("bfloat16"));
  auto forked = SerializeCursor(f, Binding("bfloat16"));
  ASSERT_TRUE(before.ok() && forked.ok());
  EXPECT_TRUE(*before == *forked);
  // The original moves on; the fork's snapshot is unchanged and restores to the fork.
  a.state.layers[2].memory.add_(1.0f);
  a.state.layers[0].k.zero_();
  a.pending = {7};
  auto forked2 = SerializeCursor(f, Binding("bfloat16"));
  ASSERT_TRUE(forked2.ok());
  EXPECT_TRUE(*forked2 == *forked);
  auto moved = SerializeCursor(a, Binding("bfloat16"));
  ASSERT_TRUE(moved.ok());
  EXPECT_FALSE(*moved == *forked);
  auto back = DeserializeCursor(*forked, Binding("bfloat16"), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameCursor(f, *back);
}

// A small snapshot: every byte flipped (two patterns) is detected, never crashes.
TEST(Snapshot, EverySingleByteCorruptionDetected) {
  at::manual_seed(4);
  SessionCursor c;
  c.state.num_tokens = 3;
  c.state.layers.resize(2);
  session_test::FillKv(&c.state.layers[0], 4, 3, at::kFloat);
  c.state.layers[1].memory = at::randn({1, 8, 2});
  c.pending = {5};
  const SnapshotBinding b = Binding("float32", 2);
  auto good = SerializeCursor(c, b);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE(DeserializeCursor(*good, b, at::kCPU).ok());
  int data_loss = 0, invalid = 0;
  for (size_t i = 0; i < good->size(); ++i) {
    for (uint8_t mask : {0x01, 0xff}) {
      std::string bad = *good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto r = DeserializeCursor(bad, b, at::kCPU);
      ASSERT_FALSE(r.ok()) << "byte " << i << " mask " << int(mask) << " undetected";
      const auto code = r.status().code();
      EXPECT_TRUE(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument)
          << "byte " << i << ": " << r.status();
      (code == absl::StatusCode::kDataLoss ? data_loss : invalid)++;
      if (i < 12) {  // magic, version
        EXPECT_EQ(code, absl::StatusCode::kInvalidArgument) << r.status();
      }
    }
  }
  EXPECT_GT(data_loss, 0);
  EXPECT_EQ(invalid, 2 * 12);
}

TEST(Snapshot, EveryTruncationAndTrailingBytesDetected) {
  at::manual_seed(5);
  const SnapshotBinding b = Binding("bfloat16");
  auto good = SerializeCursor(MixedCursor("bfloat16", 1), b);
  ASSERT_TRUE(good.ok());
  for (size_t n = 0; n < good->size(); ++n) {
    auto r = DeserializeCursor(std::string_view(*good).substr(0, n), b, at::kCPU);
    ASSERT_FALSE(r.ok()) << "length " << n;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << "length " << n << ": " << r.status();
  }
  auto r = DeserializeCursor(*good + "x", b, at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  // The header alone is enough for Peek; one byte less is not.
  auto h = PeekSnapshotHeader(*good);
  ASSERT_TRUE(h.ok());
  const size_t header_end = static_cast<size_t>(h->file_bytes - h->data_bytes - 32);
  EXPECT_TRUE(PeekSnapshotHeader(std::string_view(*good).substr(0, header_end)).ok());
  EXPECT_EQ(PeekSnapshotHeader(std::string_view(*good).substr(0, header_end - 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(Snapshot, BadMagicAndVersionAreInvalidArgument) {
  at::manual_seed(6);
  auto good = SerializeCursor(MixedCursor("float32", 0), Binding("float32"));
  ASSERT_TRUE(good.ok());
  std::string other = *good;
  other.replace(0, 8, "GGUFxxxx");
  auto r = DeserializeCursor(other, Binding("float32"), at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("GGUFxxxx"), std::string::npos) << r.status();
  std::string v3 = *good;  // versions 1 (SHA-256) and 2 (HMAC, snapshot_hmac_test.cc) are known
  v3[8] = 3;
  r = DeserializeCursor(v3, Binding("float32"), at::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("version 3"), std::string::npos) << r.status();
}

TEST(Snapshot, EachBindingFieldEnforced) {
  at::manual_seed(7);
  const SnapshotBinding b = Binding("float32");
  auto bytes = SerializeCursor(MixedCursor("float32", 1), b);
  ASSERT_TRUE(bytes.ok());
  std::vector<std::pair<std::string, SnapshotBinding>> cases;
  for (int f = 0; f < 6; ++f) {
    SnapshotBinding e = b;
    switch (f) {
      case 0: e.model_id = "Other Model@1111111111111111"; break;
      case 1: e.adapter_id = ""; break;
      case 2: e.num_layers = 6; break;
      case 3: e.num_kv_heads = 3; break;
      case 4: e.head_dim = 16; break;
      case 5: e.dtype = "bfloat16"; break;
    }
    auto r = DeserializeCursor(*bytes, e, at::kCPU);
    ASSERT_FALSE(r.ok()) << "field " << f;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    const std::string msg(r.status().message());
    EXPECT_NE(msg.find("snapshot was made for model Tiny Model@0123456789abcdef adapter adapter-A@"),
              std::string::npos) << msg;
    EXPECT_NE(msg.find("this server runs model " + e.model_id), std::string::npos) << msg;
  }
}

TEST(Snapshot, InvalidCursorsRefused) {
  at::manual_seed(8);
  const SessionCursor good = MixedCursor("float32", 0);
  auto expect_invalid = [](const SessionCursor& c, const SnapshotBinding& b, const char* what) {
    auto r = SerializeCursor(c, b);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what << ": " << r.status();
  };
  expect_invalid(good, Binding("bfloat16"), "dtype differs from the binding");
  expect_invalid(good, Binding("float32", 4), "layer count");
  expect_invalid(good, Binding("float64"), "unknown dtype");
  SessionCursor c = good.Fork();
  c.state.layers[1].len = 5;  // beyond capacity 4
  expect_invalid(c, Binding("float32"), "len > capacity");
  c = good.Fork();
  c.state.layers[0].len = 12;  // > num_tokens (and capacity 11 after fork)
  expect_invalid(c, Binding("float32"), "len > num_tokens");
  c = good.Fork();
  c.pending = {1, 2};
  expect_invalid(c, Binding("float32"), "two pending tokens");
  c = good.Fork();
  c.state.layers[2].memory = c.state.layers[2].memory.to(at::kBFloat16);
  expect_invalid(c, Binding("float32"), "bf16 memory");
  c = good.Fork();
  c.state.layers[3].len = 2;  // no KV tensors
  expect_invalid(c, Binding("float32"), "len without KV");
}

TEST(Snapshot, LargerThanOneMegabyteRoundTrips) {
  at::manual_seed(9);
  const SessionCursor cur = MixedCursor("float32", 1, /*scale=*/1500);  // layer 0: 2*2*16500*8*4 bytes
  ASSERT_GT(cur.ByteSize(), 1 << 20);
  const auto t0 = std::chrono::steady_clock::now();
  auto bytes = SerializeCursor(cur, Binding("float32"));
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(bytes->size(), 1u << 20);
  auto back = DeserializeCursor(*bytes, Binding("float32"), at::kCPU);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(back.ok()) << back.status();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("snapshot of %zu bytes: serialize %.2f ms, deserialize %.2f ms\n", bytes->size(), ms(t1 - t0),
              ms(t2 - t1));
  ExpectSameCursor(cur, *back);
}

}  // namespace
}  // namespace titand
