#include "server/proto_convert.h"

#include "absl/strings/str_cat.h"

namespace titand {
namespace {

// Copies the set fields over the defaults (sampling_params.h); DecodeParams::Validate checks them all.
void ConvertDecode(const v1::GenerateRequest& in, DecodeParams* out) {
  const v1::SamplingParams& sp = in.sampling();
  SamplingParams& o = out->sampling;
  if (sp.has_temperature()) o.temperature = sp.temperature();
  if (sp.has_top_k()) o.top_k = sp.top_k();
  if (sp.has_top_p()) o.top_p = sp.top_p();
  if (sp.has_min_p()) o.min_p = sp.min_p();
  if (sp.has_repetition_penalty()) o.repetition_penalty = sp.repetition_penalty();
  if (sp.has_seed()) o.seed = sp.seed();
  const v1::StoppingCriteria& st = in.stopping();
  StopConditions& s = out->stop;
  if (st.has_max_tokens()) s.max_tokens = st.max_tokens();
  s.stop_strings.assign(st.stop().begin(), st.stop().end());
  s.stop_token_ids.assign(st.stop_token_ids().begin(), st.stop_token_ids().end());
  s.ignore_eos = st.ignore_eos();
  s.include_stop_str_in_output = st.include_stop_str_in_output();
  out->logprobs = in.logprobs();
}

absl::Status ConvertInput(const v1::GenerateRequest& in, GenerateRequest* out) {
  switch (in.input_case()) {
    case v1::GenerateRequest::kText:
      if (in.text().empty()) return absl::InvalidArgumentError("input.text: empty");
      out->text = in.text();
      return absl::OkStatus();
    case v1::GenerateRequest::kTokens:
      if (in.tokens().ids().empty()) return absl::InvalidArgumentError("input.tokens.ids: empty");
      out->token_ids.assign(in.tokens().ids().begin(), in.tokens().ids().end());
      return absl::OkStatus();
    case v1::GenerateRequest::kChat:
      if (in.chat().messages().empty()) return absl::InvalidArgumentError("input.chat.messages: empty");
      for (const v1::ChatMessage& m : in.chat().messages()) out->messages.push_back({m.role(), m.content()});
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("input: one of text, tokens or chat is required");
  }
}

}  // namespace

absl::Status FromProto(const v1::GenerateRequest& in, GenerateRequest* out) {
  *out = GenerateRequest{};
  out->request_id = in.request_id();
  out->session_id = in.session_id();
  absl::Status st = ConvertInput(in, out);
  if (!st.ok()) return st;
  ConvertDecode(in, &out->decode);
  if (in.stopping().has_max_tokens() && in.stopping().max_tokens() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.max_tokens: must be >= 1, got ", in.stopping().max_tokens()));
  }
  st = out->decode.Validate();  // ranges, NaN/inf, UTF-8 of stop strings; the engine adds vocabulary checks
  if (!st.ok()) return st;
  out->parse_special = in.parse_special_tokens();
  out->priority = in.priority();
  return absl::OkStatus();
}

v1::FinishReason ToProto(EngineFinish finish) {
  switch (finish) {
    case EngineFinish::kMaxTokens: return v1::FINISH_REASON_MAX_TOKENS;
    case EngineFinish::kEos: return v1::FINISH_REASON_EOS;
    case EngineFinish::kStopSequence: return v1::FINISH_REASON_STOP_SEQUENCE;
    case EngineFinish::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case EngineFinish::kDeadline: return v1::FINISH_REASON_DEADLINE;
    case EngineFinish::kError: return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const StreamChunk& chunk, const std::string& session_id, v1::GenerateResponse* out) {
  out->Clear();
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  out->set_text(chunk.text);
  out->mutable_logprobs()->Add(chunk.logprobs.begin(), chunk.logprobs.end());
  out->set_session_id(session_id);
  if (!chunk.final) return;
  out->set_finish_reason(ToProto(chunk.finish));
  v1::Usage* u = out->mutable_usage();
  u->set_prompt_tokens(chunk.usage.prompt_tokens);
  u->set_completion_tokens(chunk.usage.completion_tokens);
  u->set_session_tokens(session_id.empty() ? 0 : chunk.usage.session_tokens);  // stateless: no history kept
  u->set_committed_tokens(session_id.empty() ? 0 : chunk.usage.committed_tokens);
  v1::Timing* t = out->mutable_timing();
  t->set_queue_seconds(chunk.timing.queue_seconds);
  t->set_time_to_first_token_seconds(chunk.timing.ttft_seconds);
  t->set_total_seconds(chunk.timing.total_seconds);
  switch (chunk.shared) {
    case SharedWrite::kNone: break;
    case SharedWrite::kDurable: out->set_shared_state(v1::SHARED_STATE_DURABLE); break;
    case SharedWrite::kPending: out->set_shared_state(v1::SHARED_STATE_PENDING); break;
    case SharedWrite::kRejected: out->set_shared_state(v1::SHARED_STATE_REJECTED); break;
  }
}

v1::SessionTier ToProto(SessionTier tier) {
  switch (tier) {
    case SessionTier::kDevice: return v1::SESSION_TIER_DEVICE;
    case SessionTier::kHost: return v1::SESSION_TIER_HOST;
    case SessionTier::kDisk: return v1::SESSION_TIER_DISK;
  }
  return v1::SESSION_TIER_UNSPECIFIED;
}

void ToProto(const SessionInfo& info, v1::Session* out) {
  out->set_id(info.id);
  out->set_history_tokens(info.history_tokens);
  out->set_state_bytes(info.state_bytes);
  out->set_tier(ToProto(info.tier));
  out->set_busy(info.busy);
  out->set_idle_seconds(info.idle_seconds);
  out->set_created_unix(info.created_unix);
  out->set_error(info.error);
}

std::optional<SteadyTime> SteadyDeadline(std::chrono::system_clock::time_point deadline,
                                         std::chrono::system_clock::time_point system_now,
                                         SteadyTime steady_now) {
  using namespace std::chrono;
  // Compare in a wide unit first: time_point::max() minus now would overflow nanoseconds arithmetic.
  if (duration_cast<hours>(deadline.time_since_epoch()) - duration_cast<hours>(system_now.time_since_epoch()) >
      hours(24 * 365 * 10)) {
    return std::nullopt;
  }
  auto left = duration_cast<steady_clock::duration>(deadline - system_now);
  return steady_now + left;
}

}  // namespace titand
