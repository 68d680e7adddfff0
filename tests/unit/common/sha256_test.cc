// SHA-256 against the FIPS 180-2 / NIST example vectors, padding-boundary lengths (digests from Python's
// hashlib), and incremental hashing over random splits == one-shot.
#include "core/common/sha256.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

namespace titand {
namespace {

std::string Hex(const std::string& s) { return Sha256Hex(s.data(), s.size()); }

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                "mnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, OneMillionA) {
  const std::string a(1000000, 'a');
  EXPECT_EQ(Hex(a), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Same message fed one byte at a time.
  Sha256 h;
  for (char c : a) h.Update(&c, 1);
  EXPECT_EQ(DigestHex(h.Final()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  const std::pair<int, const char*> cases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
  };
  for (const auto& [n, want] : cases) EXPECT_EQ(Hex(std::string(n, 'a')), want) << "length " << n;
}

TEST(Sha256, IncrementalEqualsOneShotOverRandomSplits) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = rng() % 1000;
    std::string msg(n, '\0');
    for (auto& c : msg) c = static_cast<char>(rng());
    const std::string want = Hex(msg);
    Sha256 h;
    size_t pos = 0;
    while (pos < n) {
      const size_t take = std::min<size_t>(n - pos, rng() % 150);  // includes empty updates
      h.Update(msg.data() + pos, take);
      pos += take;
    }
    EXPECT_EQ(DigestHex(h.Final()), want) << "trial " << trial << " n=" << n;
    // Final() resets: the object hashes a new message from scratch.
    h.Update(msg.data(), n);
    EXPECT_EQ(DigestHex(h.Final()), want);
  }
}

}  // namespace
}  // namespace titand
