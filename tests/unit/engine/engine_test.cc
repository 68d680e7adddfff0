// Engine over a tiny random-weight model with a byte-level ChatML tokenizer. The reference is
// Generate() (core/runtime/generate.h) on an identical model, one cursor per conversation: the engine's
// batched, chunked, interleaved execution must stream the same greedy tokens and text.
#include "core/engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/runtime/generate.h"
#include "core/session/snapshot.h"
#include "core/runtime/runtime.h"
#include "core/tokenizer/byte_map.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/prompt_builder.h"
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
    DecodeParams o;
    o.stop.max_tokens = max_tokens;
    auto r = Generate(*ref_->model, *ref_->tokenizer, cur, prompt, o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }
  // A chat turn as a session must commit it: Generate, then the history made the template's rendering
  // of the turn with the streamed reply (prompt_builder.h). Returns the result and the committed count.
  GenerateResult RefChatTurn(SessionCursor& cur, const std::string& user, bool first, int max_tokens,
                             int64_t* committed) {
    const SessionCursor pre = cur.Fork();
    const std::vector<int32_t> prompt = ChatIds(user, first);
    GenerateResult r = RefTurn(cur, prompt, max_tokens);
    std::vector<int32_t> have = prompt;
    have.insert(have.end(), r.tokens.begin(), r.tokens.end());
    auto target = ChatTurnTokens(*ref_->tokenizer, {{"user", user}}, r.text, PromptOptions{first, false});
    EXPECT_TRUE(target.ok()) << target.status();
    EXPECT_TRUE(CommitTokens(*ref_->model, cur, pre, have, *target).ok());
    *committed = static_cast<int64_t>(target->size());
    return r;
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
      req.decode.stop.max_tokens = 6 + 3 * s;
      req.decode.logprobs = true;
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
      int64_t committed = 0;
      GenerateResult want = s == 0 ? RefChatTurn(ref[s], absl::StrCat("turn ", t, " of session ", s), t == 0, 6, &committed)
                                   : RefTurn(ref[s], prompts[s], 6 + 3 * s);
      if (s != 0) committed = static_cast<int64_t>(prompts[s].size() + want.tokens.size());
      const Stream& got = *streams[s];
      EXPECT_EQ(got.final.usage.committed_tokens, committed) << "session " << s << " turn " << t;
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
  req.decode.stop.max_tokens = 10;
  ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
  st.Wait();
  SessionCursor fresh{ref_->model->NewState(), {}};
  EXPECT_EQ(st.tokens, RefTurn(fresh, ref_->tokenizer->Encode("stateless prompt"), 10).tokens);
}

// Issue 10, fault 5: a cancelled turn leaves nothing in the session (not its prompt, not the tokens the
// client may not have received); the next turn continues from the pre-turn history.
TEST_F(EngineTest, CancelledTurnIsRolledBack) {
  auto e = Start(EngineConfig{});
  ASSERT_TRUE(e->CreateSession("s").ok());
  // Turn 1 completes and commits.
  Stream st0;
  GenerateRequest req;
  req.session_id = "s";
  req.text = "first";
  req.decode.stop.max_tokens = 4;
  ASSERT_TRUE(e->Enqueue(req, st0.Callback()).ok());
  st0.Wait();
  SessionCursor ref{ref_->model->NewState(), {}};
  EXPECT_EQ(st0.tokens, RefTurn(ref, ref_->tokenizer->Encode("first"), 4).tokens);
  EXPECT_EQ(st0.final.usage.committed_tokens, ref.history_tokens());
  const int64_t before = ref.history_tokens();
  // Turn 2 is aborted mid-stream.
  Stream st;
  st.hook = [&](const StreamChunk& c) {
    if (!c.final && st.tokens.size() == 3) {
      EXPECT_TRUE(e->Abort("label-1").ok());
    }
  };
  req.request_id = "label-1";
  req.text = "cancel me";
  req.decode.stop.max_tokens = 2000;
  req.decode.stop.ignore_eos = true;
  ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
  st.Wait();
  EXPECT_EQ(st.final.finish, EngineFinish::kCancelled);
  EXPECT_LT(st.tokens.size(), 10u);
  EXPECT_GE(st.tokens.size(), 3u);
  EXPECT_EQ(st.final.usage.committed_tokens, 0);
  EXPECT_EQ(st.final.usage.session_tokens, before);
  EXPECT_EQ(e->Abort("label-1").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->GetSession("s")->history_tokens, before);
  // The session continues exactly as if turn 2 never happened.
  Stream st2;
  req.request_id.clear();
  req.text = " next";
  req.decode.stop.max_tokens = 7;
  req.decode.stop.ignore_eos = false;
  ASSERT_TRUE(e->Enqueue(req, st2.Callback()).ok());
  st2.Wait();
  EXPECT_EQ(st2.tokens, RefTurn(ref, ref_->tokenizer->Encode(" next"), 7).tokens);
  EXPECT_EQ(st2.final.usage.session_tokens, ref.history_tokens());
}

// Turn-end write-through runs on the session writer, not the engine thread: while one session's turn end
// is held up (here its final-chunk callback, which runs on a writer thread right after the snapshot is
// written), another session's whole turn streams and ends. Each final chunk arrives only once its
// snapshot file holds the turn, and carries no token (the last one streamed before the write); a turn
// refused before it ran writes nothing.
TEST_F(EngineTest, WriteThroughEndsTurnsOffTheEngineThread) {
  EngineConfig c;
  c.session_dir = dir_.string();
  c.session_write_threads = 2;
  c.max_prompt_tokens = 64;
  auto e = Start(c);
  ASSERT_TRUE(e->CreateSession("held").ok());
  ASSERT_TRUE(e->CreateSession("other").ok());
  auto on_disk = [&](const std::string& id) -> int64_t {
    auto h = ReadSnapshotHeaderFile((dir_ / (id + ".tsession")).string());
    return h.ok() ? h->history_tokens() : -1;
  };
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  int64_t held_file_at_final = -2;
  Stream held;
  bool held_final_had_tokens = true;
  held.hook = [&](const StreamChunk& ch) {
    if (!ch.final) return;
    held_final_had_tokens = !ch.token_ids.empty();  // the last token streamed before the write
    held_file_at_final = on_disk("held");
    entered.set_value();
    released.wait_for(std::chrono::seconds(60));
  };
  GenerateRequest req;
  req.session_id = "held";
  req.text = "held turn";
  req.decode.stop.max_tokens = 5;
  ASSERT_TRUE(e->Enqueue(req, held.Callback()).ok());
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);

  Stream other;
  int64_t other_file_at_final = -2;
  other.hook = [&](const StreamChunk& ch) {
    if (ch.final) other_file_at_final = on_disk("other");
  };
  req.session_id = "other";
  req.text = "other turn";
  req.decode.stop.max_tokens = 6;
  ASSERT_TRUE(e->Enqueue(req, other.Callback()).ok());
  const bool other_done = other.done.WaitForNotificationWithTimeout(absl::Seconds(60));
  release.set_value();
  held.Wait();
  ASSERT_TRUE(other_done) << "a turn could not finish while another turn's end was held up";

  SessionCursor ref_held{ref_->model->NewState(), {}}, ref_other{ref_->model->NewState(), {}};
  EXPECT_EQ(held.tokens, RefTurn(ref_held, ref_->tokenizer->Encode("held turn"), 5).tokens);
  EXPECT_EQ(other.tokens, RefTurn(ref_other, ref_->tokenizer->Encode("other turn"), 6).tokens);
  EXPECT_EQ(held_file_at_final, ref_held.history_tokens());
  EXPECT_FALSE(held_final_had_tokens);
  EXPECT_EQ(other_file_at_final, ref_other.history_tokens());
  EXPECT_EQ(held.final.usage.session_tokens, ref_held.history_tokens());

  // Refused at admission (prompt over the limit): nothing written, the file is still the last turn.
  const int64_t writes = e->Stats().disk_writes;
  req.text = std::string(100, 'x');
  EXPECT_EQ(e->Enqueue(req, [](StreamChunk) {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Stats().disk_writes, writes);
  EXPECT_EQ(on_disk("other"), ref_other.history_tokens());
  EXPECT_TRUE(e->Shutdown(/*drain=*/true).ok());
  EXPECT_EQ(e->Stats().disk_writes, writes);  // write-through left the drain nothing to write
}

// Issue 10, fault 5: a long prompt cut by its deadline in the middle of its chunked prefill keeps none of
// its tokens (the reported input: 1,500 prompt tokens, 256 of them kept); a retry does not duplicate.
TEST_F(EngineTest, DeadlineMidPrefillKeepsNoPromptTokens) {
  EngineConfig c;
  c.max_running = 1;
  c.max_step_tokens = 32;  // ~47 steps of prefill: the deadline passes in the middle
  c.prefill_chunk = 32;
  auto e = Start(c);
  ASSERT_TRUE(e->CreateSession("p").ok());
  std::string prompt;
  for (int i = 0; prompt.size() < 1500; ++i) prompt += static_cast<char>('a' + i % 26);
  GenerateRequest req;
  req.session_id = "p";
  req.text = prompt;
  req.decode.stop.max_tokens = 3;
  int deadlines = 0;
  int64_t history = 0;  // what the session must hold: only turns that finished add to it
  for (int ms : {2, 10, 40}) {
    Stream st;
    req.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
    st.Wait();
    if (st.final.finish == EngineFinish::kDeadline) {
      ++deadlines;
      EXPECT_EQ(st.final.usage.committed_tokens, 0);
    } else {  // a fast machine finished the turn in time: it committed whole
      EXPECT_EQ(st.final.finish, EngineFinish::kMaxTokens);
      EXPECT_EQ(st.final.usage.committed_tokens, 1500 + 3);
      history += 1500 + 3;
    }
    EXPECT_EQ(e->GetSession("p")->history_tokens, history) << ms << " ms";
  }
  EXPECT_GT(deadlines, 0);
  Stream ok;
  req.deadline.reset();
  ASSERT_TRUE(e->Enqueue(req, ok.Callback()).ok());
  ok.Wait();
  EXPECT_EQ(ok.final.finish, EngineFinish::kMaxTokens);
  EXPECT_EQ(ok.final.usage.committed_tokens, 1500 + 3);
  EXPECT_EQ(e->GetSession("p")->history_tokens, history + 1500 + 3);
}

// stop_token_ids finish as STOP_SEQUENCE (not EOS); the stop id is output and committed; its text is
// output only with include_stop_str_in_output. End-of-turn ids finish as EOS.
TEST_F(EngineTest, StopTokenIdsFinishAsStopSequence) {
  auto e = Start(EngineConfig{});
  GenerateRequest req;
  req.text = "stop ids";
  req.decode.stop.max_tokens = 12;
  req.decode.stop.ignore_eos = true;
  Stream free_run;
  ASSERT_TRUE(e->Enqueue(req, free_run.Callback()).ok());
  free_run.Wait();
  ASSERT_GE(free_run.tokens.size(), 3u);
  const int32_t target = free_run.tokens[2];
  const size_t first = std::find(free_run.tokens.begin(), free_run.tokens.end(), target) - free_run.tokens.begin();
  for (bool include : {false, true}) {
    Stream st;
    req.decode.stop.stop_token_ids = {target};
    req.decode.stop.include_stop_str_in_output = include;
    ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
    st.Wait();
    EXPECT_EQ(st.final.finish, EngineFinish::kStopSequence);
    EXPECT_EQ(st.tokens, std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + first + 1));
    const std::string before = ref_->tokenizer->Decode(std::vector<int32_t>(st.tokens.begin(), st.tokens.end() - 1));
    const std::string with = ref_->tokenizer->Decode(st.tokens);
    const bool ascii = std::all_of(with.begin(), with.end(), [](char ch) { return static_cast<uint8_t>(ch) < 0x80; });
    if (target < 256 && ascii) {  // plain ASCII bytes: the text is the bytes themselves
      EXPECT_EQ(st.text, include ? with : before);
    }
  }
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
  big.decode.stop.max_tokens = 100000;
  big.decode.stop.ignore_eos = true;
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
  EXPECT_EQ(longrun.final.usage.committed_tokens, 0);  // all-or-nothing: the deadline rolled the turn back
  EXPECT_EQ(e->GetSession("busy")->history_tokens, 0);
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
      req.decode.stop.max_tokens = 5;
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
    req.decode.stop.max_tokens = 6;
    ASSERT_TRUE(e->Enqueue(req, st.Callback()).ok());
    st.Wait();
    EXPECT_EQ(st.tokens, RefTurn(ref[s], ref_->tokenizer->Encode(" and the second"), 6).tokens);
    EXPECT_EQ(st.final.usage.session_tokens, ref[s].history_tokens());
  }
}

}  // namespace
}  // namespace titand
