// The engine thread: intake -> cancellations/deadlines -> scheduler plan -> admission -> ONE model
// forward over every scheduled sequence -> per-sequence sampling and streaming.
//
// Pending-token invariant (core/model/sequence_state.h), per turn with cursor (state, pending p):
//   feed = p + prompt; all of it is fed (in chunks), the last chunk's logits give token 1; each decode
//   step feeds the previously sampled token. At the end the last sampled token is the new pending one,
//   exactly as Generate() leaves it. max_tokens == 0 feeds all but the last token, which stays pending.
//
// Turns are all-or-nothing. A session turn works on the session's cursor but keeps a deep copy of the
// pre-turn cursor (`pre_turn`, made at admission) until it ends. A turn that finishes normally (max
// tokens, EOS, stop) commits: its prompt and every generated token (all were delivered: the final
// message carries the last ones) — and for a chat turn the history is then made exactly the template's
// rendering of the turn with the delivered reply as the assistant message, closed (CommitTurn). A turn
// that is cancelled, passes its deadline or fails (a model error included) restores the pre-turn cursor:
// nothing of it stays, prompt included. usage.committed_tokens says which happened.
#include <c10/util/Exception.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/engine/engine_impl.h"
#include "core/common/status.h"
#include "core/runtime/generate.h"
#include "core/tokenizer/prompt_builder.h"

namespace titand {
namespace {

// The last logits row of each output i with sample[i], on the host as contiguous fp32 [vocab] in rows[i].
// CPU fp32 rows are used in place (no copy); other devices/dtypes are stacked and moved in ONE copy per
// step (one device-to-host transfer for the whole batch, not one per sequence).
void HostLogits(const std::vector<at::Tensor>& out, const std::vector<bool>& sample, std::vector<at::Tensor>& rows) {
  std::vector<at::Tensor> last;
  std::vector<size_t> which;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!sample[i]) continue;
    last.push_back(out[i][-1]);
    which.push_back(i);
  }
  if (last.empty()) return;
  if (last[0].device().is_cpu() && last[0].scalar_type() == at::kFloat) {
    for (size_t j = 0; j < last.size(); ++j) rows[which[j]] = last[j].contiguous();
    return;
  }
  const at::Tensor host = at::stack(last).to(at::kCPU, at::kFloat).contiguous();
  for (size_t j = 0; j < which.size(); ++j) rows[which[j]] = host[j];
}

}  // namespace

bool EngineImpl::Intake() {
  std::deque<std::unique_ptr<LiveRequest>> in;
  bool stopping, draining;
  {
    absl::MutexLock lock(&mu_);
    in.swap(inbox_);
    stopping = stopping_;
    draining = draining_;
  }
  for (auto& r : in) {
    const RequestId id = r->id;
    live_.emplace(id, std::move(r));
  }
  if (stopping && !draining) {
    std::vector<RequestId> ids;
    for (auto& [id, r] : live_) ids.push_back(id);
    for (RequestId id : ids) Finish(id, EngineFinish::kCancelled, absl::CancelledError("engine shut down"));
    return false;
  }
  return !(stopping && live_.empty());
}

void EngineImpl::ExpireAndCancel() {
  std::set<RequestId> cancel;
  {
    absl::MutexLock lock(&mu_);
    cancel.swap(cancel_);
  }
  const SteadyTime now = std::chrono::steady_clock::now();
  std::vector<std::pair<RequestId, EngineFinish>> out;
  for (auto& [id, r] : live_) {
    if (cancel.count(id)) {
      out.emplace_back(id, EngineFinish::kCancelled);
    } else if (r->req.deadline && now >= *r->req.deadline) {
      out.emplace_back(id, EngineFinish::kDeadline);
    }
  }
  for (auto [id, f] : out) Finish(id, f);
  if (now - last_sweep_ > std::chrono::seconds(1)) {
    store_->SweepExpired();
    last_sweep_ = now;
  }
}

void EngineImpl::Loop() {
  UseIntraOpThreads(rt_->intra_op_threads);  // the one thread that computes with intra-op threads (runtime.h)
  while (Intake()) {
    ExpireAndCancel();
    std::vector<SchedItem> items;
    items.reserve(live_.size());
    for (auto& [id, r] : live_) {
      SchedItem it;
      it.id = id;
      it.priority = r->req.priority;
      it.arrival = r->arrival;
      it.running = r->running;
      // Before admission the pending token is unknown: count one for a session (the plan is clipped).
      it.prefill_remaining = r->running ? static_cast<int64_t>(r->feed.size() - r->fed)
                                        : static_cast<int64_t>(r->prompt.size()) + (r->req.session_id.empty() ? 0 : 1);
      if (!r->running && it.prefill_remaining == 0) it.prefill_remaining = 1;
      items.push_back(it);
    }
    StepPlan plan = scheduler_.Plan(items);
    if (plan.empty()) {
      absl::MutexLock lock(&mu_);
      auto has_work = [](EngineImpl* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
        return !e->inbox_.empty() || !e->cancel_.empty() || e->stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(+has_work, this), absl::Milliseconds(live_.empty() ? 200 : 5));
      continue;
    }
    for (RequestId id : plan.admitted) Admit(*live_.at(id));
    RunStep(plan);
  }
}

void EngineImpl::Admit(LiveRequest& r) {
  {
    absl::MutexLock lock(&mu_);
    --waiting_;
    ++running_;
  }
  r.running = true;
  r.scheduled = std::chrono::steady_clock::now();
  if (!r.req.session_id.empty()) {
    auto cur = store_->Materialize(r.req.session_id);
    if (!cur.ok()) return Finish(r.id, EngineFinish::kError, cur.status());
    r.cur = *cur;
  } else {
    r.own = SessionCursor{rt_->model->NewState(), {}};
    r.cur = &r.own;
  }
  r.saved_pending = r.cur->pending;
  if (!r.req.session_id.empty()) r.pre_turn = r.cur->Fork();
  std::vector<int32_t> seq = r.cur->pending;
  seq.insert(seq.end(), r.prompt.begin(), r.prompt.end());
  if (seq.empty()) {
    return Finish(r.id, EngineFinish::kError, absl::InvalidArgumentError("empty prompt and nothing pending in the session"));
  }
  r.prefill_only = r.req.decode.stop.max_tokens == 0;
  r.feed = seq;
  if (r.prefill_only) r.feed.pop_back();
  r.cur->pending.clear();
  r.dec = std::make_unique<Decoder>(rt_->tokenizer.get(), r.req.decode, seq);
  if (r.feed.empty()) Finish(r.id, EngineFinish::kMaxTokens);  // prefill-only of one token: nothing to run
}

void EngineImpl::RunStep(const StepPlan& plan) {
  struct Slot {
    LiveRequest* r;
    size_t n;        // prompt tokens fed (0 = decode)
    bool sample;
  };
  std::vector<ForwardInput> in;
  std::vector<Slot> slots;
  for (RequestId id : plan.decode) {
    auto it = live_.find(id);
    if (it == live_.end() || !it->second->dec || it->second->dec->generated() == 0) continue;
    LiveRequest& r = *it->second;
    in.push_back(ForwardInput{{r.dec->last()}, &r.cur->state, false});
    slots.push_back({&r, 0, true});
  }
  for (auto [id, planned] : plan.prefill) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    LiveRequest& r = *it->second;
    const size_t n = std::min<size_t>(static_cast<size_t>(planned), r.feed.size() - r.fed);
    if (n == 0) continue;
    in.push_back(ForwardInput{std::vector<int32_t>(r.feed.begin() + r.fed, r.feed.begin() + r.fed + n), &r.cur->state, false});
    slots.push_back({&r, n, r.fed + n == r.feed.size() && !r.prefill_only});
  }
  if (in.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    ++steps_;
    last_batch_ = static_cast<int64_t>(in.size());
  }
  absl::StatusOr<std::vector<at::Tensor>> out;
  std::vector<at::Tensor> rows(in.size());
  try {
    out = rt_->model->Forward(in);
    if (out.ok()) {
      std::vector<bool> sample(slots.size());
      for (size_t i = 0; i < slots.size(); ++i) sample[i] = slots[i].sample;
      HostLogits(*out, sample, rows);
    }
  } catch (const c10::Error& e) {
    out = absl::InternalError(absl::StrCat("model forward failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    out = absl::InternalError(absl::StrCat("model forward failed: ", e.what()));
  }
  if (!out.ok()) {
    // The states of this step's sequences may be half advanced: their turns end with an error and their
    // sessions go back to the pre-turn copy; sequences not in this step are untouched.
    for (const Slot& s : slots) Finish(s.r->id, EngineFinish::kError, out.status());
    return;
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    LiveRequest& r = *slots[i].r;
    r.fed += slots[i].n;
    if (r.prefill_only && r.fed == r.feed.size()) {
      Finish(r.id, EngineFinish::kMaxTokens);
      continue;
    }
    if (!slots[i].sample) continue;
    TokenOutcome o = r.dec->Next(rows[i].data_ptr<float>(), rows[i].size(0));
    if (!r.has_first_token) {
      r.has_first_token = true;
      r.first_token = std::chrono::steady_clock::now();
    }
    if (o.done) {
      Finish(r.id, o.finish, absl::OkStatus(), false, &o);
    } else {
      StreamChunk c;
      c.token_ids = {o.id};
      c.text = std::move(o.delta);
      if (r.req.decode.logprobs) c.logprobs = {o.logprob};
      r.cb(std::move(c));
    }
  }
}

void EngineImpl::Finish(RequestId id, EngineFinish f, absl::Status error, bool drop_session, const TokenOutcome* last) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  std::unique_ptr<LiveRequest> r = std::move(it->second);
  live_.erase(it);
  StreamChunk c;
  c.final = true;
  c.finish = error.ok() ? f : EngineFinish::kError;
  c.error = error;
  if (last) {
    c.token_ids = {last->id};
    c.text = last->delta;
    if (r->req.decode.logprobs) c.logprobs = {last->logprob};
  }
  const bool normal = error.ok() && (f == EngineFinish::kMaxTokens || f == EngineFinish::kEos ||
                                     f == EngineFinish::kStopSequence);
  bool turn_committed = false;  // the session's state changed (shared tier: write it through)
  if (r->cur && r->pre_turn && !drop_session) {
    absl::StatusOr<int64_t> committed = normal ? CommitTurn(*r) : absl::StatusOr<int64_t>(0);
    if (!committed.ok()) {
      c.finish = EngineFinish::kError;
      c.error = committed.status();
    }
    if (!normal || !committed.ok()) {
      *r->cur = std::move(*r->pre_turn);  // nothing of the turn stays
    } else {
      c.usage.committed_tokens = *committed;
      turn_committed = true;
    }
  } else if (r->cur && !drop_session && r->dec && r->dec->generated() > 0) {
    r->cur->pending = {r->dec->last()};  // stateless: keep the invariant (the cursor is dropped anyway)
  }
  c.usage.prompt_tokens = static_cast<int64_t>(r->prompt.size());
  c.usage.completion_tokens = r->dec ? r->dec->generated() : 0;
  if (r->cur && !drop_session) c.usage.session_tokens = r->cur->history_tokens();
  const bool session = !r->req.session_id.empty();
  if (session && !r->cur && !drop_session) {
    auto info = store_->Get(r->req.session_id);
    if (info.ok()) c.usage.session_tokens = info->history_tokens;
  }
  const bool changed = turn_committed;
  if (r->cur && session && !drop_session) {
    // The state may be a decode slot's rows (core/model/decode_slots.h) or rows of a stacked batch
    // (core/model/batch_rows.h): give it its own storage and the slot back, so a parked session pins
    // neither. On failure (out of memory) it keeps its views (and its slot until it is destroyed).
    try {
      r->cur->state.Compact();
    } catch (const std::exception&) {
    }
  }
  r->cur = nullptr;
  const SteadyTime now = std::chrono::steady_clock::now();
  auto secs = [](SteadyTime a, SteadyTime b) { return std::chrono::duration<double>(b - a).count(); };
  c.timing.total_seconds = secs(r->enqueued, now);
  c.timing.queue_seconds = r->running ? secs(r->enqueued, r->scheduled) : c.timing.total_seconds;
  c.timing.ttft_seconds = r->has_first_token ? secs(r->enqueued, r->first_token) : 0;
  {
    absl::MutexLock lock(&mu_);
    alive_.erase(id);
    cancel_.erase(id);
    auto l = labels_.find(r->req.request_id);
    if (l != labels_.end() && l->second == id) labels_.erase(l);
    if (r->running) --running_; else --waiting_;
  }
  const std::string& sid = r->req.session_id;
  const TurnEnd end = drop_session ? TurnEnd::kDrop : changed ? TurnEnd::kChanged : TurnEnd::kUnchanged;
  const bool write_first = session && !drop_session && (shared_ || (end == TurnEnd::kChanged && writer_));
  if (write_first && !c.token_ids.empty()) {
    // The turn's end waits for a write: its last token streams now like every other token (the streams'
    // inter-token latency does not include the disk); only the final message waits.
    StreamChunk last_token;
    last_token.token_ids = std::move(c.token_ids);
    last_token.text = std::move(c.text);
    last_token.logprobs = std::move(c.logprobs);
    c.token_ids.clear();
    c.text.clear();
    c.logprobs.clear();
    r->cb(std::move(last_token));
  }
  if (session && shared_ && !drop_session) {
    // Write-through off the engine thread: the session stays pinned until its state is committed (or
    // refused), then the final chunk says where the state stands.
    SessionStore* store = store_.get();
    shared_->EndTurn(
        sid, r->lease_token, changed, [store, sid] { return store->Serialize(sid); },
        [store, sid, end, cb = std::move(r->cb), c = std::move(c)](SharedWrite w) mutable {
          store->Unpin(sid, w == SharedWrite::kRejected ? TurnEnd::kDrop : end);
          c.shared = w;
          cb(std::move(c));
        });
    return;
  }
  if (write_first) {
    // Write-through off the engine thread: the session stays pinned until its snapshot is durable, then
    // the final chunk goes out (core/engine/session_writer.h).
    writer_->Post([store = store_.get(), sid, cb = std::move(r->cb), c = std::move(c)]() mutable {
      store->Unpin(sid, TurnEnd::kChanged);
      cb(std::move(c));
    });
    return;
  }
  if (session) store_->Unpin(sid, end);  // before the callback: the next turn may follow at once
  if (session && shared_) shared_->EndTurn(sid, r->lease_token, false, nullptr, [](SharedWrite) {});
  r->cb(std::move(c));
}

absl::StatusOr<int64_t> EngineImpl::CommitTurn(LiveRequest& r) {
  SessionCursor& cur = *r.cur;
  if (r.prefill_only) {  // all but the last token fed: the held-back token is the last of pending + prompt
    cur.pending = {r.prompt.empty() ? r.saved_pending.back() : r.prompt.back()};
    return static_cast<int64_t>(r.prompt.size());
  }
  const std::vector<int32_t>& gen = r.dec->tokens();
  cur.pending = {gen.back()};
  std::vector<int32_t> have = r.prompt;
  have.insert(have.end(), gen.begin(), gen.end());
  if (r.req.messages.empty() || !rt_->tokenizer) return static_cast<int64_t>(have.size());
  // Chat: the history must read as the template renders the turn with the delivered reply.
  ASSIGN_OR_RETURN(std::vector<int32_t> target,
                   ChatTurnTokens(*rt_->tokenizer, r.req.messages, r.dec->delivered_text(),
                                  PromptOptions{r.first_turn, r.req.parse_special}));
  // Usually only the closing marker is missing; when the sampled tokens are not the template's tokens
  // for the delivered text (a stop string cut, a non-canonical split, Llama 3's trim) the turn is rebuilt
  // from the pre-turn copy (one prefill of the turn, on this thread).
  try {
    RETURN_IF_ERROR(CommitTokens(*rt_->model, cur, *r.pre_turn, have, target, config_.prefill_chunk));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("committing the turn failed: ", e.what()));
  }
  return static_cast<int64_t>(target.size());
}

}  // namespace titand
