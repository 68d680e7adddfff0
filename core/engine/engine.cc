// Engine API side: validation, prompt building, the bounded inbox, cancellation data, session RPCs.
// The engine thread's loop is in engine_loop.cc.
#include "core/engine/engine_impl.h"
#include "core/runtime/device.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/common/status.h"
#include "core/session/session_codec.h"
#include "core/tokenizer/prompt_builder.h"

namespace titand {
namespace {

// The store key of `id` in `tenant`. An id that is not a valid session id (e.g. one naming another
// tenant's key) cannot exist in this tenant: NOT_FOUND, the answer an unknown id gets.
absl::StatusOr<std::string> ScopedKey(const std::string& tenant, const std::string& id) {
  if (!tenant.empty() && !IsValidTenant(tenant)) return absl::InvalidArgumentError("invalid tenant name");
  if (!IsValidSessionId(id)) return absl::NotFoundError("session not found");
  return SessionKey(tenant, id);
}

// The label of a request_id in `tenant` (labels_ key): another tenant's Abort never matches it.
std::string RequestLabel(const std::string& tenant, const std::string& request_id) {
  return tenant + std::string(1, '\0') + request_id;
}

// Session info as the tenant sees it: the id without the tenant prefix.
SessionInfo Unscoped(SessionInfo info, const std::string& id) {
  info.id = id;
  return info;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config, std::unique_ptr<Runtime> rt) {
  RETURN_IF_ERROR(config.Validate());
  if (!rt || !rt->model) return absl::InvalidArgumentError("engine: runtime without a model");
  auto e = std::make_unique<EngineImpl>(config, std::move(rt));
  RETURN_IF_ERROR(e->Start());
  return std::unique_ptr<Engine>(std::move(e));
}

EngineImpl::EngineImpl(const EngineConfig& config, std::unique_ptr<Runtime> rt)
    : config_(config),
      rt_(std::move(rt)),
      scheduler_(SchedulerConfig{config.max_running, config.max_step_tokens, config.prefill_chunk}) {
  // One decode slot per sequence the scheduler may run: requests joining and leaving the batch copy only
  // their own state (core/model/decode_slots.h). Every running request holds one until it ends.
  rt_->model->EnableDecodeSlots(config.max_running);
}

EngineImpl::~EngineImpl() { (void)Shutdown(/*drain=*/false); }

absl::Status EngineImpl::Start() {
  // The creating thread hands its intra-op threads to the engine thread (Loop): a second OpenMP pool in
  // the process would make every pool sleep between parallel regions (core/runtime/runtime.h).
  UseIntraOpThreads(1);
  const CausalLM& m = *rt_->model;
  SnapshotBinding b;
  b.model_id = rt_->model_id;
  b.adapter_id = rt_->adapter_id;
  b.num_layers = m.config().num_layers;
  b.num_kv_heads = m.config().num_kv_heads;
  b.head_dim = m.config().head_dim;
  b.dtype = DtypeName(m.options().dtype);
  SessionStoreOptions so;
  so.dir = config_.session_dir;
  so.device_budget = config_.device_state_budget;
  so.host_budget = config_.host_state_budget;
  so.ttl_seconds = config_.session_ttl_seconds;
  so.max_sessions = config_.max_sessions;
  so.write_through = config_.session_write_through;
  so.max_tenant_sessions = config_.max_tenant_sessions;
  so.max_tenant_state_bytes = config_.max_tenant_state_bytes;
  b.hmac_key = config_.snapshot_key;
  so.codec = MakeSnapshotCodec(b, m.options().device);
  so.fresh = [&m] { return SessionCursor{m.NewState(), {}}; };
  ASSIGN_OR_RETURN(store_, SessionStore::Open(std::move(so)));
  if (config_.use_shared_store) {
    SharedTierConfig sc;
    sc.store = config_.shared_store;
    sc.store.ttl_seconds = config_.session_ttl_seconds;
    sc.retry_seconds = config_.shared_retry_seconds;
    SessionStore* store = store_.get();
    // A pending write lost to a newer stored state: the local copy is stale, drop it (unless busy: its
    // running turn's own write will be rejected the same way).
    ASSIGN_OR_RETURN(shared_, SharedTier::Start(std::move(sc), [store](const std::string& id) { (void)store->Delete(id); }));
  }
  if (config_.session_write_through && !config_.session_dir.empty() && !shared_)
    writer_ = std::make_unique<SessionWriter>(config_.session_write_threads);
  last_sweep_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> EngineImpl::BuildPrompt(const GenerateRequest& req, bool first_turn) const {
  PromptInput in;
  in.text = req.text;
  in.token_ids = req.token_ids;
  in.messages = req.messages;
  return titand::BuildPrompt(rt_->tokenizer.get(), rt_->model->config().vocab_size, in,
                             PromptOptions{first_turn, req.parse_special});
}

absl::StatusOr<RequestId> EngineImpl::Enqueue(GenerateRequest req, ChunkCallback on_chunk) {
  // From here on both ids are tenant-scoped: the store key and the Abort label.
  if (!req.session_id.empty()) {
    ASSIGN_OR_RETURN(req.session_id, ScopedKey(req.tenant, req.session_id));
  }
  const std::string client_request_id = req.request_id;
  if (!req.request_id.empty()) req.request_id = RequestLabel(req.tenant, req.request_id);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("engine is draining");
    if (waiting_ >= config_.max_queue)
      return absl::ResourceExhaustedError(absl::StrCat("request queue full (", config_.max_queue, " waiting)"));
    if (!req.request_id.empty() && labels_.count(req.request_id))
      return absl::AlreadyExistsError(absl::StrCat("request_id ", client_request_id, " is already running"));
  }
  RETURN_IF_ERROR(req.decode.Validate(rt_->model->config().vocab_size));
  if (req.decode.stop.max_tokens > config_.max_new_tokens)
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_tokens: must be <= ", config_.max_new_tokens,
                                                   " (the server's max_new_tokens), got ", req.decode.stop.max_tokens));
  if (!on_chunk) return absl::InvalidArgumentError("a chunk callback is required");
  int64_t history = 0;
  const std::string sid = req.session_id;
  std::string lease_token;
  if (!sid.empty()) {
    RETURN_IF_ERROR(PinForTurn(sid, &lease_token));  // NOT_FOUND / FAILED_PRECONDITION (busy) / ABORTED ...
    auto info = store_->Get(sid);
    if (info.ok()) history = info->history_tokens;
  }
  auto unpin_on_error = [&](absl::Status st) {
    if (!sid.empty()) store_->Unpin(sid, TurnEnd::kUnchanged);
    if (shared_ && !sid.empty()) shared_->EndTurn(sid, lease_token, false, nullptr, [](SharedWrite) {});
    return st;
  };
  auto prompt = BuildPrompt(req, history == 0);
  if (!prompt.ok()) return unpin_on_error(prompt.status());
  if (static_cast<int64_t>(prompt->size()) > config_.max_prompt_tokens)
    return unpin_on_error(absl::InvalidArgumentError(
        absl::StrCat("prompt has ", prompt->size(), " tokens; the limit is ", config_.max_prompt_tokens)));
  if (prompt->empty() && history == 0)
    return unpin_on_error(absl::InvalidArgumentError("empty prompt and no session history"));

  auto r = std::make_unique<LiveRequest>();
  r->prompt = std::move(prompt).value();
  r->lease_token = lease_token;
  r->first_turn = history == 0;
  r->cb = std::move(on_chunk);
  r->enqueued = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  if (stopping_) return unpin_on_error(absl::UnavailableError("engine is draining"));
  if (waiting_ >= config_.max_queue)
    return unpin_on_error(absl::ResourceExhaustedError(absl::StrCat("request queue full (", config_.max_queue, " waiting)")));
  if (!req.request_id.empty() && labels_.count(req.request_id))
    return unpin_on_error(absl::AlreadyExistsError(absl::StrCat("request_id ", client_request_id, " is already running")));
  r->id = next_id_++;
  r->arrival = next_arrival_++;
  r->req = std::move(req);
  if (!r->req.request_id.empty()) labels_[r->req.request_id] = r->id;
  alive_.insert(r->id);
  ++waiting_;
  const RequestId id = r->id;
  inbox_.push_back(std::move(r));
  return id;
}

void EngineImpl::Cancel(RequestId id) {
  absl::MutexLock lock(&mu_);
  if (alive_.count(id)) cancel_.insert(id);
}

absl::Status EngineImpl::Abort(const std::string& request_id, const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  auto it = labels_.find(RequestLabel(tenant, request_id));
  if (it == labels_.end()) return absl::NotFoundError("no running request with this request_id");
  cancel_.insert(it->second);
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> EngineImpl::CreateSession(const std::string& requested_id, const std::string& tenant) {
  if (!tenant.empty() && !IsValidTenant(tenant)) return absl::InvalidArgumentError("invalid tenant name");
  if (!requested_id.empty() && !IsValidSessionId(requested_id))
    return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
  const std::string id = requested_id.empty() ? RandomSessionId() : requested_id;
  const std::string key = SessionKey(tenant, id);
  // Taken on another replica: ALREADY_EXISTS as for a local one (Redis down: decided by WriteNew).
  if (shared_ && !requested_id.empty() && EnsureLocal(key).ok()) return absl::AlreadyExistsError("session exists");
  ASSIGN_OR_RETURN(SessionInfo info, store_->Create(key));
  RETURN_IF_ERROR(PublishNew(key));
  return Unscoped(std::move(info), id);
}

absl::StatusOr<SessionInfo> EngineImpl::GetSession(const std::string& id, const std::string& tenant) {
  ASSIGN_OR_RETURN(const std::string key, ScopedKey(tenant, id));
  RETURN_IF_ERROR(EnsureLocal(key));
  ASSIGN_OR_RETURN(SessionInfo info, store_->Get(key));
  return Unscoped(std::move(info), id);
}

// The sessions held by this replica (with a shared store, others may exist only in Redis).
absl::StatusOr<std::vector<SessionInfo>> EngineImpl::ListSessions(const std::string& tenant) {
  if (!tenant.empty() && !IsValidTenant(tenant)) return absl::InvalidArgumentError("invalid tenant name");
  const std::string prefix = SessionKey(tenant, "");
  std::vector<SessionInfo> out;
  for (SessionInfo& info : store_->List()) {  // ordered by key, so by id within a tenant
    const bool mine = tenant.empty() ? IsValidSessionId(info.id)  // keys without a tenant prefix
                                     : info.id.compare(0, prefix.size(), prefix) == 0;
    if (!mine) continue;
    std::string id = info.id.substr(prefix.size());
    out.push_back(Unscoped(std::move(info), id));
  }
  return out;
}

absl::Status EngineImpl::DeleteSession(const std::string& id, const std::string& tenant) {
  ASSIGN_OR_RETURN(const std::string key, ScopedKey(tenant, id));
  if (!shared_) return store_->Delete(key);
  // Redis first: a session deleted locally but still stored would come back on its next turn.
  ASSIGN_OR_RETURN(bool stored, shared_->Delete(key));  // lease held -> FAILED_PRECONDITION; down -> UNAVAILABLE
  absl::Status local = store_->Delete(key);
  if (absl::IsNotFound(local) && stored) return absl::OkStatus();
  return local;
}

absl::StatusOr<SessionInfo> EngineImpl::ForkSession(const std::string& id, const std::string& new_id,
                                                    const std::string& tenant) {
  ASSIGN_OR_RETURN(const std::string key, ScopedKey(tenant, id));
  if (!new_id.empty() && !IsValidSessionId(new_id))
    return absl::InvalidArgumentError("session id must match [A-Za-z0-9._-]{1,128}");
  const std::string nid = new_id.empty() ? RandomSessionId() : new_id;
  const std::string nkey = SessionKey(tenant, nid);
  RETURN_IF_ERROR(EnsureLocal(key));
  if (shared_ && !new_id.empty() && EnsureLocal(nkey).ok()) return absl::AlreadyExistsError("session exists");
  ASSIGN_OR_RETURN(SessionInfo info, store_->Fork(key, nkey));
  RETURN_IF_ERROR(PublishNew(nkey));
  return Unscoped(std::move(info), nid);
}

absl::Status EngineImpl::WarmUp() {
  GenerateRequest req;
  req.token_ids = {rt_->tokenizer && rt_->tokenizer->bos_id() >= 0 ? rt_->tokenizer->bos_id() : 0};
  req.decode.stop.max_tokens = 2;
  req.decode.stop.ignore_eos = true;
  auto done = std::make_shared<absl::Notification>();
  auto result = std::make_shared<absl::Status>();
  ASSIGN_OR_RETURN(RequestId id, Enqueue(std::move(req), [done, result](StreamChunk c) {
                     if (!c.final) return;
                     *result = c.finish == EngineFinish::kError ? c.error : absl::OkStatus();
                     done->Notify();
                   }));
  (void)id;
  done->WaitForNotification();
  return *result;
}

absl::Status EngineImpl::Shutdown(bool drain) {
  if (shut_down_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    draining_ = drain;
  }
  if (thread_.joinable()) thread_.join();
  if (writer_) writer_->Flush();  // turns that ended: their snapshots and final chunks
  if (drain && shared_) shared_->Flush(std::chrono::seconds(10));  // pending write-throughs to Redis
  if (!drain || !store_ || config_.session_dir.empty()) return absl::OkStatus();
  const DrainResult r = store_->SaveAll();
  const std::string summary = absl::StrCat(r.written, " sessions written, ", r.current, " already on disk, ",
                                           r.skipped, " skipped (busy or unreadable), ", r.failed, " NOT saved");
  if (r.failed == 0) return absl::OkStatus();
  return absl::Status(r.first_error.code(), absl::StrCat("drain: ", summary, "; first error: ", r.first_error.message()));
}

EngineStats EngineImpl::Stats() const {
  EngineStats s;
  {
    absl::MutexLock lock(&mu_);
    s.running = running_;
    s.waiting = waiting_;
    s.last_batch_size = last_batch_;
    s.steps = steps_;
    s.draining = stopping_ && draining_;
  }
  if (store_) {
    SessionStoreStats ss = store_->Stats();
    s.sessions_device = ss.device;
    s.sessions_host = ss.host;
    s.sessions_disk = ss.disk;
    s.resident_state_bytes = ss.device_bytes;
    s.host_state_bytes = ss.host_bytes;
    s.disk_writes = ss.disk_writes;
    s.disk_write_errors = ss.disk_write_errors;
    s.disk_read_errors = ss.disk_read_errors;
    s.disk_remove_errors = ss.disk_remove_errors;
  }
  if (shared_) s.shared = shared_->Stats();
  if (writer_) s.session_writes_pending = writer_->Pending();
  return s;
}

}  // namespace titand
