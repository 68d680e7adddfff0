#include "core/runtime/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/runtime/stop_strings.h"
#include "core/tokenizer/incremental_detokenizer.h"

namespace titand {
namespace {

// Feeds `ids` through the model in chunks; returns the logits of the LAST fed token ([vocab]) and, when
// `all_rows` is set, every row ([T, vocab] per chunk, concatenated by the caller).
absl::StatusOr<at::Tensor> Feed(CausalLM& model, SequenceState& state, const std::vector<int32_t>& ids,
                                int64_t chunk, std::vector<at::Tensor>* all_rows) {
  at::Tensor last;
  for (size_t off = 0; off < ids.size(); off += chunk) {
    const size_t end = std::min(ids.size(), off + static_cast<size_t>(chunk));
    std::vector<ForwardInput> in(1);
    in[0].tokens.assign(ids.begin() + off, ids.begin() + end);
    in[0].state = &state;
    in[0].all_logits = all_rows != nullptr;
    ASSIGN_OR_RETURN(auto logits, model.Forward(in));
    if (all_rows) all_rows->push_back(logits[0]);
    last = logits[0][logits[0].size(0) - 1];
  }
  return last;
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kMaxTokens: return "max_tokens";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopSequence: return "stop_sequence";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

absl::StatusOr<ScoreResult> Score(CausalLM& model, SessionCursor& cur, const std::vector<int32_t>& ids,
                                  int64_t chunk) {
  ScoreResult r;
  r.ids = ids;
  if (ids.empty()) return r;
  std::vector<int32_t> seq = cur.pending;
  seq.insert(seq.end(), ids.begin(), ids.end());
  const bool has_context = !cur.pending.empty();
  // Feed all but the last token: row j predicts seq[j + 1]. The last becomes the new pending token.
  std::vector<int32_t> feed(seq.begin(), seq.end() - 1);
  std::vector<at::Tensor> rows;
  if (!feed.empty()) {
    ASSIGN_OR_RETURN(at::Tensor unused, Feed(model, cur.state, feed, chunk, &rows));
    (void)unused;
  }
  at::Tensor logits = rows.empty() ? at::Tensor() : (rows.size() == 1 ? rows[0] : at::cat(rows, 0));
  at::Tensor lp;
  if (logits.defined()) {
    at::Tensor logp = at::log_softmax(logits.to(at::kDouble), -1);
    std::vector<int64_t> next(seq.begin() + 1, seq.end());
    lp = logp.gather(1, at::tensor(next, at::kLong).unsqueeze(1)).squeeze(1).contiguous();
  }
  // seq[0] is the pending token when there is context (its score was given before), else ids[0].
  if (!has_context) r.logprobs.push_back(std::numeric_limits<double>::quiet_NaN());
  for (int64_t j = 0; lp.defined() && j < lp.size(0); ++j) r.logprobs.push_back(lp[j].item<double>());
  cur.pending = {seq.back()};
  return r;
}

absl::StatusOr<GenerateResult> Generate(CausalLM& model, const Tokenizer& tok, SessionCursor& cur,
                                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                        const TokenCallback& on_token) {
  RETURN_IF_ERROR(opt.sampling.Validate());
  if (opt.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  std::vector<int32_t> seq = cur.pending;
  seq.insert(seq.end(), prompt.begin(), prompt.end());
  if (seq.empty()) return absl::InvalidArgumentError("generate: empty prompt and no session history");
  GenerateResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (opt.max_tokens == 0) {  // prefill only: keep the invariant (last token pending)
    std::vector<int32_t> feed(seq.begin(), seq.end() - 1);
    if (!feed.empty()) RETURN_IF_ERROR(Feed(model, cur.state, feed, opt.prefill_chunk, nullptr).status());
    cur.pending = {seq.back()};
    return res;
  }
  ASSIGN_OR_RETURN(at::Tensor logits, Feed(model, cur.state, seq, opt.prefill_chunk, nullptr));
  cur.pending.clear();

  std::vector<int32_t> stop_ids = opt.stop_ids;
  if (opt.stop_at_eos) stop_ids.insert(stop_ids.end(), tok.stop_ids().begin(), tok.stop_ids().end());
  Sampler sampler(opt.sampling);
  std::vector<int32_t> history = seq;  // for the repetition penalty
  IncrementalDetokenizer detok(tok);
  std::string text;        // everything decoded so far
  size_t emitted = 0;      // bytes of `text` already handed to the callback
  for (int i = 0; i < opt.max_tokens; ++i) {
    at::Tensor lc = logits.contiguous();
    const int32_t id = sampler.Sample(lc.data_ptr<float>(), lc.size(0), history);
    res.tokens.push_back(id);
    history.push_back(id);
    const bool is_stop = std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
    text += detok.Add(id);
    if (is_stop) text += detok.Finish();
    const size_t stop_at = FindStop(text, emitted, opt.stop_strings);
    if (stop_at != std::string::npos) {
      text.resize(stop_at);
      res.finish = FinishReason::kStopSequence;
    } else if (is_stop) {
      res.finish = FinishReason::kEos;
    }
    const bool done = stop_at != std::string::npos || is_stop || i + 1 == opt.max_tokens;
    size_t upto = done ? text.size() : text.size() - PartialStopSuffix(text, opt.stop_strings);
    std::string delta = upto > emitted ? text.substr(emitted, upto - emitted) : std::string();
    emitted = std::max(emitted, upto);
    if (on_token && !on_token(id, delta)) {
      res.finish = FinishReason::kCancelled;
      break;
    }
    if (done) break;
    std::vector<ForwardInput> in(1);
    in[0].tokens = {id};
    in[0].state = &cur.state;
    ASSIGN_OR_RETURN(auto out, model.Forward(in));
    logits = out[0][0];
  }
  // The last generated token is not fed yet: it is the state's pending token.
  if (!res.tokens.empty()) cur.pending = {res.tokens.back()};
  res.text = text.substr(0, emitted);
  return res;
}

}  // namespace titand
