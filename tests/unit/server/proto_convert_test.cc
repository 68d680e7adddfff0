// Proto <-> engine types: presence of optional sampling fields, input forms, validation messages,
// final-chunk fields, deadlines.
#include "server/proto_convert.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(out.sampling.temperature, defaults.temperature);
  EXPECT_EQ(out.sampling.top_p, 1.f);
  EXPECT_EQ(out.sampling.repetition_penalty, 1.f);
  EXPECT_EQ(out.max_tokens, 128);

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
  r.set_session_id("s1");
  r.set_request_id("req-9");
  r.set_logprobs(true);
  r.set_priority(3);
  ASSERT_TRUE(FromProto(r, &out).ok());
  EXPECT_FLOAT_EQ(out.sampling.temperature, 0.7f);
  EXPECT_EQ(out.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(out.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(out.sampling.repetition_penalty, 1.3f);
  EXPECT_EQ(out.sampling.seed, 1234567890123ull);
  EXPECT_EQ(out.max_tokens, 7);
  EXPECT_EQ(out.stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(out.stop_token_ids, std::vector<int32_t>{2});
  EXPECT_TRUE(out.ignore_eos);
  EXPECT_EQ(out.session_id, "s1");
  EXPECT_EQ(out.request_id, "req-9");
  EXPECT_TRUE(out.return_logprobs);
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
  t.mutable_tokens()->add_ids(-3);
  ExpectInvalid(t, "input.tokens");
  v1::GenerateRequest c;
  c.mutable_chat()->add_messages()->set_role("robot");
  ExpectInvalid(c, "input.chat");
  v1::GenerateRequest mt = TextRequest("x");
  mt.mutable_stopping()->set_max_tokens(0);
  ExpectInvalid(mt, "stopping.max_tokens");
  v1::GenerateRequest tp = TextRequest("x");
  tp.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(tp, "sampling");
  v1::GenerateRequest te = TextRequest("x");
  te.mutable_sampling()->set_temperature(-1.f);
  ExpectInvalid(te, "sampling");
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
  f.usage = Usage{12, 5, 40};
  f.timing = Timing{0.25, 0.5, 1.5};
  ToProto(f, "", &out);
  EXPECT_EQ(out.usage().session_tokens(), 0);  // stateless: nothing kept
  ToProto(f, "s", &out);
  EXPECT_EQ(out.token_ids_size(), 0);  // Clear() dropped the previous message
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(out.usage().prompt_tokens(), 12);
  EXPECT_EQ(out.usage().completion_tokens(), 5);
  EXPECT_EQ(out.usage().session_tokens(), 40);
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
  EXPECT_STREQ(FinishLabel(EngineFinish::kCancelled), "cancelled");
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
