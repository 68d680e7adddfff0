#include "core/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace titand {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// First index of the maximum (ties -> lowest id); NaN entries never win.
int32_t ArgMax(const std::vector<float>& l) {
  int32_t best = 0;
  float best_v = kNegInf;
  bool found = false;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] > best_v || (!found && l[i] == best_v)) {
      best = static_cast<int32_t>(i);
      best_v = l[i];
      found = true;
    }
  }
  return best;
}

// softmax over the finite entries (others get 0), fp64.
std::vector<double> Softmax(const std::vector<float>& l) {
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

// Keeps logits >= the k-th largest value (ties at the boundary kept, as torch.topk + '<' does).
void TopK(std::vector<float>& l, int k) {
  if (k <= 0 || static_cast<size_t>(k) >= l.size()) return;
  std::vector<float> copy(l);
  std::nth_element(copy.begin(), copy.begin() + (k - 1), copy.end(), std::greater<float>());
  const float kth = copy[k - 1];
  for (float& x : l) {
    if (x < kth) x = kNegInf;
  }
}

// Nucleus: sort by probability descending (stable in id), keep while the mass before the token is
// < top_p. Equivalent to HF's "drop where ascending cumsum <= 1 - top_p", keeping >= 1 token.
void TopP(std::vector<float>& l, float top_p) {
  if (top_p >= 1.f) return;
  const std::vector<double> p = Softmax(l);
  std::vector<int32_t> order;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] > kNegInf) order.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  double before = 0.0;
  for (size_t r = 0; r < order.size(); ++r) {
    if (r > 0 && before >= top_p) l[order[r]] = kNegInf;
    before += p[order[r]];
  }
}

// Drops tokens whose probability is below min_p times the largest probability.
void MinP(std::vector<float>& l, float min_p) {
  if (min_p <= 0.f) return;
  const std::vector<double> p = Softmax(l);
  const double threshold = min_p * *std::max_element(p.begin(), p.end());
  for (size_t i = 0; i < l.size(); ++i) {
    if (p[i] < threshold) l[i] = kNegInf;
  }
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::Sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  work_.assign(logits, logits + vocab);
  // Repetition penalty, once per distinct history token.
  if (params_.repetition_penalty != 1.f) {
    std::vector<bool> seen(vocab, false);
    for (int32_t id : history) {
      if (id < 0 || id >= vocab || seen[id]) continue;
      seen[id] = true;
      float& x = work_[id];
      x = x < 0.f ? x * params_.repetition_penalty : x / params_.repetition_penalty;
    }
  }
  if (params_.greedy()) return ArgMax(work_);
  float mx = kNegInf;
  for (float& x : work_) {
    if (std::isnan(x)) x = kNegInf;
    mx = std::max(mx, x);
  }
  if (!(mx > kNegInf)) return ArgMax(work_);
  // (l - max) / T: every value is <= 0, so no temperature in range can overflow to +inf.
  for (float& x : work_) x = x == kNegInf ? kNegInf : (mx == INFINITY ? (x == mx ? 0.f : kNegInf) : (x - mx) / params_.temperature);
  TopK(work_, params_.top_k);
  TopP(work_, params_.top_p);
  MinP(work_, params_.min_p);
  const std::vector<double> p = Softmax(work_);
  // u in [0, 1) from the top 53 bits: portable across standard libraries.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double acc = 0.0;
  int32_t last = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    if (p[i] <= 0.0) continue;
    acc += p[i];
    last = static_cast<int32_t>(i);
    if (u < acc) return last;
  }
  return last >= 0 ? last : ArgMax(work_);  // rounding: the last kept token
}

float LogProb(const float* logits, int64_t vocab, int32_t token) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<float>(static_cast<double>(logits[token]) - mx - std::log(sum));
}

}  // namespace titand
