// Step scheduler: pure policy over request metadata (no torch, no threads). Each engine step asks it
// which sequences run and how many tokens each feeds; the engine packs them into one model forward.
//
// Policy, per step, with a token budget B = max_step_tokens:
//   1. every running sequence that is decoding feeds 1 token (decodes are never starved by prefills;
//      Validate() ensures max_running <= max_step_tokens so they always fit);
//   2. running sequences still prefilling get chunks of min(remaining, prefill_chunk, budget left), in
//      order (priority desc, arrival asc) — a long prompt is split over steps, interleaved with decodes;
//   3. while fewer than max_running sequences run and budget is left, waiting requests are admitted in
//      order (priority desc, arrival asc = FCFS within a priority) and given their first chunk. A waiting
//      request marked `blocked` (its session is busy) is skipped without holding back those behind it.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace titand {

struct SchedulerConfig {
  int64_t max_running = 16;      // sequences in one batch
  int64_t max_step_tokens = 512; // tokens fed per step (prefill chunks + decodes)
  int64_t prefill_chunk = 256;   // largest prefill piece of one sequence per step
  absl::Status Validate() const;
};

struct SchedItem {
  uint64_t id = 0;
  int32_t priority = 0;          // higher first
  uint64_t arrival = 0;          // enqueue order (smaller = earlier)
  int64_t prefill_remaining = 0; // tokens still to feed before sampling starts (0 = decoding)
  bool running = false;          // admitted earlier (holds a batch slot)
  bool blocked = false;          // waiting and not admissible now (its session is busy)
};

struct StepPlan {
  std::vector<uint64_t> decode;                         // 1 token each
  std::vector<std::pair<uint64_t, int64_t>> prefill;    // (id, tokens this step), tokens >= 1
  std::vector<uint64_t> admitted;                       // newly admitted this step (also in `prefill`)
  int64_t tokens() const;                               // decode.size() + sum of prefill tokens
  bool empty() const { return decode.empty() && prefill.empty(); }
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config) : config_(config) {}
  // `items` = every live request (running and waiting), in any order.
  StepPlan Plan(const std::vector<SchedItem>& items) const;
  const SchedulerConfig& config() const { return config_; }

 private:
  SchedulerConfig config_;
};

}  // namespace titand
