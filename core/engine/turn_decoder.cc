#include "core/engine/turn_decoder.h"

#include <algorithm>

#include "core/runtime/stop_strings.h"

namespace titand {

TurnDecoder::TurnDecoder(const Tokenizer* tok, const GenerateRequest& req, std::vector<int32_t> history)
    : tok_(tok),
      sampler_(req.sampling),
      max_tokens_(req.max_tokens),
      want_logprobs_(req.return_logprobs),
      stop_strings_(req.stop_strings),
      stop_ids_(req.stop_token_ids),
      history_(std::move(history)) {
  if (tok_) detok_.emplace(*tok_);
  if (tok_ && !req.ignore_eos) stop_ids_.insert(stop_ids_.end(), tok_->stop_ids().begin(), tok_->stop_ids().end());
}

TokenOutcome TurnDecoder::Next(const float* logits, int64_t vocab) {
  TokenOutcome o;
  o.id = sampler_.Sample(logits, vocab, history_);
  if (want_logprobs_) o.logprob = LogProb(logits, vocab, o.id);
  tokens_.push_back(o.id);
  history_.push_back(o.id);
  const bool is_stop = std::find(stop_ids_.begin(), stop_ids_.end(), o.id) != stop_ids_.end();
  if (tok_) {
    text_ += detok_->Add(o.id);
    if (is_stop) text_ += detok_->Finish();
  }
  const size_t stop_at = FindStop(text_, emitted_, stop_strings_);
  if (stop_at != std::string::npos) {
    text_.resize(stop_at);
    o.finish = EngineFinish::kStopSequence;
  } else if (is_stop) {
    o.finish = EngineFinish::kEos;
  }
  o.done = stop_at != std::string::npos || is_stop || generated() >= max_tokens_;
  const size_t upto = o.done ? text_.size() : text_.size() - PartialStopSuffix(text_, stop_strings_);
  if (upto > emitted_) o.delta = text_.substr(emitted_, upto - emitted_);
  emitted_ = std::max(emitted_, upto);
  return o;
}

}  // namespace titand
