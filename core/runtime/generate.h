// Scoring and generation over one SessionCursor (sequence_state.h: the last token of the history is
// kept pending, so sessions split anywhere give the same results as one uninterrupted call).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/causal_lm.h"
#include "core/runtime/decoder.h"
#include "core/sampling/sampling_params.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

struct ScoreResult {
  std::vector<int32_t> ids;
  std::vector<double> logprobs;  // logprobs[i] = log p(ids[i] | everything before); NaN when nothing precedes
};
// Prefill in chunks of `chunk` tokens (bounded memory for long inputs).
absl::StatusOr<ScoreResult> Score(CausalLM& model, SessionCursor& cur, const std::vector<int32_t>& ids,
                                  int64_t chunk = 512);

struct GenerateResult {
  std::vector<int32_t> tokens;   // generated ids (including a final stop token, if any)
  std::vector<float> logprobs;   // one per token when params.logprobs
  std::string text;              // the delivered text (decoder.h: stop rules applied)
  FinishReason finish = FinishReason::kMaxTokens;
  int64_t prompt_tokens = 0;
};

// on_token(id, text_delta) -> false cancels (finish kCancelled). The prompt and the generated tokens
// become part of `cur` (the last generated token pending). The per-token decisions are the Decoder's
// (core/runtime/decoder.h), the same object the engine runs. params are validated (INVALID_ARGUMENT).
using TokenCallback = std::function<bool(int32_t, const std::string&)>;
absl::StatusOr<GenerateResult> Generate(CausalLM& model, const Tokenizer& tok, SessionCursor& cur,
                                        const std::vector<int32_t>& prompt, const DecodeParams& params,
                                        const TokenCallback& on_token, int64_t prefill_chunk = 512);

// Feeds `ids` after the cursor's history (pending + ids; all but the last fed, the last pending), in
// chunks. The cursor then holds its old history + ids.
absl::Status Append(CausalLM& model, SessionCursor& cur, const std::vector<int32_t>& ids, int64_t chunk = 512);

// Turn commit: `cur` holds pre_turn's history + `have` (the turn as fed and sampled); afterwards it
// holds pre_turn's history + `target`. Only the missing tail is fed when `have` is a prefix of `target`
// (e.g. a chat template's closing marker); otherwise the turn is rebuilt from a copy of pre_turn.
absl::Status CommitTokens(CausalLM& model, SessionCursor& cur, const SessionCursor& pre_turn,
                          const std::vector<int32_t>& have, const std::vector<int32_t>& target, int64_t chunk = 512);

}  // namespace titand
