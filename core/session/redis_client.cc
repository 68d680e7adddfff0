#include "core/session/redis_client.h"

#include <hiredis/hiredis.h>
#ifdef TITAND_HAVE_HIREDIS_SSL
#include <hiredis/hiredis_ssl.h>
#endif

#include <sys/time.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/common/status.h"

namespace titand {
namespace {

timeval ToTimeval(double seconds) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(std::floor(seconds));
  tv.tv_usec = static_cast<suseconds_t>((seconds - std::floor(seconds)) * 1e6);
  return tv;
}

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER: out.kind = RedisReply::kInteger; out.integer = r->integer; break;
    case REDIS_REPLY_STRING: out.kind = RedisReply::kString; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_STATUS: out.kind = RedisReply::kStatus; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default: out.kind = RedisReply::kNil; break;  // NIL (and RESP3 types we never ask for)
  }
  return out;
}

}  // namespace

bool RedisTlsAvailable() {
#ifdef TITAND_HAVE_HIREDIS_SSL
  return true;
#else
  return false;
#endif
}

absl::StatusOr<RedisOptions> ParseRedisUrl(const std::string& url) {
  RedisOptions o;
  std::string rest;
  if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("rediss://", 0) == 0) {
    rest = url.substr(9);
    o.tls = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("shared store URL must start with redis:// or rediss://: '", url, "'"));
  }
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = cred.find(':');
    if (colon == std::string::npos) {
      o.password = cred;
    } else {
      o.username = cred.substr(0, colon);
      o.password = cred.substr(colon + 1);
    }
  }
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && (!absl::SimpleAtoi(db, &o.db) || o.db < 0))
      return absl::InvalidArgumentError(absl::StrCat("shared store URL: bad database number '", db, "'"));
  }
  if (size_t colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!absl::SimpleAtoi(port, &o.port) || o.port < 1 || o.port > 65535)
      return absl::InvalidArgumentError(absl::StrCat("shared store URL: bad port '", port, "'"));
  }
  if (rest.empty()) return absl::InvalidArgumentError(absl::StrCat("shared store URL has no host: '", url, "'"));
  o.host = rest;
  return o;
}

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Open(const RedisOptions& options) {
  if (options.tls && !RedisTlsAvailable()) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS to Redis is not available in this build: it needs hiredis >= 1.0 with libhiredis_ssl "
                     "(Debian 13's libhiredis-dev); this build has hiredis ",
                     HIREDIS_MAJOR, ".", HIREDIS_MINOR, " without TLS"));
  }
  std::unique_ptr<RedisConnection> c(new RedisConnection(options));
#ifdef TITAND_HAVE_HIREDIS_SSL
  if (options.tls) {
    redisInitOpenSSL();
    redisSSLContextError err = REDIS_SSL_CTX_NONE;
    const std::string& sni = options.tls_server_name.empty() ? options.host : options.tls_server_name;
    auto opt = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
    redisSSLContext* ctx = redisCreateSSLContext(opt(options.tls_ca), nullptr, opt(options.tls_cert),
                                                 opt(options.tls_key), sni.c_str(), &err);
    if (ctx == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("Redis TLS context: ", redisSSLContextGetError(err)));
    c->ssl_ = ctx;
  }
#endif
  return c;
}

RedisConnection::~RedisConnection() {
  Drop();
#ifdef TITAND_HAVE_HIREDIS_SSL
  if (ssl_) redisFreeSSLContext(static_cast<redisSSLContext*>(ssl_));
#endif
}

void RedisConnection::Drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

absl::Status RedisConnection::Connect() {
  Drop();
  redisContext* c = redisConnectWithTimeout(opt_.host.c_str(), opt_.port, ToTimeval(opt_.connect_timeout_s));
  if (c == nullptr) return absl::UnavailableError("Redis: out of memory creating a connection");
  if (c->err) {
    std::string why = c->errstr;
    redisFree(c);
    return absl::UnavailableError(absl::StrCat("Redis ", opt_.host, ":", opt_.port, " unreachable: ", why));
  }
  ctx_ = c;
  redisSetTimeout(ctx_, ToTimeval(opt_.io_timeout_s));
#ifdef TITAND_HAVE_HIREDIS_SSL
  if (ssl_ && redisInitiateSSLWithContext(ctx_, static_cast<redisSSLContext*>(ssl_)) != REDIS_OK) {
    std::string why = ctx_->errstr;
    Drop();
    return absl::UnavailableError(absl::StrCat("Redis TLS handshake with ", opt_.host, " failed: ", why));
  }
#endif
  if (!opt_.password.empty()) {
    std::vector<std::string_view> auth = {"AUTH"};
    if (!opt_.username.empty()) auth.push_back(opt_.username);
    auth.push_back(opt_.password);
    absl::StatusOr<RedisReply> r = Raw(auth);
    if (!r.ok()) {
      Drop();
      return absl::Status(r.status().code(), absl::StrCat("Redis AUTH: ", r.status().message()));
    }
  }
  if (opt_.db != 0) {
    const std::string db = std::to_string(opt_.db);
    absl::StatusOr<RedisReply> r = Raw({"SELECT", db});
    if (!r.ok()) {
      Drop();
      return absl::Status(r.status().code(), absl::StrCat("Redis SELECT ", db, ": ", r.status().message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisConnection::Raw(const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (r == nullptr) {
    std::string why = ctx_->errstr;
    Drop();
    return absl::UnavailableError(absl::StrCat("Redis ", opt_.host, ":", opt_.port, ": ", why));
  }
  if (r->type == REDIS_REPLY_ERROR) {
    std::string msg(r->str, r->len);
    freeReplyObject(r);
    return absl::InternalError(absl::StrCat("Redis error: ", msg));
  }
  RedisReply out = Convert(r);
  freeReplyObject(r);
  return out;
}

absl::StatusOr<RedisReply> RedisConnection::Command(const std::vector<std::string_view>& args) {
  const bool reused = ctx_ != nullptr;
  if (!reused) RETURN_IF_ERROR(Connect());
  absl::StatusOr<RedisReply> r = Raw(args);
  // A kept connection may have died since its last use (Redis restarted): one fresh try.
  if (reused && absl::IsUnavailable(r.status()) && Connect().ok()) r = Raw(args);
  return r;
}

}  // namespace titand
