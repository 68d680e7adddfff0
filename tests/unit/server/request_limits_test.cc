// RequestLimits: ids, stop strings and chat messages at the boundary; messages never contain the input.
#include "server/request_limits.h"

#include <gtest/gtest.h>

namespace titand {
namespace {

bool Echoes(const absl::Status& st, const std::string& input) {
  return std::string(st.message()).find(input) != std::string::npos;
}

TEST(RequestLimits, SessionIds) {
  RequestLimits l;
  EXPECT_TRUE(CheckSessionIdField("abc-1.x_Y", "session_id", false, l).ok());
  EXPECT_TRUE(CheckSessionIdField("", "session_id", true, l).ok());
  EXPECT_EQ(CheckSessionIdField("", "session_id", false, l).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckSessionIdField(std::string(128, 'a'), "session_id", false, l).ok());
  const std::string big(1 << 20, 'Q');
  absl::Status st = CheckSessionIdField(big, "session_id", false, l);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Echoes(st, "QQQQ"));
  EXPECT_LT(st.message().size(), 100u);
  st = CheckSessionIdField("a~b", "session_id", false, l);  // never names another tenant's key
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  l.max_id_length = 16;
  EXPECT_FALSE(CheckSessionIdField(std::string(17, 'a'), "session_id", false, l).ok());
}

TEST(RequestLimits, RequestIds) {
  RequestLimits l;
  l.max_id_length = 64;
  EXPECT_TRUE(CheckRequestIdField("req 1: {uuid}", false, l).ok());
  EXPECT_FALSE(CheckRequestIdField(std::string(65, 'r'), false, l).ok());
  EXPECT_FALSE(CheckRequestIdField("a\nb", false, l).ok());
  EXPECT_FALSE(CheckRequestIdField(std::string("a\0b", 3), false, l).ok());
  EXPECT_FALSE(CheckRequestIdField("\xc3\xa9", false, l).ok());
}

TEST(RequestLimits, GenerateRequests) {
  RequestLimits l;
  l.max_stop_strings = 2;
  l.max_stop_string_bytes = 4;
  l.max_chat_messages = 1;
  GenerateRequest r;
  r.decode.stop.stop_strings = {"ab", "cd"};
  r.messages = {{"user", "hi"}};
  EXPECT_TRUE(CheckGenerateLimits(r, l).ok());
  r.decode.stop.stop_strings.push_back("ef");
  EXPECT_EQ(CheckGenerateLimits(r, l).code(), absl::StatusCode::kInvalidArgument);
  r.decode.stop.stop_strings = {"abcdeZZZZ"};
  absl::Status st = CheckGenerateLimits(r, l);
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(Echoes(st, "ZZZZ"));
  r.decode.stop.stop_strings = {};
  r.messages.push_back({"user", "again"});
  EXPECT_FALSE(CheckGenerateLimits(r, l).ok());
  EXPECT_TRUE(RequestLimits{}.Validate().ok());
  RequestLimits bad;
  bad.max_id_length = 2;
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace titand
