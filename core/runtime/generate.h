// Scoring and generation over one SessionCursor (sequence_state.h: the last token of the history is
// kept pending, so sessions split anywhere give the same results as one uninterrupted call).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/causal_lm.h"
#include "core/sampling/sampler.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

struct ScoreResult {
  std::vector<int32_t> ids;
  std::vector<double> logprobs;  // logprobs[i] = log p(ids[i] | everything before); NaN when nothing precedes
};
// Prefill in chunks of `chunk` tokens (bounded memory for long inputs).
absl::StatusOr<ScoreResult> Score(CausalLM& model, SessionCursor& cur, const std::vector<int32_t>& ids,
                                  int64_t chunk = 512);

enum class FinishReason { kMaxTokens, kEos, kStopSequence, kCancelled };
const char* FinishReasonName(FinishReason r);

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 64;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_ids;  // in addition to the tokenizer's end-of-turn ids when stop_at_eos
  bool stop_at_eos = true;
  int64_t prefill_chunk = 512;
};

struct GenerateResult {
  std::vector<int32_t> tokens;   // generated ids (including a final stop token, if any)
  std::string text;              // detokenized (stop string removed)
  FinishReason finish = FinishReason::kMaxTokens;
  int64_t prompt_tokens = 0;
};

// on_token(id, text_delta) -> false cancels. The prompt and generated tokens become part of `cur`.
using TokenCallback = std::function<bool(int32_t, const std::string&)>;
absl::StatusOr<GenerateResult> Generate(CausalLM& model, const Tokenizer& tok, SessionCursor& cur,
                                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                        const TokenCallback& on_token);

}  // namespace titand
