// The Sampler (bounded-heap top-k, prefix-ranked top-p, reused scratch) against a straightforward
// full-sort formulation written here: every logit copied, top-k by sorting the whole vocabulary, top-p by a
// stable sort of every probability, min-p and the draw over the full vector. On random logits with and
// without ties (at the top-k boundary and among equal probabilities in the nucleus), flat and peaked, for
// p in {0.1, 0.9, 1.0}: the kept sets must be identical and, with one seed, every sampled id too.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampling/sampler.h"

namespace titand {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// p_i = exp(l_i - max) / sum over the finite entries (ascending ids), 0 elsewhere.
std::vector<double> FullSoftmax(const std::vector<float>& l) {
  const float mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size(), 0.0);
  double sum = 0.0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] > kNegInf) {
      p[i] = std::exp(static_cast<double>(l[i]) - mx);
      sum += p[i];
    }
  }
  for (double& x : p) x /= sum;
  return p;
}

// The straightforward sampler: returns the id and fills `kept` with the ids it drew from.
struct ReferenceSampler {
  SamplingParams params;
  std::mt19937_64 rng;
  explicit ReferenceSampler(const SamplingParams& p) : params(p), rng(p.seed) {}

  int32_t Sample(const std::vector<float>& logits, const std::vector<int32_t>& history, std::vector<int32_t>* kept) {
    std::vector<float> l = logits;
    std::vector<bool> seen(l.size(), false);
    for (int32_t id : history) {
      if (id < 0 || id >= static_cast<int32_t>(l.size()) || seen[id]) continue;
      seen[id] = true;
      l[id] = l[id] < 0.f ? l[id] * params.repetition_penalty : l[id] / params.repetition_penalty;
    }
    for (float& x : l) x = std::isnan(x) ? kNegInf : x;
    const float mx = *std::max_element(l.begin(), l.end());
    for (float& x : l) x = x == kNegInf ? kNegInf : (x - mx) / params.temperature;
    if (params.top_k > 0 && params.top_k < static_cast<int>(l.size())) {  // full sort, k-th value
      std::vector<float> sorted = l;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      const float kth = sorted[params.top_k - 1];
      for (float& x : l) x = x < kth ? kNegInf : x;
    }
    if (params.top_p < 1.f) {
      const std::vector<double> p = FullSoftmax(l);
      std::vector<int32_t> order(l.size());
      std::iota(order.begin(), order.end(), 0);
      order.erase(std::remove_if(order.begin(), order.end(), [&](int32_t i) { return !(l[i] > kNegInf); }), order.end());
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
      double before = 0.0;
      for (size_t r = 0; r < order.size(); ++r) {
        if (r > 0 && before >= params.top_p) l[order[r]] = kNegInf;
        before += p[order[r]];
      }
    }
    if (params.min_p > 0.f) {
      const std::vector<double> p = FullSoftmax(l);
      const double threshold = params.min_p * *std::max_element(p.begin(), p.end());
      for (size_t i = 0; i < l.size(); ++i) l[i] = p[i] < threshold ? kNegInf : l[i];
    }
    kept->clear();
    for (size_t i = 0; i < l.size(); ++i) {
      if (l[i] > kNegInf) kept->push_back(static_cast<int32_t>(i));
    }
    const std::vector<double> p = FullSoftmax(l);
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    double acc = 0.0;
    int32_t last = -1;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] <= 0.0) continue;
      acc += p[i];
      last = static_cast<int32_t>(i);
      if (u < acc) return last;
    }
    return last;
  }
};

// Gaussian logits with standard deviation `sd`; with `ties`, rounded to a grid of 0.25 so that many
// tokens share each value (the top-k boundary and the nucleus cut then fall inside groups of equals).
std::vector<float> RandomLogits(std::mt19937_64& rng, int64_t vocab, float sd, bool ties) {
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<float> l(vocab);
  for (float& x : l) x = ties ? std::round(nd(rng) * 4.f) / 4.f : nd(rng);
  return l;
}

void ExpectSameAsReference(const SamplingParams& p, int64_t vocab, float sd, bool ties, int draws) {
  std::mt19937_64 gen(p.seed * 7919 + static_cast<uint64_t>(sd * 10) + (ties ? 1 : 0));
  Sampler fast(p);
  ReferenceSampler ref(p);
  std::vector<int32_t> history, kept;
  for (int i = 0; i < 40; ++i) history.push_back(static_cast<int32_t>(gen() % vocab));
  for (int d = 0; d < draws; ++d) {
    const std::vector<float> l = RandomLogits(gen, vocab, sd, ties);
    const int32_t want = ref.Sample(l, history, &kept);
    const int32_t got = fast.Sample(l.data(), vocab, history);
    const std::string what = "top_k " + std::to_string(p.top_k) + " top_p " + std::to_string(p.top_p) + " min_p " +
                             std::to_string(p.min_p) + " T " + std::to_string(p.temperature) + " sd " +
                             std::to_string(sd) + (ties ? " ties" : "") + " draw " + std::to_string(d);
    ASSERT_EQ(fast.last_kept(), kept) << what;
    ASSERT_EQ(got, want) << what;
    history.push_back(got);
  }
}

TEST(SamplerReferenceTest, TopKTopPMinPMatchFullSort) {
  int cases = 0;
  for (float top_p : {0.1f, 0.9f, 1.0f}) {
    for (int top_k : {0, 1, 7, 50, 3000}) {
      for (float min_p : {0.f, 0.05f}) {
        for (bool ties : {false, true}) {
          for (float sd : {1.f, 4.f}) {  // flat: the nucleus holds most of the vocabulary; peaked: a few
            SamplingParams p;
            p.temperature = 0.8f;
            p.top_k = top_k;
            p.top_p = top_p;
            p.min_p = min_p;
            p.repetition_penalty = top_k == 7 ? 1.3f : 1.f;
            p.seed = 100 + cases++;
            ASSERT_TRUE(p.Validate().ok());
            ExpectSameAsReference(p, 4000, sd, ties, 6);
          }
        }
      }
    }
  }
}

TEST(SamplerReferenceTest, FullVocabularyNucleusMatchesFullSort) {
  // SmolLM2's vocabulary size; the flat case makes the prefix grow until it is the whole kept set.
  for (float top_p : {0.1f, 0.9f, 0.999f}) {
    for (float sd : {0.5f, 3.f}) {
      SamplingParams p;
      p.temperature = 1.f;
      p.top_p = top_p;
      p.seed = 77;
      ExpectSameAsReference(p, 49152, sd, /*ties=*/sd > 1.f, 3);
    }
  }
}

TEST(SamplerReferenceTest, AllTiedLogitsKeepTheLowestIdsOfTheNucleus) {
  // 1000 equal logits: each p = 0.001; top_p 0.1 keeps exactly the 100 lowest ids (mass before the
  // 101st is 0.1 up to rounding, the full-sort reference decides the boundary).
  SamplingParams p;
  p.temperature = 1.f;
  p.top_p = 0.1f;
  p.seed = 3;
  std::vector<float> l(1000, 0.5f);
  Sampler s(p);
  ReferenceSampler ref(p);
  std::vector<int32_t> kept;
  for (int i = 0; i < 20; ++i) {
    const int32_t want = ref.Sample(l, {}, &kept);
    EXPECT_EQ(s.Sample(l.data(), l.size(), {}), want);
    EXPECT_EQ(s.last_kept(), kept);
  }
  ASSERT_GE(kept.size(), 100u);
  ASSERT_LE(kept.size(), 101u);
  EXPECT_EQ(kept.front(), 0);
  EXPECT_EQ(kept.back(), static_cast<int32_t>(kept.size()) - 1);
}

TEST(SamplerReferenceTest, EqualProbabilitiesFromDistinctLogitsRankById) {
  // 200 distinct logits within 4e-18 of each other (higher id, higher logit) have the SAME fp64
  // probability (exp rounds to 1): the nucleus ranks them by id, so top_p 0.1 keeps the LOWEST ids,
  // although the highest logits (the first candidate prefix) are the highest ids.
  std::vector<float> l(1000, -30.f);
  for (int i = 0; i < 200; ++i) l[i] = -static_cast<float>(200 - i) * 1e-20f;
  SamplingParams p;
  p.temperature = 1.f;
  p.top_p = 0.1f;
  p.seed = 4;
  Sampler s(p);
  ReferenceSampler ref(p);
  std::vector<int32_t> kept;
  const int32_t want = ref.Sample(l, {}, &kept);
  EXPECT_EQ(s.Sample(l.data(), l.size(), {}), want);
  EXPECT_EQ(s.last_kept(), kept);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.front(), 0);
  EXPECT_LT(kept.size(), 64u);
}

TEST(SamplerReferenceTest, SeededRunsAreReproducibleAcrossInstances) {
  std::mt19937_64 gen(5);
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < 30; ++i) rows.push_back(RandomLogits(gen, 3000, 3.f, i % 2 == 0));
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 0.9f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (const auto& r : rows) out.push_back(s.Sample(r.data(), r.size(), out));
    return out;
  };
  EXPECT_EQ(run(21), run(21));
  EXPECT_NE(run(21), run(22));
}

TEST(SamplerReferenceTest, GreedyIsArgmaxWithoutACopyAndClearsKept) {
  SamplingParams p;
  Sampler s(p);
  std::vector<float> l = {1.f, NAN, 3.f, 3.f, -INFINITY};
  EXPECT_EQ(s.Sample(l.data(), l.size(), {}), 2);
  EXPECT_TRUE(s.last_kept().empty());
  std::vector<float> nan(4, NAN);
  EXPECT_EQ(s.Sample(nan.data(), nan.size(), {}), 0);
  std::vector<float> first = {5.f, 1.f, 5.f};
  EXPECT_EQ(s.Sample(first.data(), first.size(), {}), 0);
  // Against a plain first-maximum loop: lengths that are not a multiple of the 8 lanes, the maximum in
  // the tail, ties, NaNs and -inf.
  std::mt19937_64 gen(8);
  for (int64_t n : {1, 7, 8, 9, 1003, 49152}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> l(n);
      for (float& x : l) {
        const uint64_t r = gen() % 50;
        x = r == 0 ? NAN : r == 1 ? -INFINITY : static_cast<float>(gen() % 16);
      }
      if (trial % 4 == 0) l[n - 1] = 100.f;
      int32_t want = 0;
      bool found = false;
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(l[i])) continue;
        if (!found || l[i] > l[want]) want = static_cast<int32_t>(i);
        found = true;
      }
      ASSERT_EQ(s.Sample(l.data(), n, {}), want) << "n " << n << " trial " << trial;
    }
  }
}

}  // namespace
}  // namespace titand
