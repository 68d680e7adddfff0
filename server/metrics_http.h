// A minimal HTTP/1.1 endpoint serving GET /metrics (Prometheus text format 0.0.4) from a registry.
//
// Why not prometheus-cpp's Exposer (civetweb): Debian's civetweb starts its worker threads with a
// ~100 KiB stack, and in a process that links LibTorch (whose dependencies carry ~100 KiB of static TLS:
// openblas, glog, torch_cpu) glibc's pthread_create refuses such stacks with EINVAL, so the Exposer
// fails with "null context when constructing CivetServer". One thread with a default stack here:
// accept, read the request head (bounded: 8 KiB, 2 s), answer, close. Scrapes are rare and small.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace prometheus {
class Registry;
}

namespace titand {

class MetricsHttpServer {
 public:
  // Binds host:port (port 0 = any free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();  // stops and joins
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::shared_ptr<prometheus::Registry> registry);
  void Loop();
  void Serve(int conn);

  const int fd_;
  const int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace titand
