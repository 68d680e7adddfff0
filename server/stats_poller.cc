#include "server/stats_poller.h"

#include "absl/time/time.h"

namespace titand {

StatsPoller::StatsPoller(std::chrono::milliseconds period, std::function<void()> tick)
    : period_(period), tick_(std::move(tick)), thread_([this] { Loop(); }) {}

StatsPoller::~StatsPoller() { Stop(); }

void StatsPoller::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void StatsPoller::Loop() {
  while (true) {
    tick_();
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::FromChrono(period_));
    if (stop_) return;
  }
}

}  // namespace titand
