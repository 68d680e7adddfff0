#include "core/runtime/decoder.h"

#include <algorithm>

#include "core/runtime/stop_strings.h"

namespace titand {
namespace {

bool Contains(const std::vector<int32_t>& v, int32_t id) { return std::find(v.begin(), v.end(), id) != v.end(); }

}  // namespace

Decoder::Decoder(const Tokenizer* tok, const DecodeParams& params, std::vector<int32_t> history)
    : tok_(tok), params_(params), sampler_(params.sampling), history_(std::move(history)) {
  if (tok_) detok_.emplace(*tok_);
  if (tok_ && !params_.stop.ignore_eos) eos_ids_ = tok_->stop_ids();
}

TokenOutcome Decoder::Next(const float* logits, int64_t vocab) {
  const StopConditions& stop = params_.stop;
  TokenOutcome o;
  o.id = sampler_.Sample(logits, vocab, history_);
  if (params_.logprobs) o.logprob = LogProb(logits, vocab, o.id);
  tokens_.push_back(o.id);
  history_.push_back(o.id);
  const bool user_stop = Contains(stop.stop_token_ids, o.id);
  const bool eos = !user_stop && Contains(eos_ids_, o.id);
  if (detok_) {
    const std::string piece = detok_->Add(o.id);
    if (!user_stop || stop.include_stop_str_in_output) text_ += piece;
    if (user_stop || eos) text_ += detok_->Finish();
  }
  const StopMatch m = FindStopMatch(text_, delivered_.size(), stop.stop_strings);
  if (m.found()) {
    text_.resize(stop.include_stop_str_in_output ? m.pos + m.len : m.pos);
    o.finish = FinishReason::kStopSequence;
  } else if (user_stop) {
    o.finish = FinishReason::kStopSequence;
  } else if (eos) {
    o.finish = FinishReason::kEos;
  }
  o.done = m.found() || user_stop || eos || generated() >= stop.max_tokens;
  if (o.done && detok_ && !m.found() && !user_stop && !eos) text_ += detok_->Finish();
  const size_t hold = o.done ? 0 : PartialStopSuffix(text_, stop.stop_strings);
  const size_t upto = std::max(delivered_.size(), text_.size() - hold);
  o.delta = text_.substr(delivered_.size(), upto - delivered_.size());
  delivered_ += o.delta;
  return o;
}

}  // namespace titand
