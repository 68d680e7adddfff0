// The per-request output side of a turn, token by token: sampling with the request's own seeded Sampler,
// stop ids / stop strings, incremental detokenization and the text deltas — the same decisions, in the
// same order, as Generate() in core/runtime/generate.cc, so the engine streams exactly what Generate
// would for the same request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/engine/engine_types.h"
#include "core/sampling/sampler.h"
#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

struct TokenOutcome {
  int32_t id = 0;
  std::string delta;       // text released by this token (stop-string prefixes are held back)
  float logprob = 0;       // log softmax(raw logits)[id], when requested
  bool done = false;
  EngineFinish finish = EngineFinish::kMaxTokens;  // meaningful when done
};

class TurnDecoder {
 public:
  // `tok` may be null (no text, no end-of-turn ids). `history` = the fed turn tokens (pending + prompt),
  // the repetition penalty's context.
  TurnDecoder(const Tokenizer* tok, const GenerateRequest& req, std::vector<int32_t> history);

  // logits: fp32 [vocab] predicting the next token.
  TokenOutcome Next(const float* logits, int64_t vocab);
  int64_t generated() const { return static_cast<int64_t>(tokens_.size()); }
  int32_t last() const { return tokens_.back(); }

 private:
  const Tokenizer* tok_;
  Sampler sampler_;
  int32_t max_tokens_;
  bool want_logprobs_;
  std::vector<std::string> stop_strings_;
  std::vector<int32_t> stop_ids_;
  std::vector<int32_t> history_, tokens_;
  std::optional<IncrementalDetokenizer> detok_;  // only with a tokenizer
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace titand
