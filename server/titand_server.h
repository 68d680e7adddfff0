// The gRPC server around InferenceService: listening socket, health service (grpc.health.v1), server
// reflection, lifecycle. The header has no gRPC/protobuf include, so main.cc (which loads the model with
// LibTorch) can use it.
//
// Lifecycle: Start() (health NOT_SERVING, RPCs UNAVAILABLE) -> SetEngine() once the model is loaded and
// warmed up (health SERVING) -> SetServing(false) when draining -> Shutdown(grace).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/model_summary.h"
#include "server/request_limits.h"

namespace titand {

class Engine;
class ServerMetrics;
class TokenTable;

struct ServerOptions {
  std::string host = "127.0.0.1";   // listen address
  int port = 50051;                 // 0 = pick a free port (see TitandServer::port())
  size_t stream_buffer_chunks = 256;  // per-stream buffer; full -> the stream is cancelled as too slow
  int call_threads = 2;             // workers for unary engine calls
  int64_t max_receive_bytes = 4 << 20;  // largest request message (gRPC max receive); larger -> RESOURCE_EXHAUSTED
  // TLS (PEM files). Cert + key: the gRPC port speaks TLS only. Client CA as well: mutual TLS, a client
  // must present a certificate signed by it (the handshake fails otherwise). All empty: plaintext.
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  // Plaintext port serving grpc.health.v1 only (Kubernetes gRPC probes cannot speak TLS); 0 = none.
  int health_port = 0;
  const TokenTable* tokens = nullptr;  // bearer tokens -> tenants (not owned); null = authentication off
  RequestLimits limits;
  absl::Status Validate() const;
};

class TitandServer {
 public:
  static absl::StatusOr<std::unique_ptr<TitandServer>> Start(const ServerOptions& options, ServerMetrics* metrics);
  ~TitandServer();

  int port() const;
  int health_port() const;  // the bound plaintext health port (0 = none)
  // Serve with this engine (not owned) from now on; health becomes SERVING.
  void SetEngine(Engine* engine, const ModelSummary& summary);
  // Health status of "" and "titand.v1.Inference".
  void SetServing(bool serving);
  // Health status of one named component (e.g. "titand.v1.SharedStore"); the server's own status is
  // not affected (turns go on with local state while Redis is unreachable).
  void SetComponentServing(const std::string& service, bool serving);
  // Stops accepting calls; running calls get until now + grace, then are cancelled. Blocks until done.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  explicit TitandServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace titand
