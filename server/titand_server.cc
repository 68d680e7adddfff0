#include "server/titand_server.h"

#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "server/inference_service.h"

namespace titand {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat(what, " ", path, ": cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (ss.str().find("-----BEGIN") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": not a PEM file"));
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(o.tls_client_ca_file.empty()
                                            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> cert = ReadPem(o.tls_cert_file, "--tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(o.tls_key_file, "--tls-key");
  if (!key.ok()) return key.status();
  pair.cert_chain = *cert;
  pair.private_key = *key;
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(o.tls_client_ca_file, "--tls-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::Status ServerOptions::Validate() const {
  if (host.empty()) return absl::InvalidArgumentError("host: empty");
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("port: out of range: ", port));
  if (health_port < 0 || health_port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("health_port: out of range: ", health_port));
  if (stream_buffer_chunks < 1) return absl::InvalidArgumentError("stream_buffer_chunks: must be >= 1");
  if (call_threads < 1) return absl::InvalidArgumentError("call_threads: must be >= 1");
  if (max_receive_bytes < 1024 || max_receive_bytes > (1ll << 30))
    return absl::InvalidArgumentError("max_receive_bytes: must be in [1KiB, 1GiB]");
  if (tls_cert_file.empty() != tls_key_file.empty())
    return absl::InvalidArgumentError("TLS needs both a certificate and a key");
  if (!tls_client_ca_file.empty() && tls_cert_file.empty())
    return absl::InvalidArgumentError("a TLS client CA (mutual TLS) needs a server certificate and key");
  return limits.Validate();
}

struct TitandServer::Impl {
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::Server> health_server;  // plaintext, grpc.health.v1 only
  int port = 0;
  int health_port = 0;
};

TitandServer::TitandServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TitandServer::~TitandServer() {
  if (impl_->server) Shutdown(std::chrono::milliseconds(0));
}

absl::StatusOr<std::unique_ptr<TitandServer>> TitandServer::Start(const ServerOptions& options,
                                                                  ServerMetrics* metrics) {
  absl::Status st = options.Validate();
  if (!st.ok()) return st;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = Credentials(options);
  if (!creds.ok()) return creds.status();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<InferenceService>(metrics, options.stream_buffer_chunks, options.call_threads,
                                                     options.tokens, options.limits);
  grpc::ServerBuilder builder;
  std::string address = absl::StrCat(options.host, ":", options.port);
  // gRPC sets SO_REUSEPORT by default: a second titand on the same port would start and the kernel would
  // spread connections over both. One server per port: a busy port is a start-up error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, *creds, &impl->port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, " (in use, or not an address of this host)"));
  }
  if (options.health_port > 0) {
    // A second server with no service of its own: only the default health service (and reflection).
    grpc::ServerBuilder hb;
    std::string haddress = absl::StrCat(options.host, ":", options.health_port);
    hb.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    hb.AddListeningPort(haddress, grpc::InsecureServerCredentials(), &impl->health_port);
    hb.SetMaxReceiveMessageSize(4096);
    impl->health_server = hb.BuildAndStart();
    if (!impl->health_server || impl->health_port == 0) {
      impl->server->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", haddress, " (health port)"));
    }
  }
  std::unique_ptr<TitandServer> server(new TitandServer(std::move(impl)));
  server->SetServing(false);
  return server;
}

int TitandServer::port() const { return impl_->port; }
int TitandServer::health_port() const { return impl_->health_port; }

void TitandServer::SetEngine(Engine* engine, const ModelSummary& summary) {
  impl_->service->SetEngine(engine, summary);
  SetServing(engine != nullptr);
}

void TitandServer::SetServing(bool serving) {
  for (grpc::Server* s : {impl_->server.get(), impl_->health_server.get()}) {
    if (s == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = s->GetHealthCheckService();
    if (health == nullptr) continue;
    health->SetServingStatus(serving);  // every service, "" included
    health->SetServingStatus("titand.v1.Inference", serving);
  }
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
  if (impl_->health_server) {
    impl_->health_server->Shutdown(std::chrono::system_clock::now());
    impl_->health_server->Wait();
    impl_->health_server.reset();
  }
}

}  // namespace titand
