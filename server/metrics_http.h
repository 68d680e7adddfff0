// A minimal HTTP/1.1 endpoint serving GET /metrics (Prometheus text format 0.0.4) from a registry.
//
// Why not prometheus-cpp's Exposer (civetweb): Debian's civetweb starts its worker threads with a
// ~100 KiB stack, and in a process that links LibTorch (whose dependencies carry ~100 KiB of static TLS:
// openblas, glog, torch_cpu) glibc's pthread_create refuses such stacks with EINVAL, so the Exposer
// fails with "null context when constructing CivetServer". Here, threads with the default stack:
//
//   accept thread ──▶ one handler thread per connection (at most kMaxConnections at a time; more are
//                     closed at once), each with a deadline for the whole exchange: the request head
//                     (<= 8 KiB) must arrive and the answer be sent within kConnectionDeadline, else the
//                     connection is closed. Sockets are non-blocking; every wait is a poll() bounded by
//                     the deadline.
//
// So slow or idle clients (one byte a second) hold a handler each, at most until their deadline, and
// never delay a normal scrape served beside them. Plain HTTP, no authentication: bind it to an internal
// address (main's --metrics-host, loopback by default) and see docs/operations.md.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

#include "absl/status/statusor.h"

namespace prometheus {
class Registry;
}

namespace titand {

class MetricsHttpServer {
 public:
  static constexpr int kMaxConnections = 32;
  static constexpr std::chrono::milliseconds kConnectionDeadline{2000};

  // Binds host:port (port 0 = any free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();  // stops, waits for the handlers (each ends by its deadline) and joins
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::shared_ptr<prometheus::Registry> registry);
  void Loop();
  void Handle(int conn);  // handler thread: serves one connection, closes it, counts itself out
  void Serve(int conn, std::chrono::steady_clock::time_point deadline);

  const int fd_;
  const int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;  // handler threads running (detached; waited for by count)
  std::thread thread_;
};

}  // namespace titand
