// A timer thread that calls a function every `period` until stopped (refreshes metric gauges from
// Engine::Stats outside the engine thread).
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace titand {

class StatsPoller {
 public:
  StatsPoller(std::chrono::milliseconds period, std::function<void()> tick);
  ~StatsPoller();  // stops and joins
  StatsPoller(const StatsPoller&) = delete;
  StatsPoller& operator=(const StatsPoller&) = delete;

  void Stop();

 private:
  void Loop();

  const std::chrono::milliseconds period_;
  const std::function<void()> tick_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace titand
