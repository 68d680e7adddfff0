// The decoding core: turns logits into tokens, text and a finish reason, one token at a time. The ONE
// copy of the sample -> stop -> detokenize loop, used by Generate() (titan-run) and by the engine (one
// Decoder per running request), so both stream exactly the same tokens and text for the same request.
//
// Per token (Next):
//   1. sample with the request's own seeded Sampler (core/sampling; history = fed turn tokens + output);
//   2. logprob = log softmax(raw logits)[id] when DecodeParams::logprobs (before penalties/temperature);
//   3. stop ids: a request stop_token_id -> kStopSequence; else a tokenizer end-of-turn id (unless
//      ignore_eos) -> kEos. The id is output either way; its text only with include_stop_str_in_output
//      (end-of-turn ids are control tokens and have no text);
//   4. text: the streaming detokenizer (control tokens give no text, UTF-8 never split);
//   5. stop strings: the earliest-ending match in the text cuts the text at its start (or its end with
//      include_stop_str_in_output) -> kStopSequence. A suffix that could begin a stop string is held back;
//   6. max_tokens reached -> kMaxTokens. The released text of this token is `delta`.
// Torch-free: logits are a plain float array.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/sampling/sampler.h"
#include "core/sampling/sampling_params.h"
#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

struct TokenOutcome {
  int32_t id = 0;
  std::string delta;    // text released by this token
  float logprob = 0;    // when requested
  bool done = false;
  FinishReason finish = FinishReason::kMaxTokens;  // meaningful when done
};

class Decoder {
 public:
  // `tok` may be null (no text, no end-of-turn ids). `history` = the tokens before the first generated
  // one (the repetition penalty's context). `params` should have passed Validate().
  Decoder(const Tokenizer* tok, const DecodeParams& params, std::vector<int32_t> history);

  // logits: fp32 [vocab] predicting the next token. Must not be called after an outcome with done.
  TokenOutcome Next(const float* logits, int64_t vocab);

  const std::vector<int32_t>& tokens() const { return tokens_; }  // every generated id, in order
  int64_t generated() const { return static_cast<int64_t>(tokens_.size()); }
  int32_t last() const { return tokens_.back(); }
  const std::string& delivered_text() const { return delivered_; }  // concatenation of every delta

 private:
  const Tokenizer* tok_;
  DecodeParams params_;
  Sampler sampler_;
  std::vector<int32_t> eos_ids_;
  std::vector<int32_t> history_, tokens_;
  std::optional<IncrementalDetokenizer> detok_;  // only with a tokenizer
  std::string text_;        // decoded so far (cut at a stop string)
  std::string delivered_;   // text_[0, emitted)
};

}  // namespace titand
