// bench_generate: the bare runtime's streamed generation (no server): the same work one streamed Generate
// call does inside titand (prefill, then per token: forward, sample, stop checks, detokenize), timed per
// token. The reference side of bench/bench_server_overhead.py.
//   bench_generate --model M [--tptt DIR] [--dtype D] [--device D] [--weights W] [--threads N] --tokens 1,2,3
//                  [--max-tokens 64] [--reps 3] [--temperature 0] [--top-k 0] [--top-p 1] [--seed 0]
//                  [--on-thread worker|main]
// The generations run on a thread of their own with the intra-op thread count set on it, as titand's
// engine thread does (the model is loaded on the main thread in both), unless --on-thread main.
// Prints one JSON object: per repetition the time to the first token and the mean decode time per token
// ((t_last - t_first) / (n - 1), the same formula the server side uses on the client's arrival times),
// the process CPU time per decoded token over the same span (every thread: spinning OpenMP workers count),
// the best (lowest) of the repetitions, and the generated ids (identical to the server's for greedy).
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/runtime/device.h"
#include "core/runtime/generate.h"
#include "core/runtime/runtime.h"
#include "bench/bench_args.h"
#include "bench/bench_runtime_args.h"
#include "nlohmann/json.hpp"

using namespace titand;
using namespace titand::bench;

int main(int argc, char** argv) {
  LoadOptions lo;
  if (!ParseLoadArgs("bench_generate", argc, argv, &lo)) return 2;
  const int reps = std::stoi(Arg(argc, argv, "reps", "3"));
  DecodeParams p;
  p.stop.max_tokens = std::stoi(Arg(argc, argv, "max-tokens", "64"));
  p.stop.ignore_eos = true;
  p.sampling.temperature = std::stof(Arg(argc, argv, "temperature", "0"));
  p.sampling.top_k = std::stoi(Arg(argc, argv, "top-k", "0"));
  p.sampling.top_p = std::stof(Arg(argc, argv, "top-p", "1"));
  p.sampling.seed = std::stoull(Arg(argc, argv, "seed", "0"));
  std::vector<int32_t> prompt;
  for (absl::string_view s : absl::StrSplit(Arg(argc, argv, "tokens", ""), ',', absl::SkipEmpty())) {
    int32_t x;
    if (!absl::SimpleAtoi(s, &x)) {
      std::cerr << "bench_generate: --tokens must be a comma-separated id list\n";
      return 2;
    }
    prompt.push_back(x);
  }
  if (prompt.empty() || p.stop.max_tokens < 2) {
    std::cerr << "bench_generate: --tokens (non-empty) and --max-tokens >= 2 are required\n";
    return 2;
  }
  std::unique_ptr<Runtime> rt = LoadOrReport("bench_generate", lo);
  if (!rt) return 1;
  CausalLM& m = *rt->model;
  nlohmann::json out = RunHeader(*rt, lo);
  out["prompt_tokens"] = prompt.size();
  out["max_tokens"] = p.stop.max_tokens;
  nlohmann::json runs = nlohmann::json::array();
  double best = 1e30;
  std::vector<int32_t> ids;
  const bool on_main = Arg(argc, argv, "on-thread", "worker") == "main";
  out["on_thread"] = on_main ? "main" : "worker";
  int rc = 0;
  auto run_all = [&] {
  for (int rep = -1; rep < reps; ++rep) {  // rep -1: warm-up (one-off allocations, lazy inits)
    SessionCursor cur{m.NewState(), {}};
    std::vector<Clock::time_point> at;
    std::vector<double> cpu;
    const auto t0 = Clock::now();
    auto r = Generate(m, *rt->tokenizer, cur, prompt, p, [&](int32_t, const std::string&) {
      at.push_back(Clock::now());
      cpu.push_back(ProcessCpuSeconds());
      return true;
    });
    if (!r.ok()) {
      std::cerr << "bench_generate: " << r.status().message() << "\n";
      rc = 1;
      return;
    }
    if (rep < 0) continue;
    const double per_token = Seconds(at.front(), at.back()) / static_cast<double>(at.size() - 1);
    const double cpu_per_token = (cpu.back() - cpu.front()) / static_cast<double>(at.size() - 1);
    runs.push_back({{"ttft_ms", Seconds(t0, at.front()) * 1000}, {"decode_ms_per_token", per_token * 1000},
                    {"decode_cpu_ms_per_token", cpu_per_token * 1000}, {"generated", at.size()}});
    best = std::min(best, per_token);
    ids = r->tokens;
  }
  };
  if (on_main) {
    run_all();
  } else {  // as the server's engine thread: a thread of its own, the intra-op thread count set on it
    const int intra_op_threads = at::get_num_threads();
    std::thread([&] {
      UseIntraOpThreads(intra_op_threads);
      run_all();
    }).join();
  }
  if (rc != 0) return rc;
  out["runs"] = runs;
  out["best_decode_ms_per_token"] = best * 1000;
  out["token_ids"] = ids;
  std::cout << out.dump(2) << "\n";
  return 0;
}
