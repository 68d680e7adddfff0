// bench_runtime: speed and state size of the bare runtime (no server).
//   bench_runtime --model M [--tptt DIR] [--device auto|cpu|cuda[:N]] [--dtype auto|float32|bfloat16|float16]
//                 [--weights dtype|auto|f32|bf16|int8|int4] [--threads N] [--prefill 512] [--decode 64]
//                 [--contexts 512,2048,8192,32768] [--decode-at 16]
//                 [--batches 1,8,32] [--batch-context 512] [--op-profile 1,32] [--decode-slots N] [--churn]
// Prints one JSON object: prefill tokens/s (real tokens), decode tokens/s at batch 1 after the prefill,
// and decode ms/token at each context length. For the context sweep the state is filled with random
// keys/values/memory of the right shapes instead of prefilling (decode cost depends on shapes, not values).
// --batches: aggregate decode tokens/s of B sequences decoded together (one Forward per step, B inputs),
// each with a synthetic state of --batch-context tokens.
// --decode-slots N: the model keeps N decode slots (core/model/decode_slots.h), as titand does with its
// max_running; 0 (default) stacks the batch's states (core/model/batch_rows.h).
// --churn: the batched decode changes membership every step, as requests end and start under continuous
// batching: B + 1 sequences, each step one of them sits out (compacted, as the engine does when a request
// ends) and rejoins at the next step.
// --op-profile: for each batch size, the ATen operators our code calls per decode step (counted with a
// RecordFunction observer, nested calls excluded) and their inclusive time: the per-token op overhead,
// a figure that does not depend on machine load the way wall time does.
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <map>
#include <chrono>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/model/sink_attention.h"
#include "core/runtime/device.h"
#include "core/runtime/runtime.h"
#include "bench/bench_args.h"
#include "bench/bench_runtime_args.h"
#include "nlohmann/json.hpp"

using namespace titand;
using namespace titand::bench;

namespace {

// Resident set size of this process in MiB (/proc/self/status VmRSS; -1 where unavailable).
double RssMiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}


// A state that has seen `ctx` tokens, with random contents.
SequenceState SyntheticState(const CausalLM& m, int64_t ctx) {
  const ModelConfig& c = m.config();
  SequenceState s = m.NewState();
  auto opt = at::TensorOptions().dtype(m.options().dtype).device(m.options().device);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto w = m.LayerWindow(i);
    const int64_t kept = !w ? ctx : m.LayerSinks(i) > 0 ? SinkWindowCacheLen({*w, m.LayerSinks(i)}, ctx)
                                                        : std::min(*w - 1, ctx);
    LayerState& l = s.layers[i];
    const int64_t cap = w ? kept : kept + 256;
    l.k = at::randn({c.num_kv_heads, cap, c.head_dim}, opt);
    l.v = at::randn({c.num_kv_heads, cap, c.head_dim}, opt);
    l.len = kept;
    if (m.hybrid(i)) l.memory = at::randn({c.num_heads, c.head_dim, c.head_dim}, opt.dtype(at::kFloat)) * 0.05;
  }
  s.num_tokens = ctx;
  return s;
}

double g_decode_cpu_s = 0;  // CPU seconds per step of the last DecodeSeconds call

// Seconds per decode step of all `states` together (each step returns logits on the host: synchronised).
// churn (see --churn): at step i sequence i mod n sits out, compacted as at the end of a request, so one
// sequence leaves and one rejoins every step (B = n - 1 decode together).
double DecodeSeconds(CausalLM& m, std::vector<SequenceState*> states, int steps, bool churn = false) {
  const int64_t n = static_cast<int64_t>(states.size());
  auto step = [&](int i) {
    const int64_t out = churn ? i % n : -1;
    if (out >= 0) states[out]->Compact();
    std::vector<ForwardInput> in;
    for (int64_t b = 0; b < n; ++b) {
      if (b == out) continue;
      ForwardInput f;
      f.state = states[b];
      f.tokens = {i < 0 ? 42 : static_cast<int32_t>(100 + i)};
      in.push_back(std::move(f));
    }
    auto r = m.Forward(in);
    if (!r.ok()) {
      std::cerr << "bench_runtime: decode failed: " << r.status().message() << "\n";
      std::exit(1);
    }
  };
  step(churn ? 0 : -1);  // warm
  const auto t0 = Clock::now();
  const double c0 = ProcessCpuSeconds();
  for (int i = churn ? 1 : 0; i < steps + (churn ? 1 : 0); ++i) step(i);
  g_decode_cpu_s = (ProcessCpuSeconds() - c0) / steps;
  return Seconds(t0, Clock::now()) / steps;
}

// Top-level ATen calls (depth 0 on the calling thread) by name: count and inclusive seconds.
struct OpStats {
  std::map<std::string, std::pair<int64_t, double>> by_name;
};
OpStats* g_op_stats = nullptr;
thread_local int t_depth = 0;
thread_local std::vector<Clock::time_point> t_starts;

std::unique_ptr<at::ObserverContext> OnOpStart(const at::RecordFunction&) {
  t_starts.push_back(Clock::now());
  ++t_depth;
  return nullptr;
}

void OnOpEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  --t_depth;
  const Clock::time_point t0 = t_starts.back();
  t_starts.pop_back();
  if (t_depth == 0 && g_op_stats != nullptr) {
    auto& e = g_op_stats->by_name[fn.name()];
    e.first += 1;
    e.second += Seconds(t0, Clock::now());
  }
}

// Ops per decode step of `b` sequences (mean over `steps` steps) with the top ops by time.
nlohmann::json OpProfile(CausalLM& m, int64_t b, int64_t context, int steps) {
  std::vector<SequenceState> states;
  for (int64_t i = 0; i < b; ++i) states.push_back(SyntheticState(m, context));
  std::vector<SequenceState*> ptrs;
  for (auto& st : states) ptrs.push_back(&st);
  DecodeSeconds(m, ptrs, 1);  // warm
  OpStats stats;
  g_op_stats = &stats;
  auto handle = at::addGlobalCallback(at::RecordFunctionCallback(OnOpStart, OnOpEnd).scopes({at::RecordScope::FUNCTION}));
  const double sec = DecodeSeconds(m, ptrs, steps);
  at::removeCallback(handle);
  g_op_stats = nullptr;
  int64_t total = 0;
  double op_sec = 0;
  std::vector<std::pair<double, std::string>> top;
  for (const auto& [name, e] : stats.by_name) {
    total += e.first;
    op_sec += e.second;
    top.push_back({e.second, name});
  }
  std::sort(top.rbegin(), top.rend());
  nlohmann::json t = nlohmann::json::array();
  for (size_t i = 0; i < std::min<size_t>(12, top.size()); ++i) {
    const auto& e = stats.by_name[top[i].second];
    t.push_back({{"op", top[i].second}, {"calls_per_step", static_cast<double>(e.first) / (steps + 1)},
                 {"ms_per_step", e.second * 1000 / (steps + 1)}});
  }
  // DecodeSeconds runs one extra (warm-up) step inside the observed window: steps + 1 in all.
  return {{"batch", b}, {"ops_per_step", static_cast<double>(total) / (steps + 1)},
          {"op_ms_per_step", op_sec * 1000 / (steps + 1)}, {"step_ms_profiled", sec * 1000}, {"top", t}};
}

}  // namespace

int main(int argc, char** argv) {
  LoadOptions lo;
  if (!ParseLoadArgs("bench_runtime", argc, argv, &lo)) return 2;
  const int prefill = std::stoi(Arg(argc, argv, "prefill", "512"));
  const int decode = std::stoi(Arg(argc, argv, "decode", "64"));
  const int decode_at = std::stoi(Arg(argc, argv, "decode-at", "16"));
  const int64_t batch_context = std::stoll(Arg(argc, argv, "batch-context", "512"));
  auto list = [&](const char* name, const char* def) {
    std::vector<int64_t> v;
    for (absl::string_view p : absl::StrSplit(Arg(argc, argv, name, def), ',', absl::SkipEmpty())) {
      int64_t x;
      if (absl::SimpleAtoi(p, &x)) v.push_back(x);
    }
    return v;
  };
  const std::vector<int64_t> contexts = list("contexts", "512,2048,8192,32768");
  const std::vector<int64_t> batches = list("batches", "");
  const std::vector<int64_t> op_profile = list("op-profile", "");
  const std::string slots_arg = Arg(argc, argv, "decode-slots", "0");
  int64_t decode_slots = 0;
  if (!absl::SimpleAtoi(slots_arg, &decode_slots) || decode_slots < 0) {
    std::cerr << "bench_runtime: --decode-slots: expected a count >= 0, got '" << slots_arg << "'\n";
    return 2;
  }
  bool churn = false;
  for (int i = 1; i < argc; ++i) churn = churn || std::string(argv[i]) == "--churn";
  std::unique_ptr<Runtime> rt = LoadOrReport("bench_runtime", lo);
  if (!rt) return 1;
  CausalLM& m = *rt->model;
  nlohmann::json out = RunHeader(*rt, lo);
  out["rss_mib_after_load"] = RssMiB();
  m.EnableDecodeSlots(decode_slots);
  out["decode_slots"] = decode_slots;
  out["decode_slot_bytes"] = m.DecodeSlotBytes();
  // Prefill: `prefill` real tokens in one forward (after one warm-up run).
  std::vector<int32_t> toks;
  for (int i = 0; i < prefill; ++i) toks.push_back(static_cast<int32_t>((i * 7919) % 40000 + 100));
  for (int rep = 0; rep < 2; ++rep) {
    SequenceState s = m.NewState();
    std::vector<ForwardInput> in(1);
    in[0].tokens = toks;
    in[0].state = &s;
    const auto t0 = Clock::now();
    const double c0 = ProcessCpuSeconds();
    auto r = m.Forward(in);
    if (!r.ok()) {
      std::cerr << "bench_runtime: prefill failed: " << r.status().message() << "\n";
      return 1;
    }
    const double sec = Seconds(t0, Clock::now());
    if (rep == 1) {
      out["prefill_tokens"] = prefill;
      out["prefill_tokens_per_s"] = prefill / sec;
      out["prefill_cpu_ms_per_token"] = (ProcessCpuSeconds() - c0) * 1000 / prefill;
      out["decode_tokens_per_s_after_prefill"] = 1.0 / DecodeSeconds(m, {&s}, decode);
      out["decode_cpu_ms_per_token_after_prefill"] = g_decode_cpu_s * 1000;
      out["decode_tokens"] = decode;
    }
  }
  nlohmann::json sweep = nlohmann::json::array();
  for (int64_t ctx : contexts) {
    SequenceState s = SyntheticState(m, ctx);
    const double sec = DecodeSeconds(m, {&s}, decode_at);
    sweep.push_back({{"context", ctx}, {"decode_ms_per_token", sec * 1000}, {"state_bytes", m.StateBytesAt(ctx)}});
  }
  out["decode_at_context"] = sweep;
  nlohmann::json agg = nlohmann::json::array();
  for (int64_t b : batches) {
    std::vector<SequenceState> states;
    for (int64_t i = 0; i < b + (churn ? 1 : 0); ++i) states.push_back(SyntheticState(m, batch_context));
    std::vector<SequenceState*> ptrs;
    for (auto& st : states) ptrs.push_back(&st);
    const double sec = DecodeSeconds(m, ptrs, decode_at, churn);
    agg.push_back({{"batch", b}, {"context", batch_context}, {"step_ms", sec * 1000},
                   {"step_cpu_ms", g_decode_cpu_s * 1000}, {"churn", churn},
                   {"aggregate_tokens_per_s", b / sec}});
  }
  out["batched_decode"] = agg;
  if (!op_profile.empty()) {
    nlohmann::json prof = nlohmann::json::array();
    for (int64_t b : op_profile) prof.push_back(OpProfile(m, b, batch_context, decode_at));
    out["op_profile"] = prof;
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
