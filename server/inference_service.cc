#include "server/request_parse.h"
#include "server/inference_service.h"

#include "server/generate_reactor.h"
#include "server/proto_convert.h"
#include "server/status_map.h"

namespace titand {
namespace {

const grpc::Status kNotReady(grpc::StatusCode::UNAVAILABLE, "server is starting: model not loaded yet");

absl::Status RequireId(const std::string& id, const char* field) {
  if (id.empty()) return absl::InvalidArgumentError(std::string(field) + ": required");
  return absl::OkStatus();
}

}  // namespace

InferenceService::InferenceService(ServerMetrics* metrics, size_t stream_buffer_chunks, int call_threads)
    : metrics_(metrics), stream_buffer_chunks_(stream_buffer_chunks), pool_(call_threads) {}

void InferenceService::SetEngine(Engine* engine, const ModelSummary& summary) {
  {
    absl::MutexLock lock(&mu_);
    summary_ = summary;
  }
  engine_.store(engine);
}

template <typename Fn>
grpc::ServerUnaryReactor* InferenceService::RunOnPool(grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Engine* engine = engine_.load();
  if (engine == nullptr) {
    reactor->Finish(kNotReady);
    return reactor;
  }
  pool_.Post([reactor, engine, fn = std::move(fn)]() mutable {
    reactor->Finish(ToGrpcStatus(fn(engine)));
  });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                       const grpc::ByteBuffer* req) {
  std::vector<grpc::Slice> slices;
  std::string wire;
  if (req->Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  v1::GenerateRequest parsed;
  absl::Status st = ParseRequest(wire, &parsed);
  return new GenerateReactor(engine_.load(), metrics_, stream_buffer_chunks_, ctx, &parsed, st);
}

grpc::ServerUnaryReactor* InferenceService::CreateSession(grpc::CallbackServerContext* ctx,
                                                          const v1::CreateSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [id = req->session_id(), resp](Engine* e) -> absl::Status {
    absl::StatusOr<SessionInfo> info = e->CreateSession(id);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::GetSession(grpc::CallbackServerContext* ctx,
                                                       const v1::GetSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [id = req->session_id(), resp](Engine* e) -> absl::Status {
    absl::Status st = RequireId(id, "session_id");
    if (!st.ok()) return st;
    absl::StatusOr<SessionInfo> info = e->GetSession(id);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::ListSessions(grpc::CallbackServerContext* ctx,
                                                         const v1::ListSessionsRequest* req,
                                                         v1::ListSessionsResponse* resp) {
  return RunOnPool(ctx, [resp](Engine* e) -> absl::Status {
    absl::StatusOr<std::vector<SessionInfo>> infos = e->ListSessions();
    if (!infos.ok()) return infos.status();
    for (const SessionInfo& info : *infos) ToProto(info, resp->add_sessions());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                          const v1::DeleteSessionRequest* req,
                                                          v1::DeleteSessionResponse* resp) {
  return RunOnPool(ctx, [id = req->session_id()](Engine* e) -> absl::Status {
    absl::Status st = RequireId(id, "session_id");
    if (!st.ok()) return st;
    return e->DeleteSession(id);
  });
}

grpc::ServerUnaryReactor* InferenceService::ForkSession(grpc::CallbackServerContext* ctx,
                                                        const v1::ForkSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [id = req->session_id(), new_id = req->new_session_id(), resp](Engine* e) -> absl::Status {
    absl::Status st = RequireId(id, "session_id");
    if (!st.ok()) return st;
    absl::StatusOr<SessionInfo> info = e->ForkSession(id, new_id);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* req,
                                                  v1::AbortResponse* resp) {
  return RunOnPool(ctx, [id = req->request_id()](Engine* e) -> absl::Status {
    absl::Status st = RequireId(id, "request_id");
    if (!st.ok()) return st;
    return e->Abort(id);
  });
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* req, v1::ModelInfo* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (engine_.load() == nullptr) {
    reactor->Finish(kNotReady);
    return reactor;
  }
  absl::MutexLock lock(&mu_);
  resp->set_model_id(summary_.model_id);
  resp->set_model_path(summary_.model_path);
  resp->set_format(summary_.format);
  resp->set_architecture(summary_.architecture);
  resp->set_adapter_id(summary_.adapter_id);
  resp->set_vocab_size(summary_.vocab_size);
  resp->set_num_layers(summary_.num_layers);
  resp->set_hidden_size(summary_.hidden_size);
  resp->set_eos_token_id(summary_.eos_token_id);
  resp->set_dtype(summary_.dtype);
  resp->set_max_prompt_tokens(summary_.max_prompt_tokens);
  resp->set_max_new_tokens(summary_.max_new_tokens);
  resp->set_max_queue(summary_.max_queue);
  resp->set_max_running(summary_.max_running);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace titand
