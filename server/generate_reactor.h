// The server-streaming Generate call as a gRPC callback reactor. Never blocks in a reaction.
//
//   engine thread ──on_chunk──▶ [bounded per-stream buffer] ──one write in flight──▶ client
//                                                OnWriteDone starts the next write
//
// * The engine callback only locks the stream's small mutex, appends the chunk and, when no write is
//   in flight, starts one; it never waits. If the buffer already holds `buffer_chunks` chunks the client
//   reads too slowly: the stream is marked overflowed, and the next reaction on a gRPC thread cancels the
//   engine request and ends the call with RESOURCE_EXHAUSTED ("client too slow"). The engine never waits
//   for a slow client, and memory per stream stays bounded.
// * Client cancellation (OnCancel, or a failed write) -> Engine::Cancel(id); the engine frees the slot and
//   sends its final kCancelled chunk, which is counted in the metrics and otherwise dropped.
// * The gRPC deadline is passed to the engine; a final kDeadline ends the call with DEADLINE_EXCEEDED,
//   kError with the error's status; other finishes write the final message (finish reason, usage,
//   timing) and end with OK (an Abort RPC ends with finish reason CANCELLED and OK).
// * The state the engine callback touches lives in a shared block that outlives the reactor: after
//   OnDone the callback finds no reactor and only records metrics.
#pragma once

#include <cstddef>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "core/engine/engine.h"
#include "server/metrics.h"
#include "titand/v1/inference.grpc.pb.h"

namespace titand {

// Writes serialized v1::GenerateResponse messages (the method is registered raw: inference_service.h).
class GenerateReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Starts the call: converts and enqueues the request (or finishes at once with the error). `engine`
  // null = not ready (UNAVAILABLE). The reactor deletes itself in OnDone.
  // `parsed` is the outcome of parsing the request's bytes (not OK: the call ends with it).
  GenerateReactor(Engine* engine, ServerMetrics* metrics, size_t buffer_chunks,
                  grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request,
                  absl::Status parsed = absl::OkStatus());

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  struct Shared;

 private:
  // Decides the next action under the stream's lock and performs it outside: start a write, finish the
  // call, cancel the engine request. `may_cancel` is false on the engine thread.
  // Static: the engine thread calls it without knowing whether the reactor still exists.
  static void Advance(const std::shared_ptr<Shared>& shared, bool may_cancel);
  void FinishNow(const grpc::Status& status);

  Engine* const engine_;
  ServerMetrics* const metrics_;
  std::shared_ptr<Shared> shared_;
  v1::GenerateResponse out_;   // the one message in flight
  grpc::ByteBuffer out_bytes_; // ... serialized
};

}  // namespace titand
