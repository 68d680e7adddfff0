// Proto <-> engine types: presence of optional sampling fields, input forms, validation messages,
// final-chunk fields, deadlines.
#include "server/proto_convert.h"

#include <gtest/gtest.h>

#include <limits>

namespace titand {
namespace {

v1::GenerateRequest TextRequest(const std::string& text) {
  v1::GenerateRequest r;
  r.set_text(text);
  return r;
}

TEST(ProtoConvert, UnsetSamplingKeepsDefaultsAndZeroIsNotUnset) {
  GenerateRequest out;
  ASSERT_TRUE(FromProto(TextRequest("hi"), &out).ok());
  SamplingParams defaults;
  EXPECT_EQ(out.decode.sampling.temperature, defaults.temperature);
  EXPECT_EQ(out.decode.sampling.top_p, 1.f);
  EXPECT_EQ(out.decode.sampling.repetition_penalty, 1.f);
  EXPECT_EQ(out.decode.stop.max_tokens, kDefaultMaxTokens);
  EXPECT_FALSE(out.decode.stop.include_stop_str_in_output);
  EXPECT_FALSE(out.parse_special);

  v1::GenerateRequest r = TextRequest("hi");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_min_p(0.f);  // explicit zero: same as default, still accepted
  r.mutable_sampling()->set_repetition_penalty(1.3f);
  r.mutable_sampling()->set_seed(1234567890123ull);
  r.mutable_stopping()->set_max_tokens(7);
  r.mutable_stopping()->add_stop("\n\n");
  r.mutable_stopping()->add_stop_token_ids(2);
  r.mutable_stopping()->set_ignore_eos(true);
  r.mutable_stopping()->set_include_stop_str_in_output(true);
  r.set_parse_special_tokens(true);
  r.set_session_id("s1");
  r.set_request_id("req-9");
  r.set_logprobs(true);
  r.set_priority(3);
  ASSERT_TRUE(FromProto(r, &out).ok());
  EXPECT_FLOAT_EQ(out.decode.sampling.temperature, 0.7f);
  EXPECT_EQ(out.decode.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(out.decode.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(out.decode.sampling.repetition_penalty, 1.3f);
  EXPECT_EQ(out.decode.sampling.seed, 1234567890123ull);
  EXPECT_EQ(out.decode.stop.max_tokens, 7);
  EXPECT_EQ(out.decode.stop.stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(out.decode.stop.stop_token_ids, std::vector<int32_t>{2});
  EXPECT_TRUE(out.decode.stop.ignore_eos);
  EXPECT_TRUE(out.decode.stop.include_stop_str_in_output);
  EXPECT_TRUE(out.parse_special);
  EXPECT_EQ(out.session_id, "s1");
  EXPECT_EQ(out.request_id, "req-9");
  EXPECT_TRUE(out.decode.logprobs);
  EXPECT_EQ(out.priority, 3);
  EXPECT_EQ(*out.text, "hi");
}

TEST(ProtoConvert, InputForms) {
  GenerateRequest out;
  v1::GenerateRequest r;
  r.mutable_tokens()->add_ids(5);
  r.mutable_tokens()->add_ids(9);
  ASSERT_TRUE(FromProto(r, &out).ok());
  EXPECT_EQ(out.token_ids, (std::vector<int32_t>{5, 9}));
  EXPECT_FALSE(out.text.has_value());

  v1::GenerateRequest c;
  auto* m = c.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hello");
  ASSERT_TRUE(FromProto(c, &out).ok());
  ASSERT_EQ(out.messages.size(), 1u);
  EXPECT_EQ(out.messages[0].role, "user");
  EXPECT_EQ(out.messages[0].content, "hello");
  EXPECT_TRUE(out.token_ids.empty());  // FromProto resets the output
}

void ExpectInvalid(const v1::GenerateRequest& r, const std::string& field) {
  GenerateRequest out;
  absl::Status st = FromProto(r, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_NE(st.message().find(field), absl::string_view::npos) << st;
}

TEST(ProtoConvert, InvalidArgumentsNameTheField) {
  ExpectInvalid(v1::GenerateRequest(), "input");
  ExpectInvalid(TextRequest(""), "input.text");
  v1::GenerateRequest t;
  t.mutable_tokens();
  ExpectInvalid(t, "input.tokens");
  v1::GenerateRequest c;
  c.mutable_chat();
  ExpectInvalid(c, "input");
  v1::GenerateRequest mt = TextRequest("x");
  mt.mutable_stopping()->set_max_tokens(0);
  ExpectInvalid(mt, "stopping.max_tokens");
  v1::GenerateRequest tp = TextRequest("x");
  tp.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(tp, "sampling");
  v1::GenerateRequest te = TextRequest("x");
  te.mutable_sampling()->set_temperature(-1.f);
  ExpectInvalid(te, "sampling.temperature");
  // Every float field: NaN, +-inf and out-of-range values are INVALID_ARGUMENT naming that field.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf, 101.f}) {
    v1::GenerateRequest x = TextRequest("x");
    x.mutable_sampling()->set_temperature(bad);
    ExpectInvalid(x, "sampling.temperature");
  }
  for (float bad : {nan, inf, 0.f, 1.0001f}) {
    v1::GenerateRequest x = TextRequest("x");
    x.mutable_sampling()->set_top_p(bad);
    ExpectInvalid(x, "sampling.top_p");
  }
  for (float bad : {nan, -inf, -0.1f, 1.5f}) {
    v1::GenerateRequest x = TextRequest("x");
    x.mutable_sampling()->set_min_p(bad);
    ExpectInvalid(x, "sampling.min_p");
  }
  for (float bad : {nan, inf, 0.f, 1e-38f, 0.0099f, 101.f, -1.f}) {  // 1e-38: issue 10's overflow input
    v1::GenerateRequest x = TextRequest("x");
    x.mutable_sampling()->set_repetition_penalty(bad);
    ExpectInvalid(x, "sampling.repetition_penalty");
  }
  v1::GenerateRequest tk = TextRequest("x");
  tk.mutable_sampling()->set_top_k(-1);
  ExpectInvalid(tk, "sampling.top_k");
  v1::GenerateRequest sid = TextRequest("x");
  sid.mutable_stopping()->add_stop_token_ids(-2);
  ExpectInvalid(sid, "stopping.stop_token_ids[0]");
  v1::GenerateRequest bad_utf8 = TextRequest("x");
  bad_utf8.mutable_stopping()->add_stop("ok");
  bad_utf8.mutable_stopping()->add_stop(std::string("ok \xff\xfe ok"));
  ExpectInvalid(bad_utf8, "stopping.stop[1]: invalid UTF-8 at byte 3");
  v1::GenerateRequest ss = TextRequest("x");
  ss.mutable_stopping()->add_stop("");
  ExpectInvalid(ss, "stopping.stop");
}

TEST(ProtoConvert, ChunksAndFinal) {
  StreamChunk c;
  c.token_ids = {10, 11};
  c.text = "ab";
  c.logprobs = {-0.5f, -1.25f};
  v1::GenerateResponse out;
  ToProto(c, "s", &out);
  EXPECT_EQ(out.token_ids_size(), 2);
  EXPECT_EQ(out.token_ids(1), 11);
  EXPECT_EQ(out.text(), "ab");
  EXPECT_FLOAT_EQ(out.logprobs(1), -1.25f);
  EXPECT_EQ(out.session_id(), "s");
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_FALSE(out.has_usage());

  StreamChunk f;
  f.final = true;
  f.finish = EngineFinish::kStopSequence;
  f.usage = Usage{12, 5, 40, 17};
  f.timing = Timing{0.25, 0.5, 1.5};
  ToProto(f, "", &out);
  EXPECT_EQ(out.usage().session_tokens(), 0);  // stateless: nothing kept
  EXPECT_EQ(out.usage().committed_tokens(), 0);
  ToProto(f, "s", &out);
  EXPECT_EQ(out.token_ids_size(), 0);  // Clear() dropped the previous message
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(out.usage().prompt_tokens(), 12);
  EXPECT_EQ(out.usage().completion_tokens(), 5);
  EXPECT_EQ(out.usage().session_tokens(), 40);
  EXPECT_EQ(out.usage().committed_tokens(), 17);
  EXPECT_DOUBLE_EQ(out.timing().queue_seconds(), 0.25);
  EXPECT_DOUBLE_EQ(out.timing().time_to_first_token_seconds(), 0.5);
  EXPECT_DOUBLE_EQ(out.timing().total_seconds(), 1.5);
}

TEST(ProtoConvert, EnumsAndLabels) {
  EXPECT_EQ(ToProto(EngineFinish::kMaxTokens), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(ToProto(EngineFinish::kEos), v1::FINISH_REASON_EOS);
  EXPECT_EQ(ToProto(EngineFinish::kCancelled), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(ToProto(EngineFinish::kDeadline), v1::FINISH_REASON_DEADLINE);
  EXPECT_EQ(ToProto(EngineFinish::kError), v1::FINISH_REASON_ERROR);
  EXPECT_EQ(ToProto(EngineFinish::kStopSequence), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_STREQ(FinishReasonName(EngineFinish::kCancelled), "cancelled");
  EXPECT_STREQ(FinishReasonName(EngineFinish::kStopSequence), "stop_sequence");
  EXPECT_EQ(ToProto(SessionTier::kHost), v1::SESSION_TIER_HOST);
  SessionInfo info{"abc", 42, 1000, SessionTier::kDisk, true, 3.5, 1700000000};
  v1::Session s;
  ToProto(info, &s);
  EXPECT_EQ(s.id(), "abc");
  EXPECT_EQ(s.history_tokens(), 42);
  EXPECT_EQ(s.state_bytes(), 1000);
  EXPECT_EQ(s.tier(), v1::SESSION_TIER_DISK);
  EXPECT_TRUE(s.busy());
  EXPECT_DOUBLE_EQ(s.idle_seconds(), 3.5);
  EXPECT_EQ(s.created_unix(), 1700000000);
  EXPECT_EQ(s.error(), "");
  info.error = "session x: unreadable snapshot: checksum mismatch";
  ToProto(info, &s);
  EXPECT_EQ(s.error(), info.error);
}

TEST(ProtoConvert, Deadlines) {
  auto sys_now = std::chrono::system_clock::now();
  auto steady_now = std::chrono::steady_clock::now();
  auto d = SteadyDeadline(sys_now + std::chrono::milliseconds(1500), sys_now, steady_now);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(*d - steady_now).count(), 1500);
  // Already past: a deadline in the past stays in the past.
  auto past = SteadyDeadline(sys_now - std::chrono::seconds(2), sys_now, steady_now);
  ASSERT_TRUE(past.has_value());
  EXPECT_LT(*past, steady_now);
  // gRPC's "no deadline".
  EXPECT_FALSE(SteadyDeadline(std::chrono::system_clock::time_point::max(), sys_now, steady_now).has_value());
}

}  // namespace
}  // namespace titand
