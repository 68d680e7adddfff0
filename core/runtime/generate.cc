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

absl::Status Append(CausalLM& model, SessionCursor& cur, const std::vector<int32_t>& ids, int64_t chunk) {
  if (ids.empty()) return absl::OkStatus();
  std::vector<int32_t> feed = cur.pending;
  feed.insert(feed.end(), ids.begin(), ids.end() - 1);
  if (!feed.empty()) RETURN_IF_ERROR(Feed(model, cur.state, feed, chunk, nullptr).status());
  cur.pending = {ids.back()};
  return absl::OkStatus();
}

absl::Status CommitTokens(CausalLM& model, SessionCursor& cur, const SessionCursor& pre_turn,
                          const std::vector<int32_t>& have, const std::vector<int32_t>& target, int64_t chunk) {
  if (target.size() >= have.size() && std::equal(have.begin(), have.end(), target.begin())) {
    return Append(model, cur, std::vector<int32_t>(target.begin() + have.size(), target.end()), chunk);
  }
  cur = pre_turn.Fork();
  return Append(model, cur, target, chunk);
}

absl::StatusOr<GenerateResult> Generate(CausalLM& model, const Tokenizer& tok, SessionCursor& cur,
                                        const std::vector<int32_t>& prompt, const DecodeParams& params,
                                        const TokenCallback& on_token, int64_t prefill_chunk) {
  RETURN_IF_ERROR(params.Validate(model.config().vocab_size));
  std::vector<int32_t> seq = cur.pending;
  seq.insert(seq.end(), prompt.begin(), prompt.end());
  if (seq.empty()) return absl::InvalidArgumentError("generate: empty prompt and no session history");
  GenerateResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (params.stop.max_tokens == 0) {  // prefill only: keep the invariant (last token pending)
    RETURN_IF_ERROR(Append(model, cur, prompt, prefill_chunk));
    return res;
  }
  ASSIGN_OR_RETURN(at::Tensor logits, Feed(model, cur.state, seq, prefill_chunk, nullptr));
  cur.pending.clear();
  Decoder dec(&tok, params, seq);
  while (true) {
    at::Tensor lc = logits.to(at::kCPU, at::kFloat).contiguous();
    TokenOutcome o = dec.Next(lc.data_ptr<float>(), lc.size(0));
    if (params.logprobs) res.logprobs.push_back(o.logprob);
    if (on_token && !on_token(o.id, o.delta)) {
      res.finish = FinishReason::kCancelled;
      break;
    }
    if (o.done) {
      res.finish = o.finish;
      break;
    }
    std::vector<ForwardInput> in(1);
    in[0].tokens = {o.id};
    in[0].state = &cur.state;
    ASSIGN_OR_RETURN(auto out, model.Forward(in));
    logits = out[0][0];
  }
  // The last generated token is not fed yet: it is the state's pending token.
  res.tokens = dec.tokens();
  cur.pending = {res.tokens.back()};
  res.text = dec.delivered_text();
  return res;
}

}  // namespace titand
