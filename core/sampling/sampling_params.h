// The decoding parameters of one request as ONE value type: how to pick each token (SamplingParams,
// Hugging Face generate semantics) and when to stop (StopConditions), plus the single validator every
// entry point uses (gRPC server, titan-run, engine). Defaults are written here and nowhere else.
//
// Finish reasons are defined here too, once, for the decoding core, the engine, the proto converter and
// the metrics (FinishReasonName is the metrics label and the titan-run spelling).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace titand {

// Temperatures in (0, kGreedyBelowTemperature) are treated as 0 (greedy): at T = 1e-3 a logit gap of
// 0.04 already makes the odds e^-40 ~ 4e-18, below the 2^-53 resolution of the sampler's uniform draw,
// so greedy is what such a temperature means; it also keeps l / T finite for every finite logit.
inline constexpr float kGreedyBelowTemperature = 1e-3f;
inline constexpr float kMaxTemperature = 100.f;
// Repetition penalty range: outside it l / r or l * r would leave float range for real logits.
inline constexpr float kMinRepetitionPenalty = 0.01f;
inline constexpr float kMaxRepetitionPenalty = 100.f;
inline constexpr int32_t kDefaultMaxTokens = 128;

struct SamplingParams {
  float temperature = 0.f;         // [0, 100]; 0 (or < kGreedyBelowTemperature) => greedy (ties -> lowest id)
  int top_k = 0;                   // >= 0; keep the k largest logits (ties at the k-th kept); 0 = off
  float top_p = 1.f;               // (0, 1]; nucleus: smallest top set with probability mass >= top_p
  float min_p = 0.f;               // [0, 1]; drop tokens with p < min_p * p_max
  float repetition_penalty = 1.f;  // [0.01, 100]; on tokens in history: l > 0 ? l / r : l * r
  uint64_t seed = 0;               // seeds the per-sequence std::mt19937_64

  bool greedy() const { return temperature < kGreedyBelowTemperature; }
  // INVALID_ARGUMENT "sampling.<field>: ..." for the first NaN / infinite / out-of-range field.
  absl::Status Validate() const;
};

enum class FinishReason { kMaxTokens, kEos, kStopSequence, kCancelled, kDeadline, kError };
// "max_tokens", "eos", "stop_sequence", "cancelled", "deadline", "error".
const char* FinishReasonName(FinishReason r);

struct StopConditions {
  int32_t max_tokens = kDefaultMaxTokens;  // >= 0 (0: prefill only, internal); servers cap it
  // Stop when the decoded text contains one of these (finish kStopSequence). The matched string and
  // anything after it are cut from the text unless include_stop_str_in_output.
  std::vector<std::string> stop_strings;
  // Stop after one of these ids (finish kStopSequence). The token stays in token_ids and in the session
  // history; its text is delivered only with include_stop_str_in_output.
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;                 // the tokenizer's end-of-turn ids do not stop (finish kEos)
  bool include_stop_str_in_output = false;

  // INVALID_ARGUMENT "stopping.<field>: ..."; ids are checked against vocab_size when it is > 0.
  absl::Status Validate(int64_t vocab_size = 0) const;
};

struct DecodeParams {
  SamplingParams sampling;
  StopConditions stop;
  bool logprobs = false;  // report log softmax(raw logits)[token] per generated token

  absl::Status Validate(int64_t vocab_size = 0) const;
};

}  // namespace titand
