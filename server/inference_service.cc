#include "server/request_parse.h"
#include "server/inference_service.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "server/generate_reactor.h"
#include "server/proto_convert.h"
#include "server/status_map.h"

namespace titand {
namespace {

const grpc::Status kNotReady(grpc::StatusCode::UNAVAILABLE, "server is starting: model not loaded yet");

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

}  // namespace

InferenceService::InferenceService(ServerMetrics* metrics, size_t stream_buffer_chunks, int call_threads,
                                   const TokenTable* tokens, const RequestLimits& limits)
    : metrics_(metrics),
      stream_buffer_chunks_(stream_buffer_chunks),
      tokens_(tokens),
      limits_(limits),
      pool_(call_threads) {}

void InferenceService::SetEngine(Engine* engine, const ModelSummary& summary) {
  {
    absl::MutexLock lock(&mu_);
    summary_ = summary;
  }
  engine_.store(engine);
}

absl::StatusOr<std::string> InferenceService::TenantOf(const grpc::CallbackServerContext* ctx) const {
  if (tokens_ == nullptr) return std::string();
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end())
    return absl::UnauthenticatedError("missing bearer token (metadata 'authorization: Bearer <token>')");
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer "))
    return absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'");
  std::optional<std::string> tenant = tokens_->TenantOf(std::string(value));
  if (!tenant) return absl::UnauthenticatedError("invalid bearer token");
  return *tenant;
}

template <typename Fn>
grpc::ServerUnaryReactor* InferenceService::RunOnPool(grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Engine* engine = engine_.load();
  if (engine == nullptr) {
    reactor->Finish(kNotReady);
    return reactor;
  }
  absl::StatusOr<std::string> tenant = TenantOf(ctx);
  if (!tenant.ok()) {
    reactor->Finish(ToGrpcStatus(tenant.status()));
    return reactor;
  }
  pool_.Post([reactor, engine, tenant = *std::move(tenant), fn = std::move(fn)]() mutable {
    reactor->Finish(ToGrpcStatus(fn(engine, tenant)));
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
  return new GenerateReactor(engine_.load(), metrics_, stream_buffer_chunks_, ctx, &parsed, st, TenantOf(ctx), limits_);
}

grpc::ServerUnaryReactor* InferenceService::CreateSession(grpc::CallbackServerContext* ctx,
                                                          const v1::CreateSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [this, id = req->session_id(), resp](Engine* e, const std::string& tenant) -> absl::Status {
    if (absl::Status st = CheckSessionIdField(id, "session_id", true, limits_); !st.ok()) return st;
    absl::StatusOr<SessionInfo> info = e->CreateSession(id, tenant);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::GetSession(grpc::CallbackServerContext* ctx,
                                                       const v1::GetSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [this, id = req->session_id(), resp](Engine* e, const std::string& tenant) -> absl::Status {
    if (absl::Status st = CheckSessionIdField(id, "session_id", false, limits_); !st.ok()) return st;
    absl::StatusOr<SessionInfo> info = e->GetSession(id, tenant);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

// Pages are runs of the tenant's sessions ordered by id; the page token is the last id of the previous
// page, so a page never repeats or skips a session that existed through the whole listing.
grpc::ServerUnaryReactor* InferenceService::ListSessions(grpc::CallbackServerContext* ctx,
                                                         const v1::ListSessionsRequest* req,
                                                         v1::ListSessionsResponse* resp) {
  return RunOnPool(ctx, [this, size = req->page_size(), after = req->page_token(), resp](
                            Engine* e, const std::string& tenant) -> absl::Status {
    if (size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
    if (absl::Status st = CheckSessionIdField(after, "page_token", true, RequestLimits{}); !st.ok())
      return absl::InvalidArgumentError("page_token: not a token from a previous page");
    const int page = size == 0 ? kDefaultPageSize : std::min(size, kMaxPageSize);
    absl::StatusOr<std::vector<SessionInfo>> infos = e->ListSessions(tenant);
    if (!infos.ok()) return infos.status();
    auto it = after.empty() ? infos->begin()
                            : std::upper_bound(infos->begin(), infos->end(), after,
                                               [](const std::string& a, const SessionInfo& b) { return a < b.id; });
    for (int n = 0; it != infos->end() && n < page; ++it, ++n) ToProto(*it, resp->add_sessions());
    if (it != infos->end() && resp->sessions_size() > 0)
      resp->set_next_page_token(resp->sessions(resp->sessions_size() - 1).id());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                          const v1::DeleteSessionRequest* req,
                                                          v1::DeleteSessionResponse* resp) {
  return RunOnPool(ctx, [this, id = req->session_id()](Engine* e, const std::string& tenant) -> absl::Status {
    if (absl::Status st = CheckSessionIdField(id, "session_id", false, limits_); !st.ok()) return st;
    return e->DeleteSession(id, tenant);
  });
}

grpc::ServerUnaryReactor* InferenceService::ForkSession(grpc::CallbackServerContext* ctx,
                                                        const v1::ForkSessionRequest* req, v1::Session* resp) {
  return RunOnPool(ctx, [this, id = req->session_id(), new_id = req->new_session_id(), resp](
                            Engine* e, const std::string& tenant) -> absl::Status {
    if (absl::Status st = CheckSessionIdField(id, "session_id", false, limits_); !st.ok()) return st;
    if (absl::Status st = CheckSessionIdField(new_id, "new_session_id", true, limits_); !st.ok()) return st;
    absl::StatusOr<SessionInfo> info = e->ForkSession(id, new_id, tenant);
    if (!info.ok()) return info.status();
    ToProto(*info, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* req,
                                                  v1::AbortResponse* resp) {
  return RunOnPool(ctx, [this, id = req->request_id()](Engine* e, const std::string& tenant) -> absl::Status {
    if (absl::Status st = CheckRequestIdField(id, false, limits_); !st.ok()) return st;
    return e->Abort(id, tenant);
  });
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* req, v1::ModelInfo* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (engine_.load() == nullptr) {
    reactor->Finish(kNotReady);
    return reactor;
  }
  if (absl::StatusOr<std::string> tenant = TenantOf(ctx); !tenant.ok()) {
    reactor->Finish(ToGrpcStatus(tenant.status()));
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
  resp->set_weights(summary_.weights);
  resp->set_weight_bytes(summary_.weight_bytes);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace titand
