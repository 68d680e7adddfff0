// bench_sampler: time of one Sampler::Sample call over a 49,152-entry vocabulary (SmolLM2's), per
// sampling configuration. Not a test: figures go to BENCHMARKS.md.
//   bench_sampler [--vocab 49152] [--calls 2000] [--history 256]
// Logits are Gaussian (seeded): "peaked" (std 4, the nucleus at p = 0.9 holds a few hundred tokens, like
// an LM's next-token distribution) and "flat" (std 1, the nucleus holds most of the vocabulary: the worst
// case for a top-p that avoids the full sort). Prints one JSON object: microseconds per call (median of
// 5 batches of `calls` / 5 calls, each over 16 rotating logit vectors).
#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/sampling/sampler.h"
#include "bench/bench_args.h"
#include "nlohmann/json.hpp"

using namespace titand;
using namespace titand::bench;

namespace {


struct Config {
  const char* name;
  SamplingParams p;
};

SamplingParams Make(float t, int k, float top_p, float min_p, float rep) {
  SamplingParams p;
  p.temperature = t;
  p.top_k = k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repetition_penalty = rep;
  p.seed = 11;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t vocab = std::stoll(Arg(argc, argv, "vocab", "49152"));
  const int calls = std::max(5, std::stoi(Arg(argc, argv, "calls", "2000")));
  const int hist = std::stoi(Arg(argc, argv, "history", "256"));
  const std::vector<Config> configs = {
      {"greedy", Make(0, 0, 1, 0, 1)},
      {"greedy+repetition_penalty", Make(0, 0, 1, 0, 1.1f)},
      {"temperature 0.8", Make(0.8f, 0, 1, 0, 1)},
      {"top_k 50", Make(0.8f, 50, 1, 0, 1)},
      {"top_p 0.9", Make(0.8f, 0, 0.9f, 0, 1)},
      {"top_k 50 + top_p 0.9", Make(0.8f, 50, 0.9f, 0, 1)},
      {"top_p 0.95 + min_p 0.05 + repetition_penalty", Make(0.8f, 0, 0.95f, 0.05f, 1.1f)},
  };
  std::mt19937_64 rng(1);
  std::vector<int32_t> history;
  for (int i = 0; i < hist; ++i) history.push_back(static_cast<int32_t>(rng() % vocab));
  nlohmann::json out = {{"vocab", vocab}, {"calls", calls}, {"history", hist}};
  for (const auto& [dist, sd] : {std::pair<const char*, float>{"peaked", 4.f}, {"flat", 1.f}}) {
    std::normal_distribution<float> nd(0.f, sd);
    std::vector<std::vector<float>> rows(16, std::vector<float>(vocab));
    for (auto& r : rows)
      for (float& x : r) x = nd(rng);
    nlohmann::json d = nlohmann::json::object();
    for (const Config& c : configs) {
      Sampler s(c.p);
      int64_t sink = 0;
      for (int i = 0; i < 16; ++i) sink += s.Sample(rows[i].data(), vocab, history);  // warm
      std::vector<double> batch_us;
      const int per = calls / 5;
      for (int b = 0; b < 5; ++b) {
        const auto t0 = Clock::now();
        for (int i = 0; i < per; ++i) sink += s.Sample(rows[i % 16].data(), vocab, history);
        batch_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / per);
      }
      std::sort(batch_us.begin(), batch_us.end());
      d[c.name] = batch_us[2];
      if (sink == -1) std::cerr << "";  // keep the calls
    }
    out[std::string("us_per_call_") + dist] = d;
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
