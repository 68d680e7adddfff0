#include "core/engine/scheduler.h"

#include <algorithm>

namespace titand {

absl::Status SchedulerConfig::Validate() const {
  if (max_running < 1) return absl::InvalidArgumentError("max_running must be >= 1");
  if (prefill_chunk < 1) return absl::InvalidArgumentError("prefill_chunk must be >= 1");
  if (max_step_tokens < max_running)
    return absl::InvalidArgumentError("max_step_tokens must be >= max_running (every decode must fit a step)");
  return absl::OkStatus();
}

int64_t StepPlan::tokens() const {
  int64_t n = static_cast<int64_t>(decode.size());
  for (const auto& p : prefill) n += p.second;
  return n;
}

StepPlan Scheduler::Plan(const std::vector<SchedItem>& items) const {
  // Order everything once: priority desc, then arrival asc.
  std::vector<const SchedItem*> order;
  order.reserve(items.size());
  for (const SchedItem& it : items) order.push_back(&it);
  std::sort(order.begin(), order.end(), [](const SchedItem* a, const SchedItem* b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    if (a->arrival != b->arrival) return a->arrival < b->arrival;
    return a->id < b->id;
  });

  StepPlan plan;
  int64_t budget = config_.max_step_tokens;
  int64_t running = 0;
  // 1. Decodes of running sequences first.
  for (const SchedItem* it : order) {
    if (!it->running) continue;
    ++running;
    if (it->prefill_remaining == 0 && budget > 0) {
      plan.decode.push_back(it->id);
      --budget;
    }
  }
  // 2. Running sequences still prefilling.
  for (const SchedItem* it : order) {
    if (!it->running || it->prefill_remaining == 0 || budget == 0) continue;
    const int64_t n = std::min({it->prefill_remaining, config_.prefill_chunk, budget});
    plan.prefill.emplace_back(it->id, n);
    budget -= n;
  }
  // 3. Admit waiting requests in order while a slot and budget are left.
  for (const SchedItem* it : order) {
    if (it->running || it->blocked) continue;
    if (running >= config_.max_running || budget == 0) break;
    ++running;
    plan.admitted.push_back(it->id);
    if (it->prefill_remaining == 0) {  // nothing to prefill (not produced by the engine; kept total)
      plan.decode.push_back(it->id);
      --budget;
      continue;
    }
    const int64_t n = std::min({it->prefill_remaining, config_.prefill_chunk, budget});
    plan.prefill.emplace_back(it->id, n);
    budget -= n;
  }
  return plan;
}

}  // namespace titand
