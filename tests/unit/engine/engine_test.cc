// Engine over a tiny random-weight model with a byte-level ChatML tokenizer. The reference is
// Generate() (core/runtime/generate.h) on an identical model, one cursor per conversation: the engine's
// batched, chunked, interleaved execution must stream the same greedy tokens and text.
#include "core/engine/engine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/runtime/generate.h"
#include "core/runtime/runtime.h"
#include "core/tokenizer/byte_map.h"
#include "core/tokenizer/chat_format.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand {
namespace {

constexpr char kTemplate[] = "{% for m in messages %}<|im_start|>{{m.role}}\n{{m.content}}<|im_end|>\n{% endfor %}";

ModelConfig TinyConfig() { return testing::TinyLlamaConfig(/*vocab_size=*/258, /*num_layers=*/2); }

std::unique_ptr<Runtime> TinyRuntime() {
  ModelConfig c = TinyConfig();
  auto w = testing::RandomLlamaWeights(c, /*seed=*/11, /*scale=*/0.5);
  auto src = MakeMapWeights(std::move(w));
  auto rt = std::make_unique<Runtime>();
  rt->config = c;
  rt->model_id = "tiny-engine-test";
  auto m = CausalLM::Create(c, *src, ModelOptions{});
  EXPECT_TRUE(m.ok()) << m.status();
  rt->model = std::move(m).value();
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(BytesToTokenSpelling(std::string(1, static_cast<char>(b))));
  spec.tokens.push_back("<|im_start|>");
  spec.tokens.push_back("<|im_end|>");
  spec.token_types.assign(256, kTokenNormal);
  spec.token_types.push_back(kTokenControl);
  spec.token_types.push_back(kTokenControl);
  spec.pre = "gpt2";
  spec.eos_id = 257;
  spec.chat_template = kTemplate;
  auto tok = Tokenizer::Create(std::move(spec));
  EXPECT_TRUE(tok.ok()) << tok.status();
  rt->tokenizer = std::move(tok).value();
  return rt;
}

// Collects one stream.
struct Stream {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<float> logprobs;
  StreamChunk final;
  int chunks = 0;
  absl::Notification done;
  std::function<void(const StreamChunk&)> hook;  // runs on the engine thread per chunk
  ChunkCallback Callback() {
    return [this](StreamChunk c) {
      ++chunks;
      tokens.insert(tokens.end(), c.token_ids.begin(), c.token_ids.end());
      text += c.text;
      logprobs.insert(logprobs.end(), c.logprobs.begin(), c.logprobs.end());
      if (hook) hook(c);
      if (c.final) {
        final = c;
        done.Notify();
      }
    };
  }
  void Wait() { ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60))); }
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("titand_engine_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ref_ = TinyRuntime();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<Engine> Start(EngineConfig c) {
    auto e = Engine::Create(c, TinyRuntime());
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(e).value();
  }
  // The reference turn: Generate on the conversation's own cursor.
  GenerateResult RefTurn(SessionCursor& cur, const std::vector<int32_t>& prompt, int max_tokens) {
    GenerateOptions o;
    o.max_tokens = max_tokens;
    auto r = Generate(*ref_->model, *ref_->tokenizer, cur, prompt, o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }
  std::vector<int32_t> ChatIds(const std::string& user, bool first) {
    auto f = DetectChatFormat(kTemplate);
    return ref_->tokenizer->Encode(RenderChat(*f, {{"user", user}}, true, kTemplate, first));
  }
  std::filesystem::path dir_;
  std::unique_ptr<Runtime> ref_;
};

TEST_F(EngineTest, GreedyConcurrentSessionsMatchGenerateOverTheWholeHistory) {
  EngineConfig c;
  c.max_running = 3;        // fewer slots than sessions: admission in waves
  c.max_step_tokens = 40;   // prompts are chunked across steps, interleaved with decodes
  c.prefill_chunk = 16;
  auto e = Start(c);
  const int kSessions = 5, kTurns = 3;
  std::vector<std::string> ids;
  std::vector<SessionCursor> ref(kSessions);
  for (int s = 0; s < kSessions; ++s) {
    auto info = e->CreateSession(s == 0 ? "chat-session" : "");
    ASSERT_TRUE(info.ok()) << info.status();
    ids.push_back(info->id);
    ref[s] = SessionCursor{ref_->model->NewState(), {}};
  }
  for (int t = 0; t < kTurns; ++t) {
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<std::vector<int32_t>> prompts;
    for (int s = 0; s < kSessions; ++s) {
      GenerateRequest req;
      req.session_id = ids[s];
      req.max_tokens = 6 + 3 * s;
      req.return_logprobs = true;
      const std::string user = absl::StrCat("turn ", t, " of session ", s, std::string(s * 9, 'x'));
      if (s == 0) {  // chat form: only this turn's messages are rendered
        req.messages = {{"user", user}};
        prompts.push_back(ChatIds(user, t == 0));
      } else if (s == 1) {
        prompts.push_back(ref_->tokenizer->Encode(user));
        req.token_ids = prompts.back();
      } else {
        req.text = user;
        prompts.push_back(ref_->tokenizer->Encode(user));
      }
      streams.push_back(std::make_unique<Stream>());
      auto id = e->Enqueue(req, streams.back()->Callback());
      ASSERT_TRUE(id.ok()) << id.status();
    }
    for (int s = 0; s < kSessions; ++s) {
      streams[s]->Wait();
      GenerateResult want = RefTurn(ref[s], prompts[s], 6 + 3 * s);
      const Stream& got = *streams[s];
      EXPECT_EQ(got.tokens, want.tokens) << "session " << s << " turn " << t;
      EXPECT_EQ(got.text, want.text) << "session " << s << " turn " << t;
      EXPECT_TRUE(got.final.error.ok()) << got.final.error;
      EXPECT_EQ(got.logprobs.size(), got.tokens.size());
      for (float lp : got.logprobs) EXPECT_LE(lp, 0.f);
      EXPECT_EQ(got.final.usage.prompt_tokens, static_cast<int64_t>(prompts[s].size()));
      EXPECT_EQ(got.final.usage.completion_tokens, static_cast<int64_t>(want.tokens.size()));
      EXPECT_EQ(got.final.usage.session_tokens, ref[s].history_tokens());
      EXPECT_EQ(got.final.finish, want.finish == FinishReason::kEos ? EngineFinish::kEos : EngineFinish::kMaxTokens);
      EXPECT_EQ(e->GetSession(ids[s])->history_tokens, ref[s].history_tokens());
    }
  }
  EXPECT_GT(e->Stats().steps, 0);
  // A stateless request equals Generate on a fresh cursor.
  Stream st;
  GenerateRequest req;
  req.text = "stateless prompt";
  req.max_tokens = 10;
  ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
  st.Wait();
  SessionCursor fresh{ref_->model->NewState(), {}};
  EXPECT_EQ(st.tokens, RefTurn(fresh, ref_->tokenizer->Encode("stateless prompt"), 10).tokens);
}

TEST_F(EngineTest, CancelMidStreamKeepsTheSessionUsable) {
  auto e = Start(EngineConfig{});
  ASSERT_TRUE(e->CreateSession("s").ok());
  Stream st;
  st.hook = [&](const StreamChunk& c) {
    if (!c.final && st.tokens.size() == 3) {
      EXPECT_TRUE(e->Abort("label-1").ok());
    }
  };
  GenerateRequest req;
  req.request_id = "label-1";
  req.session_id = "s";
  req.text = "cancel me";
  req.max_tokens = 2000;
  req.ignore_eos = true;
  ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
  st.Wait();
  EXPECT_EQ(st.final.finish, EngineFinish::kCancelled);
  EXPECT_LT(st.tokens.size(), 10u);
  EXPECT_EQ(e->Abort("label-1").code(), absl::StatusCode::kNotFound);
  // The session continues exactly: reference = Generate of the same tokens through one cursor.
  const auto prompt1 = ref_->tokenizer->Encode("cancel me");
  SessionCursor ref{ref_->model->NewState(), {}};
  GenerateOptions o;
  o.max_tokens = static_cast<int>(st.tokens.size());
  o.stop_at_eos = false;
  auto r1 = Generate(*ref_->model, *ref_->tokenizer, ref, prompt1, o, nullptr);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->tokens, st.tokens);
  EXPECT_EQ(e->GetSession("s")->history_tokens, ref.history_tokens());
  Stream st2;
  req.request_id.clear();
  req.text = " next";
  req.max_tokens = 7;
  req.ignore_eos = false;
  ASSERT_TRUE(e->Enqueue(req, st2.Callback()).ok());
  st2.Wait();
  EXPECT_EQ(st2.tokens, RefTurn(ref, ref_->tokenizer->Encode(" next"), 7).tokens);
}

TEST_F(EngineTest, DeadlineQueueFullBusyAndUnknownSession) {
  EngineConfig c;
  c.max_queue = 2;
  c.max_running = 1;
  c.max_step_tokens = 8;
  c.max_new_tokens = 100000;
  auto e = Start(c);
  // Past deadline: finishes with kDeadline without generating.
  Stream late;
  GenerateRequest lr;
  lr.text = "late";
  lr.deadline = std::chrono::steady_clock::now();
  ASSERT_TRUE(e->Enqueue(lr, late.Callback()).ok());
  late.Wait();
  EXPECT_EQ(late.final.finish, EngineFinish::kDeadline);
  // A long turn on session "busy" occupies the only slot.
  ASSERT_TRUE(e->CreateSession("busy").ok());
  Stream longrun;
  absl::Notification started;
  longrun.hook = [&](const StreamChunk& c) {
    if (!started.HasBeenNotified()) started.Notify();
  };
  GenerateRequest big;
  big.session_id = "busy";
  big.text = "long";
  big.max_tokens = 100000;
  big.ignore_eos = true;
  big.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  auto big_id = e->Enqueue(big, longrun.Callback());
  ASSERT_TRUE(big_id.ok());
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(e->Enqueue(big, [](StreamChunk) {}).status().code(), absl::StatusCode::kFailedPrecondition);
  GenerateRequest other;
  other.session_id = "nope";
  other.text = "x";
  EXPECT_EQ(e->Enqueue(other, [](StreamChunk) {}).status().code(), absl::StatusCode::kNotFound);
  GenerateRequest bad;
  bad.text = "a";
  bad.token_ids = {1};
  EXPECT_EQ(e->Enqueue(bad, [](StreamChunk) {}).status().code(), absl::StatusCode::kInvalidArgument);
  other.session_id.clear();
  Stream q1, q2;
  ASSERT_TRUE(e->Enqueue(other, q1.Callback()).ok());
  ASSERT_TRUE(e->Enqueue(other, q2.Callback()).ok());
  EXPECT_EQ(e->Enqueue(other, [](StreamChunk) {}).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(e->Stats().waiting, 2);
  longrun.Wait();  // the deadline ends it
  EXPECT_EQ(longrun.final.finish, EngineFinish::kDeadline);
  EXPECT_LT(longrun.tokens.size(), 100000u);
  q1.Wait();
  q2.Wait();
  EXPECT_TRUE(q1.final.error.ok());
  EXPECT_EQ(e->GetSession("busy")->history_tokens, static_cast<int64_t>(4 + longrun.tokens.size()));
  EXPECT_TRUE(e->Shutdown(false).ok());
  EXPECT_EQ(e->Enqueue(other, [](StreamChunk) {}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, DrainWritesSnapshotsAndANewEngineContinues) {
  EngineConfig c;
  c.session_dir = dir_.string();
  std::vector<SessionCursor> ref;
  {
    auto e = Start(c);
    ASSERT_TRUE(e->WarmUp().ok());
    for (int s = 0; s < 2; ++s) {
      ASSERT_TRUE(e->CreateSession("d" + std::to_string(s)).ok());
      Stream st;
      GenerateRequest req;
      req.session_id = "d" + std::to_string(s);
      req.text = absl::StrCat("first turn ", s);
      req.max_tokens = 5;
      ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
      st.Wait();
      ref.push_back(SessionCursor{ref_->model->NewState(), {}});
      EXPECT_EQ(st.tokens, RefTurn(ref.back(), ref_->tokenizer->Encode(*req.text), 5).tokens);
    }
    EXPECT_TRUE(e->Shutdown(/*drain=*/true).ok());
    EXPECT_EQ(e->Stats().sessions_disk, 2);
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ / "d0.tsession"));
  auto e = Start(c);
  auto list = e->ListSessions();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ((*list)[s].tier, SessionTier::kDisk);
    EXPECT_EQ((*list)[s].history_tokens, ref[s].history_tokens());
    Stream st;
    GenerateRequest req;
    req.session_id = "d" + std::to_string(s);
    req.text = " and the second";
    req.max_tokens = 6;
    ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
    st.Wait();
    EXPECT_EQ(st.tokens, RefTurn(ref[s], ref_->tokenizer->Encode(" and the second"), 6).tokens);
    EXPECT_EQ(st.final.usage.session_tokens, ref[s].history_tokens());
  }
}

}  // namespace
}  // namespace titand
