#include "client/titanctl/channel.h"

#include <fstream>
#include <sstream>
#include <vector>

#include <grpcpp/support/client_interceptor.h>

#include "absl/strings/str_cat.h"

namespace titand {
namespace {

class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string& header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      m->GetSendInitialMetadata()->insert({"authorization", header_});
    }
    m->Proceed();
  }

 private:
  const std::string& header_;
};

class BearerFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerFactory(std::string token) : header_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(header_);
  }

 private:
  const std::string header_;  // lives as long as the channel (the channel owns the factory)
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& o) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!o.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadFile(o.tls_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (o.tls_cert_file.empty() != o.tls_key_file.empty())
      return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
    if (!o.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(o.tls_cert_file), key = ReadFile(o.tls_key_file);
      if (!cert.ok()) return cert.status();
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
    if (!o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  } else if (!o.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert needs --tls-ca");
  }
  if (o.token.empty()) return grpc::CreateCustomChannel(o.address, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerFactory>(o.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(o.address, creds, args, std::move(interceptors));
}

}  // namespace titand
