// The Engine implementation: API methods (any thread) in engine.cc, the engine thread's step loop in
// engine_loop.cc. Threads meet in two places only: the inbox/cancel sets (guarded by mu_) and the
// session store (its own mutex). Everything in `live_` is touched by the engine thread alone.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/engine/engine.h"
#include "core/engine/scheduler.h"
#include "core/session/session_store.h"
#include "core/engine/session_writer.h"
#include "core/session/shared_tier.h"
#include "core/runtime/decoder.h"
#include "core/runtime/runtime.h"

namespace titand {

// One request, owned by the engine thread once taken from the inbox.
struct LiveRequest {
  RequestId id = 0;
  GenerateRequest req;
  ChunkCallback cb;
  uint64_t arrival = 0;
  SteadyTime enqueued;
  std::vector<int32_t> prompt;       // this turn's tokens
  std::string lease_token;           // shared tier: this turn's lease ("" = none)
  bool first_turn = true;            // the session had no history when the turn was enqueued
  // Filled at admission:
  bool running = false;
  SessionCursor own;                 // stateless requests: a fresh cursor
  SessionCursor* cur = nullptr;      // own or the store's pinned cursor
  std::vector<int32_t> saved_pending;
  std::optional<SessionCursor> pre_turn;  // session turns: the cursor before the turn, until it ends
  std::vector<int32_t> feed;         // tokens fed before sampling starts (pending + prompt)
  size_t fed = 0;
  bool prefill_only = false;         // max_tokens == 0: feed all but the last token, which stays pending
  std::unique_ptr<Decoder> dec;      // created at admission
  SteadyTime scheduled, first_token;
  bool has_first_token = false;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineConfig& config, std::unique_ptr<Runtime> rt);
  ~EngineImpl() override;
  absl::Status Start();

  absl::StatusOr<RequestId> Enqueue(GenerateRequest req, ChunkCallback on_chunk) override;
  void Cancel(RequestId id) override;
  absl::Status Abort(const std::string& request_id, const std::string& tenant) override;
  absl::StatusOr<SessionInfo> CreateSession(const std::string& requested_id, const std::string& tenant) override;
  absl::StatusOr<SessionInfo> GetSession(const std::string& id, const std::string& tenant) override;
  absl::StatusOr<std::vector<SessionInfo>> ListSessions(const std::string& tenant) override;
  absl::Status DeleteSession(const std::string& id, const std::string& tenant) override;
  absl::StatusOr<SessionInfo> ForkSession(const std::string& id, const std::string& new_id,
                                          const std::string& tenant) override;
  absl::Status WarmUp() override;
  absl::Status Shutdown(bool drain) override;
  EngineStats Stats() const override;
  const Runtime& runtime() const override { return *rt_; }

 private:
  // API side.
  absl::StatusOr<std::vector<int32_t>> BuildPrompt(const GenerateRequest& req, bool first_turn) const;
  // Shared tier: pins `sid` for a turn (fetching it from Redis when needed) and takes its lease.
  absl::Status PinForTurn(const std::string& sid, std::string* token);
  // Brings a session this replica does not hold from Redis (Get/Fork); NOT_FOUND if nowhere.
  absl::Status EnsureLocal(const std::string& sid);
  absl::Status PublishNew(const std::string& key);
  // Engine thread (engine_loop.cc).
  void Loop();
  bool Intake();  // moves inbox -> live_, applies cancellations; false when the loop should exit
  void ExpireAndCancel();
  void Admit(LiveRequest& r);
  void RunStep(const StepPlan& plan);
  void Emit(LiveRequest& r, const TokenOutcome& o, bool final);
  void Finish(RequestId id, EngineFinish f, absl::Status error = absl::OkStatus(), bool drop_session = false,
              const TokenOutcome* last = nullptr);
  // End of a session turn that finished normally: makes the history exactly the committed turn
  // (engine_loop.cc); returns the tokens committed.
  absl::StatusOr<int64_t> CommitTurn(LiveRequest& r);

  const EngineConfig config_;
  std::unique_ptr<Runtime> rt_;
  Scheduler scheduler_;
  std::unique_ptr<SessionStore> store_;
  std::unique_ptr<SharedTier> shared_;  // after store_: destroyed first (its writer uses the store)
  // Turn-end write-through off the engine thread (local sessions; the shared tier has its own writer).
  // After store_: destroyed (its queued jobs run) before the store.
  std::unique_ptr<SessionWriter> writer_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<LiveRequest>> inbox_ ABSL_GUARDED_BY(mu_);
  std::set<RequestId> cancel_ ABSL_GUARDED_BY(mu_);
  // Scoped request_id (RequestLabel: tenant + '\0' + request_id) -> id, live requests only.
  std::unordered_map<std::string, RequestId> labels_ ABSL_GUARDED_BY(mu_);
  std::set<RequestId> alive_ ABSL_GUARDED_BY(mu_);
  int64_t waiting_ ABSL_GUARDED_BY(mu_) = 0;  // enqueued, not yet admitted
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_batch_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  RequestId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_arrival_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> shut_down_{false};

  std::map<RequestId, std::unique_ptr<LiveRequest>> live_;  // engine thread only
  SteadyTime last_sweep_;
};

}  // namespace titand
