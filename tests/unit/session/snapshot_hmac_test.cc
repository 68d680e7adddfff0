// Snapshots signed with an HMAC-SHA256 key (format version 2): the MAC itself against RFC 4231's test
// vectors (an independent reference), round trips under the key, and every way a snapshot made without
// the key (or with another key, or altered) is refused with its documented status.
#include <cstdio>

#include <gtest/gtest.h>

#include "core/session/snapshot.h"
#include "core/session/snapshot_mac.h"
#include "session_test_util.h"

namespace titand {
namespace {

using session_test::Binding;
using session_test::ExpectSameCursor;
using session_test::MixedCursor;

std::string Hex(const SnapshotDigest& d) {
  std::string out;
  char buf[3];
  for (uint8_t b : d) {
    std::snprintf(buf, sizeof(buf), "%02x", b);
    out += buf;
  }
  return out;
}

TEST(SnapshotMac, Rfc4231TestVectors) {
  // Test case 1: key = 0x0b x 20, data = "Hi There".
  EXPECT_EQ(Hex(ComputeSnapshotDigest(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: key = "Jefe", data = "what do ya want for nothing?".
  EXPECT_EQ(Hex(ComputeSnapshotDigest("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a 131-byte key (longer than the block: hashed first).
  EXPECT_EQ(Hex(ComputeSnapshotDigest(std::string(131, '\xaa'),
                                      "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // No key: plain SHA-256 (FIPS 180-2 "abc").
  EXPECT_EQ(Hex(ComputeSnapshotDigest("", "abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

SnapshotBinding Keyed(const std::string& key) {
  SnapshotBinding b = Binding("float32");
  b.hmac_key = key;
  return b;
}

const std::string kKey(32, 'k');

TEST(SnapshotHmac, RoundTripUnderTheKey) {
  at::manual_seed(3);
  const SessionCursor cur = MixedCursor("float32", 1);
  auto bytes = SerializeCursor(cur, Keyed(kKey));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ((*bytes)[8], 2);  // format version 2
  auto back = DeserializeCursor(*bytes, Keyed(kKey), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameCursor(cur, *back);
  auto h = PeekSnapshotHeader(*bytes, kKey);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->version, 2u);
}

TEST(SnapshotHmac, RefusesWhatTheKeyDidNotSign) {
  at::manual_seed(4);
  const SessionCursor cur = MixedCursor("float32", 0);
  auto unsigned_bytes = SerializeCursor(cur, Binding("float32"));
  auto signed_bytes = SerializeCursor(cur, Keyed(kKey));
  ASSERT_TRUE(unsigned_bytes.ok() && signed_bytes.ok());
  // A version-1 file (anyone can compute its SHA-256) is refused under a key.
  auto a = DeserializeCursor(*unsigned_bytes, Keyed(kKey), at::kCPU);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
  EXPECT_NE(a.status().message().find("unsigned"), std::string::npos);
  EXPECT_EQ(PeekSnapshotHeader(*unsigned_bytes, kKey).status().code(), absl::StatusCode::kInvalidArgument);
  // Another key: DATA_LOSS at the header already.
  auto b = DeserializeCursor(*signed_bytes, Keyed(std::string(32, 'x')), at::kCPU);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDataLoss) << b.status();
  // A signed file on a server without a key: FAILED_PRECONDITION naming the flag.
  auto c = DeserializeCursor(*signed_bytes, Binding("float32"), at::kCPU);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_NE(c.status().message().find("--snapshot-key-file"), std::string::npos);
  // One flipped bit anywhere (header, data or MAC) fails authentication or parsing; never OK.
  for (size_t i = 16; i < signed_bytes->size(); i += 37) {
    std::string bad = *signed_bytes;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DeserializeCursor(bad, Keyed(kKey), at::kCPU).ok()) << "byte " << i;
  }
  // A forger who knows the format but not the key: re-sign the altered data with SHA-256 as in v1.
  std::string forged = *unsigned_bytes;
  forged[8] = 2;  // claims version 2
  EXPECT_EQ(DeserializeCursor(forged, Keyed(kKey), at::kCPU).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace titand
