// A small synchronous Redis client over hiredis (Debian's libhiredis-dev: 0.14 on Debian 12, 1.x on
// Debian 13). Only the calls present in both are used: redisConnectWithTimeout, redisSetTimeout,
// redisCommandArgv, freeReplyObject, redisFree. TLS needs hiredis >= 1.0 with libhiredis_ssl
// (TITAND_HAVE_HIREDIS_SSL, set by CMake when pkg-config finds hiredis_ssl); without it a TLS option is
// rejected with FAILED_PRECONDITION at Open (never silently ignored).
//
// Errors: a connection or I/O failure -> UNAVAILABLE (the connection is dropped and the next Command
// reconnects); an error reply from the server ("-ERR ...", "-NOAUTH ...") -> INTERNAL with its text;
// bad URL -> INVALID_ARGUMENT. One RedisConnection is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct redisContext;

namespace titand {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string username;            // Redis 6 ACL user (empty = AUTH with the password only)
  std::string password;            // empty = no AUTH
  bool tls = false;                // rediss:// or --shared-store-tls
  std::string tls_ca;              // CA bundle file (empty = system default)
  std::string tls_cert, tls_key;   // client certificate (mutual TLS), optional
  std::string tls_server_name;     // SNI / verified name (empty = host)
  double connect_timeout_s = 1.0;
  double io_timeout_s = 2.0;       // per command (a 7 MB value on a LAN takes ~10-100 ms)
};

// redis://[[user]:password@]host[:port][/db]   (rediss:// = TLS). Port defaults to 6379, db to 0.
absl::StatusOr<RedisOptions> ParseRedisUrl(const std::string& url);

// True when this build can speak TLS to Redis.
bool RedisTlsAvailable();

struct RedisReply {
  enum Kind { kNil, kInteger, kString, kStatus, kArray };
  Kind kind = kNil;
  int64_t integer = 0;
  std::string str;                 // kString / kStatus
  std::vector<RedisReply> elements;
};

class RedisConnection {
 public:
  // Does not connect yet (the first Command does): a replica may start while Redis is down.
  static absl::StatusOr<std::unique_ptr<RedisConnection>> Open(const RedisOptions& options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // One command, binary-safe arguments. Connects (AUTH, SELECT) first when not connected.
  absl::StatusOr<RedisReply> Command(const std::vector<std::string_view>& args);
  bool connected() const { return ctx_ != nullptr; }

 private:
  explicit RedisConnection(RedisOptions o) : opt_(std::move(o)) {}
  absl::Status Connect();
  void Drop();
  absl::StatusOr<RedisReply> Raw(const std::vector<std::string_view>& args);

  const RedisOptions opt_;
  redisContext* ctx_ = nullptr;
  void* ssl_ = nullptr;            // redisSSLContext* when TLS is built in
};

}  // namespace titand
