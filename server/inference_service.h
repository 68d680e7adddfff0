// titand.v1.Inference on gRPC's callback API. Generate streams through a GenerateReactor; the unary
// session calls, which may wait for the engine thread, run on a CallPool so that no reaction blocks.
// Until SetEngine() is called every RPC answers UNAVAILABLE (model loading).
//
// Authentication: with a TokenTable every call must carry metadata "authorization: Bearer <token>"
// (else UNAUTHENTICATED); the token's tenant scopes the call's session and request ids in the engine.
// Without one (dev mode) every caller is tenant "". Ids and other request fields are checked against
// RequestLimits here, before the engine sees them.
#pragma once

#include <atomic>
#include <cstddef>

#include "absl/synchronization/mutex.h"
#include "core/engine/engine.h"
#include "server/call_pool.h"
#include "server/metrics.h"
#include "server/model_summary.h"
#include "server/request_limits.h"
#include "server/token_table.h"
#include "titand/v1/inference.grpc.pb.h"

namespace titand {

// Generate is registered raw (wire bytes in and out) so that a request protobuf cannot parse gets a
// precise INVALID_ARGUMENT (request_parse.h) instead of gRPC's empty UNIMPLEMENTED.
class InferenceService final : public v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::CallbackService> {
 public:
  // `tokens` (not owned, may be null = authentication off) must outlive the service.
  InferenceService(ServerMetrics* metrics, size_t stream_buffer_chunks, int call_threads, const TokenTable* tokens,
                   const RequestLimits& limits);

  // The engine once it is loaded and warmed up (not owned; must outlive the server).
  void SetEngine(Engine* engine, const ModelSummary& summary);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* req) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx, const v1::CreateSessionRequest* req,
                                          v1::Session* resp) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* req,
                                       v1::Session* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const v1::ListSessionsRequest* req,
                                         v1::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx, const v1::DeleteSessionRequest* req,
                                          v1::DeleteSessionResponse* resp) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* ctx, const v1::ForkSessionRequest* req,
                                        v1::Session* resp) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* req,
                                  v1::AbortResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest* req,
                                         v1::ModelInfo* resp) override;

 private:
  // Authenticates the call, then runs fn(engine, tenant) -> absl::Status on the pool and finishes the
  // reactor with its mapped status.
  template <typename Fn>
  grpc::ServerUnaryReactor* RunOnPool(grpc::CallbackServerContext* ctx, Fn fn);
  // The caller's tenant ("" with authentication off); UNAUTHENTICATED without a known bearer token.
  absl::StatusOr<std::string> TenantOf(const grpc::CallbackServerContext* ctx) const;

  ServerMetrics* const metrics_;
  const size_t stream_buffer_chunks_;
  const TokenTable* const tokens_;
  const RequestLimits limits_;
  std::atomic<Engine*> engine_{nullptr};
  absl::Mutex mu_;
  ModelSummary summary_ ABSL_GUARDED_BY(mu_);
  CallPool pool_;
};

}  // namespace titand
