#include "server/generate_reactor.h"

#include <chrono>
#include <deque>
#include <string>

#include "absl/synchronization/mutex.h"
#include "server/proto_convert.h"
#include "server/status_map.h"

namespace titand {

struct GenerateReactor::Shared {
  absl::Mutex mu;
  GenerateReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;   // null after OnDone
  std::deque<StreamChunk> pending ABSL_GUARDED_BY(mu);
  size_t capacity = 64;
  bool write_in_flight ABSL_GUARDED_BY(mu) = false;
  bool final_written ABSL_GUARDED_BY(mu) = false;            // the final message went out
  bool final_seen ABSL_GUARDED_BY(mu) = false;               // the engine is done with the request
  bool finishing ABSL_GUARDED_BY(mu) = false;                // Finish() was called
  bool overflow ABSL_GUARDED_BY(mu) = false;                 // buffer was full: client too slow
  bool client_cancelled ABSL_GUARDED_BY(mu) = false;
  bool cancel_sent ABSL_GUARDED_BY(mu) = false;
  bool have_id ABSL_GUARDED_BY(mu) = false;
  RequestId id ABSL_GUARDED_BY(mu) = 0;
  // Metrics bookkeeping (engine thread only).
  bool seen_tokens = false;
  std::chrono::steady_clock::time_point last_tokens;
  std::string session_id;
  ServerMetrics* metrics = nullptr;
  Engine* engine = nullptr;
};

namespace {

// The gRPC status a final chunk ends its call with (OK: the final message is written first).
grpc::Status FinalStatus(const StreamChunk& c) {
  switch (c.finish) {
    case EngineFinish::kDeadline:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded during generation");
    case EngineFinish::kError:
      return c.error.ok() ? grpc::Status(grpc::StatusCode::INTERNAL, "engine error") : ToGrpcStatus(c.error);
    default:
      return grpc::Status::OK;
  }
}

}  // namespace

GenerateReactor::GenerateReactor(Engine* engine, ServerMetrics* metrics, size_t buffer_chunks,
                                 grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request,
                                 absl::Status parsed, const absl::StatusOr<std::string>& tenant,
                                 const RequestLimits& limits)
    : engine_(engine), metrics_(metrics), shared_(std::make_shared<Shared>()) {
  shared_->capacity = buffer_chunks;
  shared_->session_id = request->session_id();
  shared_->metrics = metrics;
  shared_->engine = engine;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->reactor = this;
  }
  if (engine_ == nullptr) {
    metrics_->RecordRejected("UNAVAILABLE");
    FinishNow(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is starting: model not loaded yet"));
    return;
  }
  GenerateRequest req;
  absl::Status st = tenant.status();
  if (st.ok()) st = parsed.ok() ? FromProto(*request, &req) : parsed;
  if (st.ok()) st = CheckGenerateLimits(req, limits);
  if (st.ok()) {
    req.tenant = *tenant;
    req.deadline = SteadyDeadline(ctx->deadline(), std::chrono::system_clock::now(),
                                  std::chrono::steady_clock::now());
    std::shared_ptr<Shared> shared = shared_;
    auto on_chunk = [shared](StreamChunk chunk) {
      // Engine thread: bookkeeping, then append to the bounded buffer; never wait.
      auto now = std::chrono::steady_clock::now();
      if (!chunk.token_ids.empty()) {
        double gap = shared->seen_tokens ? std::chrono::duration<double>(now - shared->last_tokens).count() : -1;
        shared->metrics->RecordTokens(static_cast<int>(chunk.token_ids.size()), gap);
        shared->seen_tokens = true;
        shared->last_tokens = now;
      }
      bool live;
      {
        absl::MutexLock lock(&shared->mu);
        if (chunk.final) {
          shared->final_seen = true;
          grpc::Status end = FinalStatus(chunk);
          const char* code = shared->client_cancelled ? "CANCELLED"
                             : shared->overflow       ? "RESOURCE_EXHAUSTED"
                                                      : GrpcCodeName(end.error_code());
          shared->metrics->RecordFinished(chunk, code);
        }
        live = shared->reactor != nullptr && !shared->finishing && !shared->overflow;
        if (live) {
          if (!chunk.final && shared->pending.size() >= shared->capacity) {
            shared->overflow = true;  // handled by the next reaction on a gRPC thread
            live = false;
          } else {
            shared->pending.push_back(std::move(chunk));
          }
        }
      }
      if (live) Advance(shared, /*may_cancel=*/false);
    };
    absl::StatusOr<RequestId> id = engine_->Enqueue(std::move(req), std::move(on_chunk));
    st = id.status();
    if (id.ok()) {
      bool cancel_now;
      {
        absl::MutexLock lock(&shared_->mu);
        shared_->have_id = true;
        shared_->id = *id;
        // The client left, or overflowed the buffer, before the engine answered with the id (the gRPC
        // reaction that cancels found no id yet): cancel now, unless the request already ended.
        cancel_now = (shared_->client_cancelled || shared_->overflow) && !shared_->cancel_sent &&
                     !shared_->final_seen;
        if (cancel_now) shared_->cancel_sent = true;
      }
      if (cancel_now) engine_->Cancel(*id);
      return;
    }
  }
  grpc::Status gst = ToGrpcStatus(st);
  metrics_->RecordRejected(GrpcCodeName(gst.error_code()));
  FinishNow(gst);
}

void GenerateReactor::FinishNow(const grpc::Status& status) {
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->finishing) return;
    shared_->finishing = true;
  }
  Finish(status);
}

void GenerateReactor::Advance(const std::shared_ptr<Shared>& shared, bool may_cancel) {
  enum class Action { kNone, kWrite, kFinish };
  Action action = Action::kNone;
  grpc::Status finish_status;
  StreamChunk chunk;
  bool cancel = false;
  RequestId id = 0;
  GenerateReactor* reactor = nullptr;  // alive while we hold a write or the right to finish
  {
    absl::MutexLock lock(&shared->mu);
    Shared& s = *shared;
    if (s.finishing || s.reactor == nullptr || s.write_in_flight) return;
    if (s.overflow || s.client_cancelled) {
      if (!may_cancel) return;  // a gRPC thread finishes it
      action = Action::kFinish;
      finish_status = s.client_cancelled
                          ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client")
                          : grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                         "client too slow: stream buffer full, request cancelled");
      cancel = s.have_id && !s.cancel_sent && !s.final_seen;
    } else if (!s.pending.empty()) {
      chunk = std::move(s.pending.front());
      s.pending.pop_front();
      grpc::Status end = chunk.final ? FinalStatus(chunk) : grpc::Status::OK;
      if (!end.ok()) {
        action = Action::kFinish;  // deadline / error: the status says it all
        finish_status = end;
      } else {
        action = Action::kWrite;
        s.write_in_flight = true;
        if (chunk.final) s.final_written = true;
      }
    } else if (s.final_written) {
      action = Action::kFinish;
      finish_status = grpc::Status::OK;
    }
    if (action == Action::kFinish) s.finishing = true;
    if (cancel) s.cancel_sent = true;
    id = s.id;
    reactor = s.reactor;
  }
  if (cancel) shared->engine->Cancel(id);
  if (action == Action::kWrite) {
    ToProto(chunk, shared->session_id, &reactor->out_);
    bool own = false;
    reactor->out_bytes_.Clear();  // the previous write is done (one in flight); the writer needs it empty
    grpc::SerializationTraits<v1::GenerateResponse>::Serialize(reactor->out_, &reactor->out_bytes_, &own);
    reactor->StartWrite(&reactor->out_bytes_);
  } else if (action == Action::kFinish) {
    reactor->Finish(finish_status);
  }
}

void GenerateReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->write_in_flight = false;
    if (!ok) shared_->client_cancelled = true;  // the stream is broken: treat as cancelled
  }
  Advance(shared_, /*may_cancel=*/true);
}

void GenerateReactor::OnCancel() {
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->client_cancelled = true;
  }
  Advance(shared_, /*may_cancel=*/true);
}

void GenerateReactor::OnDone() {
  bool cancel;
  RequestId id;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->reactor = nullptr;
    shared_->pending.clear();
    // Ended without the engine's final chunk written (cancel, overflow, shutdown): make sure the
    // engine lets go of the request.
    cancel = shared_->have_id && !shared_->cancel_sent && !shared_->final_seen;
    if (cancel) shared_->cancel_sent = true;
    id = shared_->id;
  }
  if (cancel && engine_ != nullptr) engine_->Cancel(id);
  delete this;
}

}  // namespace titand
