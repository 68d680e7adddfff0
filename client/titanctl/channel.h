// The channel titanctl talks through: plaintext, TLS (server verified against a CA bundle) or mutual TLS
// (plus this client's certificate), and optionally a bearer token added to every call as metadata
// "authorization: Bearer <token>" (by a client interceptor, so it works over plaintext too).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace titand {

struct ChannelOptions {
  std::string address;
  std::string token;          // empty = none
  std::string tls_ca_file;    // PEM; empty = plaintext
  std::string tls_cert_file;  // PEM client certificate (mutual TLS); with tls_key_file
  std::string tls_key_file;
  std::string tls_server_name;  // overrides the name checked in the server certificate
};

// NOT_FOUND / INVALID_ARGUMENT for unreadable or inconsistent files.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& o);

}  // namespace titand
