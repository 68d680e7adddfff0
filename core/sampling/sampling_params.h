// Sampling parameters for one sequence (Hugging Face generate semantics).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace titand {

struct SamplingParams {
  float temperature = 0.f;         // 0 => greedy (argmax, ties -> lowest id); must be >= 0
  int top_k = 0;                   // keep the k largest logits (ties at the k-th kept); 0 = off
  float top_p = 1.f;               // nucleus: smallest top set with probability mass >= top_p; (0, 1]
  float min_p = 0.f;               // drop tokens with p < min_p * p_max; [0, 1]
  float repetition_penalty = 1.f;  // > 0; on tokens in history: l > 0 ? l / r : l * r
  uint64_t seed = 0;               // seeds the per-sequence std::mt19937_64

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace titand
