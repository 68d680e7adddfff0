// Sampler: greedy, candidate sets of top-k / top-p / min-p, empirical frequencies vs softmax,
// seeding, repetition penalty, parameter validation, LogProb.
#include "core/sampling/sampler.h"

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include <functional>

namespace titand {
namespace {

// Draws n samples and returns how often each id came up.
std::map<int32_t, int> Histogram(const SamplingParams& params, const std::vector<float>& logits,
                                 int n, const std::vector<int32_t>& history = {}) {
  Sampler s(params);
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits.data(), logits.size(), history)]++;
  return counts;
}

std::set<int32_t> Keys(const std::map<int32_t, int>& m) {
  std::set<int32_t> out;
  for (const auto& [k, v] : m) out.insert(k);
  return out;
}

// Logits whose softmax is exactly `probs` (up to a constant).
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(SamplerTest, GreedyIsArgmaxWithLowestIdOnTies) {
  SamplingParams p;  // temperature 0
  Sampler s(p);
  std::vector<float> l = {0.1f, 2.5f, -1.f, 2.5f, 1.f};
  EXPECT_EQ(s.Sample(l.data(), l.size(), {}), 1);
  std::vector<float> l2 = {-3.f, -2.f, -7.f};
  EXPECT_EQ(s.Sample(l2.data(), l2.size(), {}), 1);
}

TEST(SamplerTest, TopKOneEqualsGreedy) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  p.seed = 5;
  Sampler s(p);
  std::vector<float> l = {0.3f, 1.0f, 0.9f, -2.f, 0.99f};
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.Sample(l.data(), l.size(), {}), 1);
}

TEST(SamplerTest, TopKKeepsExactlyTheKLargest) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 3;
  p.seed = 1;
  std::vector<float> l = {0.0f, 0.5f, 0.2f, 0.4f, -0.1f, 0.3f};
  EXPECT_EQ(Keys(Histogram(p, l, 3000)), (std::set<int32_t>{1, 3, 5}));
}

TEST(SamplerTest, TopPKeepsSmallestNucleus) {
  // probs 0.4, 0.3, 0.15, 0.1, 0.05: mass before each = 0, .4, .7, .85, .95.
  const std::vector<float> l = LogitsOf({0.15, 0.4, 0.05, 0.3, 0.1});
  SamplingParams p;
  p.temperature = 1.f;
  p.seed = 2;
  p.top_p = 0.65f;  // needs 0.4 + 0.3
  EXPECT_EQ(Keys(Histogram(p, l, 3000)), (std::set<int32_t>{1, 3}));
  p.top_p = 0.8f;  // 0.4 + 0.3 + 0.15
  EXPECT_EQ(Keys(Histogram(p, l, 4000)), (std::set<int32_t>{0, 1, 3}));
  p.top_p = 0.3f;  // the top token alone already covers it
  EXPECT_EQ(Keys(Histogram(p, l, 500)), (std::set<int32_t>{1}));
}

TEST(SamplerTest, TopPRenormalisesAfterTopK) {
  // After top-k = 2 the kept probs are 0.4/0.7 and 0.3/0.7 = 0.571, 0.429: top_p 0.5 keeps one.
  const std::vector<float> l = LogitsOf({0.15, 0.4, 0.05, 0.3, 0.1});
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 2;
  p.top_p = 0.55f;
  EXPECT_EQ(Keys(Histogram(p, l, 1000)), (std::set<int32_t>{1}));
  p.top_p = 0.6f;
  EXPECT_EQ(Keys(Histogram(p, l, 2000)), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, MinPKeepsTokensAboveFractionOfMax) {
  const std::vector<float> l = LogitsOf({0.15, 0.4, 0.05, 0.3, 0.1});
  SamplingParams p;
  p.temperature = 1.f;
  p.seed = 3;
  p.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.3, 0.15
  EXPECT_EQ(Keys(Histogram(p, l, 4000)), (std::set<int32_t>{0, 1, 3}));
  p.min_p = 0.2f;  // threshold 0.08: adds 0.1
  EXPECT_EQ(Keys(Histogram(p, l, 6000)), (std::set<int32_t>{0, 1, 3, 4}));
}

TEST(SamplerTest, TemperatureFrequenciesMatchSoftmax) {
  const std::vector<float> l = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.3f};
  for (float temp : {0.5f, 1.0f, 2.0f}) {
    SamplingParams p;
    p.temperature = temp;
    p.seed = 1234;
    const int n = 40000;
    auto counts = Histogram(p, l, n);
    double z = 0;
    for (float x : l) z += std::exp(x / temp);
    double chi2 = 0;
    for (size_t i = 0; i < l.size(); ++i) {
      const double expect = n * std::exp(l[i] / temp) / z;
      const double diff = counts[i] - expect;
      chi2 += diff * diff / expect;
    }
    // 5 degrees of freedom: P(chi2 > 25) ~ 1.4e-4.
    EXPECT_LT(chi2, 25.0) << "T=" << temp;
  }
}

TEST(SamplerTest, SameSeedSameSequenceDifferentSeedsDiffer) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 0.7f);
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.f;
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.Sample(l.data(), l.size(), out));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplerTest, RepetitionPenaltyMatchesFormula) {
  // History {0, 2, 2}: l0 = 2.0 -> 2.0 / 2 = 1.0 (applied once despite repeats in other ids),
  // l2 = -1.0 -> -2.0; l1 = 1.5 untouched, so greedy picks 1.
  SamplingParams p;
  p.repetition_penalty = 2.f;
  Sampler greedy(p);
  std::vector<float> l = {2.0f, 1.5f, -1.0f};
  EXPECT_EQ(greedy.Sample(l.data(), l.size(), {0, 2, 2}), 1);
  EXPECT_EQ(greedy.Sample(l.data(), l.size(), {}), 0);
  // Sampled frequencies follow softmax of the penalised logits {1.0, 1.5, -2.0}; a token repeated
  // in history is penalised once, not per occurrence.
  p.temperature = 1.f;
  p.seed = 9;
  const int n = 30000;
  auto counts = Histogram(p, l, n, {0, 0, 0, 2, 2});
  const double pen[] = {1.0, 1.5, -2.0};
  double z = 0;
  for (double x : pen) z += std::exp(x);
  double chi2 = 0;
  for (int i = 0; i < 3; ++i) {
    const double expect = n * std::exp(pen[i]) / z;
    chi2 += (counts[i] - expect) * (counts[i] - expect) / expect;
  }
  EXPECT_LT(chi2, 18.0);  // 2 dof
}

TEST(SamplerTest, ValidateRejectsBadParams) {
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
  auto bad = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    return !p.Validate().ok();
  };
  EXPECT_TRUE(bad([](SamplingParams& p) { p.temperature = -0.1f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.temperature = NAN; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.top_k = -1; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.top_p = 0.f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.top_p = 1.01f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.min_p = -0.1f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.min_p = 1.5f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.repetition_penalty = 0.f; }));
  EXPECT_FALSE(bad([](SamplingParams& p) {
    p.temperature = 0.7f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
  }));
}

// Issue 10, fault 3: temperature = 1e-38 (or any tiny one) returned the LAST vocabulary id forever
// (l / T overflowed to inf, the softmax became NaN). Now it is greedy, and even an unvalidated tiny
// temperature or repetition penalty cannot produce a NaN distribution.
TEST(SamplerTest, TinyTemperatureIsGreedyNotTheLastId) {
  const std::vector<float> l = {0.5f, 7.25f, -3.f, 7.f, 1.f, 0.f};
  for (float t : {1e-38f, 1e-30f, 1e-6f, 9.9e-4f}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 3;
    ASSERT_TRUE(p.Validate().ok()) << t;
    EXPECT_TRUE(p.greedy()) << t;
    Sampler s(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(l.data(), l.size(), {}), 1) << t;
  }
  // Just above the greedy threshold the sampler still works in float range: the argmax dominates.
  SamplingParams p;
  p.temperature = 1e-3f;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(l.data(), l.size(), {}), 1);
}

TEST(SamplerTest, ExtremePenaltyNeverYieldsNaNOrTheLastId) {
  const std::vector<float> l = {2.f, 5.f, -1.f, 3.f};
  SamplingParams p;
  p.temperature = 1.f;
  p.repetition_penalty = 1e-38f;  // rejected by Validate; the sampler itself must still stay finite
  EXPECT_FALSE(p.Validate().ok());
  Sampler s(p);
  // History {0, 1}: both logits are divided by 1e-38 -> +inf; the draw is between those two only.
  for (int i = 0; i < 100; ++i) {
    const int32_t id = s.Sample(l.data(), l.size(), {0, 1});
    EXPECT_TRUE(id == 0 || id == 1) << id;
  }
}

TEST(SamplerTest, ValidateNamesTheFieldAndChecksEveryFloat) {
  const float nan = NAN, inf = INFINITY;
  struct Case {
    const char* field;
    std::function<void(SamplingParams&, float)> set;
    std::vector<float> bad;
  };
  const std::vector<Case> cases = {
      {"sampling.temperature", [](SamplingParams& p, float v) { p.temperature = v; }, {nan, inf, -inf, -1e-9f, 100.5f}},
      {"sampling.top_p", [](SamplingParams& p, float v) { p.top_p = v; }, {nan, inf, 0.f, -0.5f, 1.0001f}},
      {"sampling.min_p", [](SamplingParams& p, float v) { p.min_p = v; }, {nan, -inf, -1e-9f, 1.01f}},
      {"sampling.repetition_penalty", [](SamplingParams& p, float v) { p.repetition_penalty = v; },
       {nan, inf, 0.f, 1e-38f, 0.0099f, 100.5f, -2.f}},
  };
  for (const Case& c : cases) {
    for (float v : c.bad) {
      SamplingParams p;
      c.set(p, v);
      absl::Status st = p.Validate();
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field << " " << v;
      EXPECT_EQ(st.message().rfind(c.field, 0), 0u) << st;
    }
  }
  StopConditions stop;
  stop.stop_strings = {"ok", ""};
  EXPECT_NE(stop.Validate().message().find("stopping.stop[1]"), absl::string_view::npos);
  stop.stop_strings = {"ok \xff\xfe ok"};
  EXPECT_EQ(stop.Validate().message(), "stopping.stop[0]: invalid UTF-8 at byte 3");
  stop.stop_strings = {"é"};
  stop.stop_token_ids = {5, 70};
  EXPECT_TRUE(stop.Validate(0).ok());
  EXPECT_NE(stop.Validate(64).message().find("stopping.stop_token_ids[1]"), absl::string_view::npos);
  stop.max_tokens = -1;
  EXPECT_NE(stop.Validate().message().find("stopping.max_tokens"), absl::string_view::npos);
}

TEST(SamplerTest, LogProbIsLogSoftmax) {
  std::vector<float> l = {1.0f, -2.0f, 0.5f, 3.0f};
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(LogProb(l.data(), 4, i), l[i] - std::log(z), 1e-6);
  std::vector<float> big = {1000.f, 999.f};  // no overflow
  EXPECT_NEAR(LogProb(big.data(), 2, 1), -1.0 - std::log1p(std::exp(-1.0)), 1e-5);
}

}  // namespace
}  // namespace titand
