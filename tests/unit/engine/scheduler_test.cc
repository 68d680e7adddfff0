// Scheduler driven by a simulated model step (no torch): the simulator applies each plan the way the
// engine does (prefill chunks shrink the remaining prompt; the step that finishes a prompt samples the
// first token; each decode yields one token) and checks the invariants every step.
#include "core/engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

namespace titand {
namespace {

struct SimRequest {
  int32_t priority = 0;
  uint64_t arrival = 0;
  int64_t prompt = 0;      // remaining prompt tokens
  int64_t to_generate = 1;
  int64_t generated = 0;
  bool running = false;
  bool blocked = false;
  int64_t admitted_step = -1, finished_step = -1;
};

class Sim {
 public:
  explicit Sim(SchedulerConfig c) : sched_(c), cfg_(c) {}

  uint64_t Add(int64_t prompt, int64_t gen, int32_t prio = 0) {
    SimRequest r;
    r.priority = prio;
    r.arrival = next_arrival_++;
    r.prompt = prompt;
    r.to_generate = gen;
    live_[next_id_] = r;
    return next_id_++;
  }

  // Runs one step; checks budgets; returns the plan.
  StepPlan Step() {
    std::vector<SchedItem> items;
    for (auto& [id, r] : live_) items.push_back({id, r.priority, r.arrival, r.prompt, r.running, r.blocked});
    StepPlan plan = sched_.Plan(items);
    EXPECT_LE(plan.tokens(), cfg_.max_step_tokens) << "step " << step_;
    std::set<uint64_t> seen;
    for (uint64_t id : plan.admitted) {
      EXPECT_FALSE(live_.at(id).running);
      EXPECT_FALSE(live_.at(id).blocked);
      live_[id].running = true;
      live_[id].admitted_step = step_;
    }
    int64_t running = 0;
    for (auto& [id, r] : live_) running += r.running;
    EXPECT_LE(running, cfg_.max_running);
    for (uint64_t id : plan.decode) {
      EXPECT_TRUE(seen.insert(id).second);
      SimRequest& r = live_.at(id);
      EXPECT_TRUE(r.running);
      EXPECT_EQ(r.prompt, 0);
      ++r.generated;
    }
    for (auto [id, n] : plan.prefill) {
      EXPECT_TRUE(seen.insert(id).second);
      SimRequest& r = live_.at(id);
      EXPECT_TRUE(r.running);
      EXPECT_GE(n, 1);
      EXPECT_LE(n, cfg_.prefill_chunk);
      EXPECT_LE(n, r.prompt);
      r.prompt -= n;
      if (r.prompt == 0) ++r.generated;  // the last chunk's logits give the first token
    }
    for (auto it = live_.begin(); it != live_.end();) {
      if (it->second.running && it->second.generated >= it->second.to_generate) {
        it->second.finished_step = step_;
        done_[it->first] = it->second;
        it = live_.erase(it);
      } else {
        ++it;
      }
    }
    ++step_;
    return plan;
  }

  std::map<uint64_t, SimRequest> live_, done_;
  int64_t step_ = 0;

 private:
  Scheduler sched_;
  SchedulerConfig cfg_;
  uint64_t next_id_ = 1, next_arrival_ = 0;
};

TEST(Scheduler, ValidateRejectsBudgetSmallerThanBatch) {
  SchedulerConfig c;
  c.max_running = 8;
  c.max_step_tokens = 4;
  EXPECT_FALSE(c.Validate().ok());
  c.max_step_tokens = 8;
  EXPECT_TRUE(c.Validate().ok());
  c.prefill_chunk = 0;
  EXPECT_FALSE(c.Validate().ok());
}

TEST(Scheduler, RandomWorkloadRespectsBudgetsAndFinishes) {
  SchedulerConfig c{6, 64, 16};
  Sim sim(c);
  std::mt19937 rng(3);
  for (int i = 0; i < 60; ++i) sim.Add(1 + rng() % 100, 1 + rng() % 20, static_cast<int32_t>(rng() % 3));
  for (int s = 0; s < 2000 && !sim.live_.empty(); ++s) {
    StepPlan p = sim.Step();
    EXPECT_FALSE(p.empty()) << "idle step with work left";
    if (s % 7 == 0 && s < 300) sim.Add(1 + rng() % 100, 1 + rng() % 20, static_cast<int32_t>(rng() % 3));
  }
  EXPECT_TRUE(sim.live_.empty());
  EXPECT_GE(sim.done_.size(), 60u);
}

TEST(Scheduler, LongPromptIsChunkedWhileOthersDecodeEveryStep) {
  SchedulerConfig c{4, 64, 32};
  Sim sim(c);
  std::vector<uint64_t> decoders;
  for (int i = 0; i < 3; ++i) decoders.push_back(sim.Add(5, 100000));
  sim.Step();  // all three prefill their 5 tokens (15 <= 64) and sample their first token
  for (uint64_t d : decoders) ASSERT_EQ(sim.live_[d].prompt, 0);
  const uint64_t big = sim.Add(10000, 1);
  int steps = 0;
  while (sim.live_.count(big)) {
    const int64_t before = sim.live_[big].prompt;
    StepPlan p = sim.Step();
    ++steps;
    for (uint64_t d : decoders) {
      EXPECT_NE(std::find(p.decode.begin(), p.decode.end(), d), p.decode.end()) << "decoder starved at " << steps;
    }
    // 3 decodes leave 61 tokens: one chunk of 32 per step (the chunk bounds a sequence's piece).
    ASSERT_EQ(p.prefill.size(), 1u);
    EXPECT_EQ(p.prefill[0], std::make_pair(big, std::min<int64_t>(32, before)));
    ASSERT_LT(steps, 1000);
  }
  EXPECT_EQ(steps, (10000 + 31) / 32);
}

TEST(Scheduler, HigherPriorityAdmittedFirstFcfsWithin) {
  SchedulerConfig c{1, 16, 16};
  Sim sim(c);
  const uint64_t a = sim.Add(4, 2, 0);
  const uint64_t b = sim.Add(4, 2, 0);
  const uint64_t hi1 = sim.Add(4, 2, 5);
  const uint64_t hi2 = sim.Add(4, 2, 5);
  while (!sim.live_.empty()) sim.Step();
  auto fin = [&](uint64_t id) { return sim.done_.at(id).finished_step; };
  EXPECT_LT(fin(hi1), fin(hi2));
  EXPECT_LT(fin(hi2), fin(a));
  EXPECT_LT(fin(a), fin(b));
}

TEST(Scheduler, MaxRunningBoundsTheBatchAndSlotsRefillInOrder) {
  SchedulerConfig c{3, 100, 50};
  Sim sim(c);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 9; ++i) ids.push_back(sim.Add(2, 3 + i % 2));
  StepPlan p = sim.Step();
  EXPECT_EQ(p.admitted, (std::vector<uint64_t>{ids[0], ids[1], ids[2]}));
  while (!sim.live_.empty()) sim.Step();
  // Admission in arrival order.
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_LE(sim.done_.at(ids[i - 1]).admitted_step, sim.done_.at(ids[i]).admitted_step);
  }
}

TEST(Scheduler, BlockedRequestDoesNotHoldBackOthers) {
  SchedulerConfig c{2, 16, 8};
  Sim sim(c);
  const uint64_t blocked = sim.Add(3, 1);
  sim.live_[blocked].blocked = true;
  const uint64_t other = sim.Add(3, 1);
  StepPlan p = sim.Step();
  EXPECT_EQ(p.admitted, std::vector<uint64_t>{other});
  sim.live_[blocked].blocked = false;
  p = sim.Step();
  EXPECT_EQ(p.admitted, std::vector<uint64_t>{blocked});
}

TEST(Scheduler, NoStarvationUnderSteadyArrivals) {
  // A new same-priority request arrives every step; each one must be admitted within a bounded wait.
  SchedulerConfig c{4, 32, 16};
  Sim sim(c);
  std::map<uint64_t, int64_t> arrived;
  for (int s = 0; s < 400; ++s) {
    arrived[sim.Add(10, 3)] = sim.step_;
    sim.Step();
  }
  while (!sim.live_.empty()) sim.Step();
  int64_t worst = 0;
  for (auto& [id, r] : sim.done_) worst = std::max(worst, r.finished_step - arrived[id]);
  EXPECT_EQ(sim.done_.size(), 400u);
  EXPECT_LT(worst, 50);
}

TEST(Scheduler, BudgetSplitAcrossPrefillsInPriorityOrder) {
  SchedulerConfig c{4, 20, 16};
  Sim sim(c);
  const uint64_t low = sim.Add(30, 1, 0);
  const uint64_t high = sim.Add(30, 1, 1);
  StepPlan p = sim.Step();
  ASSERT_EQ(p.prefill.size(), 2u);
  EXPECT_EQ(p.prefill[0], std::make_pair(high, int64_t{16}));
  EXPECT_EQ(p.prefill[1], std::make_pair(low, int64_t{4}));
}

}  // namespace
}  // namespace titand
