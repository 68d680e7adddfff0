#include "core/tokenizer/byte_map.h"

#include <gtest/gtest.h>

#include "core/tokenizer/unicode_text.h"

namespace titand {
namespace {

TEST(ByteMapTest, KnownGpt2Spellings) {
  EXPECT_EQ(BytesToTokenSpelling(" "), "\u0120");   // "Ġ"
  EXPECT_EQ(BytesToTokenSpelling("\n"), "\u010a");  // "Ċ"
  EXPECT_EQ(BytesToTokenSpelling("\t"), "\u0109");  // "ĉ"
  EXPECT_EQ(BytesToTokenSpelling(std::string(1, '\0')), "\u0100");
  EXPECT_EQ(BytesToTokenSpelling("\x7f"), "\u0121");
  EXPECT_EQ(BytesToTokenSpelling("\xad"), "\u0143");  // the last of the 68 remapped bytes
  EXPECT_EQ(BytesToTokenSpelling("\xa1\xff"), "\u00a1\u00ff");
  EXPECT_EQ(BytesToTokenSpelling("a!~"), "a!~");
}

TEST(ByteMapTest, AllBytesRoundTrip) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::string spelling = BytesToTokenSpelling(all);
  std::string back;
  ASSERT_TRUE(TokenSpellingToBytes(spelling, &back));
  EXPECT_EQ(back, all);
  // The 256 code points are distinct.
  for (int a = 0; a < 256; ++a) {
    EXPECT_EQ(CodepointToByte(ByteToCodepoint(static_cast<uint8_t>(a))), a);
  }
}

TEST(ByteMapTest, SpellingOutsideAlphabetIsRejected) {
  std::string out = "unchanged";
  EXPECT_FALSE(TokenSpellingToBytes("a b", &out));        // a raw space is not in the alphabet
  EXPECT_FALSE(TokenSpellingToBytes("\u4e2d", &out));     // CJK
  EXPECT_FALSE(TokenSpellingToBytes("ab\xff", &out));     // ill-formed UTF-8
  EXPECT_EQ(out, "unchanged");
}

TEST(UnicodeTextTest, LossyUtf8FollowsMaximalSubpartPolicy) {
  // Same as Python's bytes.decode("utf-8", "replace").
  std::string out;
  AppendValidUtf8("a\xf0\x9f\x98" "b\xe2\x82z\x80\xbf" "c", false, &out);
  EXPECT_EQ(out, "a\ufffd" "b\ufffdz\ufffd\ufffd" "c");
  out.clear();
  AppendValidUtf8("\xed\xa0\x80x\xc0\xaf", false, &out);  // surrogate, overlong: every byte replaced
  EXPECT_EQ(out, "\ufffd\ufffd\ufffdx\ufffd\ufffd");
  out.clear();
  EXPECT_EQ(AppendValidUtf8("ok\xe4\xb8", true, &out), 2u);  // incomplete tail held back
  EXPECT_EQ(out, "ok");
}

}  // namespace
}  // namespace titand
