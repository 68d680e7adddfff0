// titand.v1.Inference on gRPC's callback API. Generate streams through a GenerateReactor; the unary
// session calls, which may wait for the engine thread, run on a CallPool so that no reaction blocks.
// Until SetEngine() is called every RPC answers UNAVAILABLE (model loading).
#pragma once

#include <atomic>
#include <cstddef>

#include "absl/synchronization/mutex.h"
#include "core/engine/engine.h"
#include "server/call_pool.h"
#include "server/metrics.h"
#include "server/model_summary.h"
#include "titand/v1/inference.grpc.pb.h"

namespace titand {

// Generate is registered raw (wire bytes in and out) so that a request protobuf cannot parse gets a
// precise INVALID_ARGUMENT (request_parse.h) instead of gRPC's empty UNIMPLEMENTED.
class InferenceService final : public v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::CallbackService> {
 public:
  InferenceService(ServerMetrics* metrics, size_t stream_buffer_chunks, int call_threads);

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
  // Runs fn(engine) -> absl::Status on the pool and finishes the reactor with its mapped status.
  template <typename Fn>
  grpc::ServerUnaryReactor* RunOnPool(grpc::CallbackServerContext* ctx, Fn fn);

  ServerMetrics* const metrics_;
  const size_t stream_buffer_chunks_;
  std::atomic<Engine*> engine_{nullptr};
  absl::Mutex mu_;
  ModelSummary summary_ ABSL_GUARDED_BY(mu_);
  CallPool pool_;
};

}  // namespace titand
