// A few worker threads that run engine calls which may wait on the engine thread (session create,
// fork, delete ...), so that gRPC reactions never block: a unary handler posts the call here and
// returns; the worker finishes the RPC.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace titand {

class CallPool {
 public:
  explicit CallPool(int threads);
  ~CallPool();  // runs what is queued, then joins
  CallPool(const CallPool&) = delete;
  CallPool& operator=(const CallPool&) = delete;

  void Post(std::function<void()> fn);

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace titand
