// A real redis-server for tests: started on a free loopback port in a temp dir, no persistence
// (--save "" --appendonly no), killed (SIGKILL) by Stop or the destructor. Restart() keeps the port.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/session/redis_client.h"

namespace titand::redis_test {

inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t n = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

class RedisServer {
 public:
  RedisServer() : port_(FreePort()) {
    char tmpl[] = "/tmp/titand-redis-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    Start();
  }
  ~RedisServer() {
    Stop();
    std::system(("rm -rf " + dir_).c_str());
  }
  int port() const { return port_; }
  RedisOptions options() const {
    RedisOptions o;
    o.port = port_;
    o.connect_timeout_s = 0.5;
    o.io_timeout_s = 2;
    return o;
  }
  void Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string port = std::to_string(port_), log = dir_ + "/redis.log";
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--dir", dir_.c_str(),
               "--save", "", "--appendonly", "no", "--loglevel", "warning", "--logfile", log.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    auto c = RedisConnection::Open(options());
    for (int i = 0; i < 200; ++i) {
      if ((*c)->Command({"PING"}).ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ADD_FAILURE() << "redis-server did not start on port " << port_ << " (is the redis-server package installed?)";
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace titand::redis_test
