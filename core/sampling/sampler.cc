#include "core/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace titand {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kHeapSelectMax = 1024;  // above this k, nth_element beats the bounded heap
constexpr size_t kTopPFirstPrefix = 64;   // top-p's first candidate prefix; grows 8x while undecided,
                                          // straight to the whole kept set past half of it

// First index of the maximum (ties -> lowest id); NaN entries never win (all NaN -> 0). Two passes: the
// maximum over 8 independent lanes (compare + select, which the compiler vectorises without fast-math:
// a NaN never compares greater, so it never enters a lane), then the first index holding it.
int32_t ArgMax(const float* l, int64_t n) {
  constexpr int kLanes = 8;
  float lane[kLanes];
  for (float& m : lane) m = kNegInf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
  }
  float best = kNegInf;
  for (; i < n; ++i) best = l[i] > best ? l[i] : best;
  for (float m : lane) best = m > best ? m : best;
  for (int64_t j = 0; j < n; ++j) {
    if (l[j] == best) return static_cast<int32_t>(j);
  }
  return 0;  // every entry NaN
}

// The k-th largest of v[0, n) counting repeats (1 <= k <= n; no NaN in v). A min-heap of the k largest
// seen so far for small k (one comparison per element once it is full), nth_element otherwise.
float KthLargest(const float* v, int64_t n, int64_t k, std::vector<float>& scratch) {
  if (k > kHeapSelectMax) {
    scratch.assign(v, v + n);
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
    return scratch[k - 1];
  }
  scratch.assign(v, v + k);
  std::make_heap(scratch.begin(), scratch.end(), std::greater<float>());  // front = smallest of the k
  for (int64_t i = k; i < n; ++i) {
    if (v[i] > scratch.front()) {
      std::pop_heap(scratch.begin(), scratch.end(), std::greater<float>());
      scratch.back() = v[i];
      std::push_heap(scratch.begin(), scratch.end(), std::greater<float>());
    }
  }
  return scratch.front();
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::ApplyPenalty(int64_t vocab, const std::vector<int32_t>& history) {
  if (static_cast<int64_t>(seen_.size()) < vocab) seen_.assign(vocab, 0);
  const float r = params_.repetition_penalty;
  for (int32_t id : history) {
    if (id < 0 || id >= vocab || seen_[id]) continue;
    seen_[id] = 1;
    float& x = work_[id];
    x = x < 0.f ? x * r : x / r;
  }
  for (int32_t id : history) {
    if (id >= 0 && id < vocab) seen_[id] = 0;
  }
}

double Sampler::Probs() {
  float mx = kNegInf;
  for (int32_t id : kept_) mx = std::max(mx, work_[id]);
  prob_.resize(kept_.size());
  double sum = 0.0;
  for (size_t j = 0; j < kept_.size(); ++j) {
    prob_[j] = std::exp(static_cast<double>(work_[kept_[j]]) - mx);
    sum += prob_[j];
  }
  double pmax = 0.0;
  for (double& x : prob_) {
    x /= sum;
    pmax = std::max(pmax, x);
  }
  return pmax;
}

// Nucleus: by probability descending (equal probabilities by id), keep while the mass before the token
// is < top_p (the first token always). Equivalent to HF's "drop where ascending cumsum <= 1 - top_p".
// Only a prefix of the m highest logits is ranked: a token outside it has a logit below the prefix's,
// so a probability <= the prefix's smallest. When the cut falls on a probability strictly above that
// smallest, no outside token can rank before it and the kept set is exact; otherwise m grows.
void Sampler::TopP() {
  if (params_.top_p >= 1.f) return;
  const size_t n = kept_.size();
  float mx = kNegInf;
  values_.resize(n);
  for (size_t j = 0; j < n; ++j) {
    values_[j] = work_[kept_[j]];
    mx = std::max(mx, values_[j]);
  }
  prob_.resize(n);
  double sum = 0.0;  // the normaliser over every kept token, ascending ids (as Probs())
  for (size_t j = 0; j < n; ++j) {
    prob_[j] = std::exp(static_cast<double>(values_[j]) - mx);
    sum += prob_[j];
  }
  for (size_t m = std::min(kTopPFirstPrefix, n);; m = m * 8 * 2 > n ? n : m * 8) {
    const bool all = m >= n;
    const float t = all ? kNegInf : KthLargest(values_.data(), static_cast<int64_t>(n), static_cast<int64_t>(m), select_);
    ranked_.clear();
    for (size_t j = 0; j < n; ++j) {
      if (all || values_[j] >= t) ranked_.emplace_back(prob_[j] / sum, kept_[j]);
    }
    std::sort(ranked_.begin(), ranked_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    size_t keep = ranked_.size();
    bool cut = false;
    double before = 0.0;
    for (size_t r = 0; r < ranked_.size(); ++r) {
      if (r > 0 && before >= params_.top_p) {
        keep = r;
        cut = true;
        break;
      }
      before += ranked_[r].first;
    }
    if (all || (cut && ranked_[keep - 1].first > ranked_.back().first)) {
      next_.clear();
      for (size_t r = 0; r < keep; ++r) next_.push_back(ranked_[r].second);
      std::sort(next_.begin(), next_.end());
      kept_.swap(next_);
      return;
    }
  }
}

// Drops tokens whose probability is below min_p times the largest probability.
void Sampler::MinP() {
  if (params_.min_p <= 0.f) return;
  const double threshold = params_.min_p * Probs();
  next_.clear();
  for (size_t j = 0; j < kept_.size(); ++j) {
    if (!(prob_[j] < threshold)) next_.push_back(kept_[j]);
  }
  kept_.swap(next_);
}

int32_t Sampler::Draw() {
  Probs();
  // u in [0, 1) from the top 53 bits: portable across standard libraries.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double acc = 0.0;
  int32_t last = -1;
  for (size_t j = 0; j < kept_.size(); ++j) {
    if (prob_[j] <= 0.0) continue;
    acc += prob_[j];
    last = kept_[j];
    if (u < acc) return last;
  }
  if (last >= 0) return last;  // rounding: the last kept token
  int32_t best = kept_.front();
  for (int32_t id : kept_) {
    if (work_[id] > work_[best]) best = id;
  }
  return best;
}

int32_t Sampler::DrawDense(int64_t vocab) {
  float mx = kNegInf;
  for (float x : work_) mx = std::max(mx, x);
  prob_.resize(vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    prob_[i] = work_[i] > kNegInf ? std::exp(static_cast<double>(work_[i]) - mx) : 0.0;
    sum += prob_[i];
  }
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double acc = 0.0;
  int32_t last = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    const double p = prob_[i] / sum;
    if (p <= 0.0) continue;
    acc += p;
    last = static_cast<int32_t>(i);
    if (u < acc) return last;
  }
  return last >= 0 ? last : ArgMax(work_.data(), vocab);
}

std::vector<int32_t> Sampler::last_kept() const {
  if (!dense_) return kept_;
  std::vector<int32_t> all;
  for (size_t i = 0; i < work_.size(); ++i) {
    if (work_[i] > kNegInf) all.push_back(static_cast<int32_t>(i));
  }
  return all;
}

int32_t Sampler::Sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  kept_.clear();
  dense_ = false;
  const bool penalty = params_.repetition_penalty != 1.f;
  if (params_.greedy() && !penalty) return ArgMax(logits, vocab);
  work_.assign(logits, logits + vocab);
  if (penalty) ApplyPenalty(vocab, history);
  if (params_.greedy()) return ArgMax(work_.data(), vocab);
  float mx = kNegInf;
  for (float& x : work_) {
    if (std::isnan(x)) x = kNegInf;
    mx = std::max(mx, x);
  }
  if (!(mx > kNegInf)) return ArgMax(work_.data(), vocab);
  // (l - max) / T: every value is <= 0, so no temperature in range can overflow to +inf.
  const float temp = params_.temperature;
  for (float& x : work_) {
    if (x != kNegInf) x = mx == INFINITY ? (x == mx ? 0.f : kNegInf) : (x - mx) / temp;
  }
  // Top-k: keep l >= the k-th largest value of the whole vocabulary (ties at the boundary kept, as
  // torch.topk + '<' does); the kept set starts as every finite logit at or above it.
  const int64_t k = params_.top_k;
  if ((k <= 0 || k >= vocab) && params_.top_p >= 1.f && params_.min_p <= 0.f) {
    dense_ = true;
    return DrawDense(vocab);
  }
  const float kth = k > 0 && k < vocab ? KthLargest(work_.data(), vocab, k, select_) : kNegInf;
  for (int64_t i = 0; i < vocab; ++i) {
    if (work_[i] > kNegInf && work_[i] >= kth) kept_.push_back(static_cast<int32_t>(i));
  }
  TopP();
  MinP();
  return Draw();
}

float LogProb(const float* logits, int64_t vocab, int32_t token) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<float>(static_cast<double>(logits[token]) - mx - std::log(sum));
}

}  // namespace titand
