#include "server/titand_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "server/inference_service.h"

namespace titand {

absl::Status ServerOptions::Validate() const {
  if (host.empty()) return absl::InvalidArgumentError("host: empty");
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("port: out of range: ", port));
  if (stream_buffer_chunks < 1) return absl::InvalidArgumentError("stream_buffer_chunks: must be >= 1");
  if (call_threads < 1) return absl::InvalidArgumentError("call_threads: must be >= 1");
  return absl::OkStatus();
}

struct TitandServer::Impl {
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

TitandServer::TitandServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TitandServer::~TitandServer() {
  if (impl_->server) Shutdown(std::chrono::milliseconds(0));
}

absl::StatusOr<std::unique_ptr<TitandServer>> TitandServer::Start(const ServerOptions& options,
                                                                  ServerMetrics* metrics) {
  absl::Status st = options.Validate();
  if (!st.ok()) return st;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<InferenceService>(metrics, options.stream_buffer_chunks, options.call_threads);
  grpc::ServerBuilder builder;
  std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl->port);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  std::unique_ptr<TitandServer> server(new TitandServer(std::move(impl)));
  server->SetServing(false);
  return server;
}

int TitandServer::port() const { return impl_->port; }

void TitandServer::SetEngine(Engine* engine, const ModelSummary& summary) {
  impl_->service->SetEngine(engine, summary);
  SetServing(engine != nullptr);
}

void TitandServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = impl_->server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);  // every service, "" included
  health->SetServingStatus("titand.v1.Inference", serving);
}

void TitandServer::SetComponentServing(const std::string& service, bool serving) {
  grpc::HealthCheckServiceInterface* health = impl_->server ? impl_->server->GetHealthCheckService() : nullptr;
  if (health != nullptr) health->SetServingStatus(service, serving);
}

void TitandServer::Shutdown(std::chrono::milliseconds grace) {
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace titand
