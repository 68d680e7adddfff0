// Token sampler for one sequence. Applies, in Hugging Face generate's order:
//   repetition penalty (tokens in history: l > 0 ? l / r : l * r, once per distinct token)
//   -> temperature ((l - max l) / T; T < kGreedyBelowTemperature means greedy argmax, ties -> lowest id)
//   -> top-k (keep l >= k-th largest) -> top-p (keep the descending-probability prefix whose mass
//   before each kept token is < top_p; the top token always stays) -> min-p (keep p >= min_p * p_max)
//   -> draw from softmax over the kept tokens with the sequence's own seeded std::mt19937_64.
// Torch-free: logits are a plain float array of length `vocab`.
#pragma once

#include <cstdint>
#include <random>
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

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;  // scratch: processed logits
};

// log softmax(logits)[token] of the raw logits (fp64 accumulation).
float LogProb(const float* logits, int64_t vocab, int32_t token);

}  // namespace titand
