#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"

namespace titand {
namespace {

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events` or the deadline passes (false).
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// Writes all of `data` by the deadline (MSG_NOSIGNAL: a vanished client must not raise SIGPIPE); a
// client that stops reading is dropped at the deadline.
void SendAll(int fd, const std::string& data, Clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return;
      continue;
    }
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string Response(int code, const char* reason, const char* type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string ip = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: not an IPv4 address: ", host));
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("metrics: socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", host, ":", port, ": ", err));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(fd, ntohs(addr.sin_port), std::move(registry)));
}

MetricsHttpServer::MetricsHttpServer(int fd, int port, std::shared_ptr<prometheus::Registry> registry)
    : fd_(fd), port_(port), registry_(std::move(registry)), thread_([this] { Loop(); }) {}

MetricsHttpServer::~MetricsHttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](int* n) { return *n == 0; }, &active_));
}

void MetricsHttpServer::Loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;  // wake up every 200 ms to notice stop_
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) continue;
    {
      absl::MutexLock lock(&mu_);
      if (active_ >= kMaxConnections) {  // full: refuse rather than queue behind slow clients
        ::close(conn);
        continue;
      }
      ++active_;
    }
    std::thread([this, conn] { Handle(conn); }).detach();
  }
}

void MetricsHttpServer::Handle(int conn) {
  Serve(conn, std::chrono::steady_clock::now() + kConnectionDeadline);
  ::close(conn);
  absl::MutexLock lock(&mu_);
  --active_;
}

void MetricsHttpServer::Serve(int conn, std::chrono::steady_clock::time_point deadline) {
  // Read the request head: up to the blank line, at most 8 KiB, by the deadline.
  std::string head;
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    if (!WaitFor(conn, POLLIN, deadline)) return;
    ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  size_t line_end = head.find("\r\n");
  std::string line = head.substr(0, line_end);
  // "GET /metrics HTTP/1.1" (a query string is ignored).
  bool get = line.rfind("GET ", 0) == 0;
  std::string target = get ? line.substr(4, line.find(' ', 4) - 4) : "";
  std::string path = target.substr(0, target.find('?'));
  if (!get) {
    SendAll(conn, Response(405, "Method Not Allowed", "text/plain", "only GET\n"), deadline);
  } else if (path == "/metrics") {
    std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
    SendAll(conn, Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body), deadline);
  } else {
    SendAll(conn, Response(404, "Not Found", "text/plain", "see /metrics\n"), deadline);
  }
}

}  // namespace titand
