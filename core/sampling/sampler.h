// Token sampler for one sequence. Applies, in Hugging Face generate's order:
//   repetition penalty (tokens in history: l > 0 ? l / r : l * r, once per distinct token)
//   -> temperature ((l - max l) / T; T < kGreedyBelowTemperature means greedy argmax, ties -> lowest id)
//   -> top-k (keep l >= k-th largest) -> top-p (keep the descending-probability prefix whose mass
//   before each kept token is < top_p; the top token always stays; equal probabilities rank by id)
//   -> min-p (keep p >= min_p * p_max)
//   -> draw from softmax over the kept tokens with the sequence's own seeded std::mt19937_64: u in [0, 1)
//   from the top 53 bits of one draw, the first kept id (ascending) whose cumulative probability exceeds u.
// Probabilities are fp64: p_i = exp(l_i - max) / sum, the sum taken in ascending id order over the tokens
// still kept at that stage.
//
// Cost per call (vocab V): greedy is one argmax over the raw logits (no copy unless a repetition penalty
// applies). Without top-k/top-p/min-p the draw runs over the processed logits directly. Top-k selects its
// threshold with a bounded heap (or nth_element for large k), not a sort. Top-p computes every kept
// token's exp once, then sorts only a candidate prefix: the m highest logits (m = 64, then 512, 4096,
// then all), which is exact because every token outside the prefix has a probability <= the prefix's
// smallest and the cut is accepted only strictly above it; the full sort happens only when the nucleus
// is a large part of the kept set. All scratch space belongs to the Sampler and is reused: no per-token
// allocation once it has grown to the vocabulary. The results (kept sets and, for one seed, the sampled
// ids) are those of the straightforward full-sort formulation, which the tests check.
// Torch-free: logits are a plain float array of length `vocab`.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/sampling/sampling_params.h"

namespace titand {

class Sampler {
 public:
  // `params` should have passed Validate().
  explicit Sampler(const SamplingParams& params);

  // Returns a token id in [0, vocab); vocab >= 1. `history` holds the ids seen so far (prompt and
  // generated); ids outside [0, vocab) are ignored.
  int32_t Sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history);

  const SamplingParams& params() const { return params_; }
  // The ids (ascending) the last Sample drew from after every filter; empty after a greedy one (tests).
  std::vector<int32_t> last_kept() const;

 private:
  // Each stage narrows kept_ (ids ascending, all with finite work_ values).
  void ApplyPenalty(int64_t vocab, const std::vector<int32_t>& history);
  void TopP();
  void MinP();
  int32_t Draw();
  // No filter active: the draw over every finite entry of work_, without an id list.
  int32_t DrawDense(int64_t vocab);
  // p of each kept id (positions of kept_) into prob_; returns the max p.
  double Probs();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;                 // processed logits [vocab]
  std::vector<int32_t> kept_, next_;        // the kept set, ids ascending
  bool dense_ = false;                      // the last draw kept every finite entry (kept_ unused)
  std::vector<double> prob_;                // probabilities of kept_ (by position)
  std::vector<float> values_;               // top-p: work_ values of kept_ (by position)
  std::vector<float> select_;               // selection scratch (heap / nth_element)
  std::vector<std::pair<double, int32_t>> ranked_;  // top-p candidates by probability
  std::vector<uint8_t> seen_;               // repetition penalty: ids already penalised in this call
};

// log softmax(logits)[token] of the raw logits (fp64 accumulation).
float LogProb(const float* logits, int64_t vocab, int32_t token);

}  // namespace titand
