#include "cli/commands.h"

#include <chrono>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/status.h"
#include "core/runtime/device.h"
#include "core/tokenizer/chat_format.h"
#include "nlohmann/json.hpp"

namespace titand::cli {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status NeedTokenizer(const Runtime& rt) {
  if (rt.tokenizer) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(rt.model_path, " has no tokenizer (tokenizer.json); pass token ids with --ids"));
}

absl::StatusOr<GenerateOptions> GenOptions(const Args& a) {
  GenerateOptions g;
  ASSIGN_OR_RETURN(auto max_tokens, a.GetInt("max-tokens"));
  g.max_tokens = static_cast<int>(max_tokens.value_or(128));
  ASSIGN_OR_RETURN(auto t, a.GetDouble("temperature"));
  ASSIGN_OR_RETURN(auto top_k, a.GetInt("top-k"));
  ASSIGN_OR_RETURN(auto top_p, a.GetDouble("top-p"));
  ASSIGN_OR_RETURN(auto min_p, a.GetDouble("min-p"));
  ASSIGN_OR_RETURN(auto rep, a.GetDouble("repetition-penalty"));
  ASSIGN_OR_RETURN(auto seed, a.GetInt("seed"));
  g.sampling.temperature = static_cast<float>(t.value_or(0.0));  // greedy unless asked
  g.sampling.top_k = static_cast<int>(top_k.value_or(0));
  g.sampling.top_p = static_cast<float>(top_p.value_or(1.0));
  g.sampling.min_p = static_cast<float>(min_p.value_or(0.0));
  g.sampling.repetition_penalty = static_cast<float>(rep.value_or(1.0));
  g.sampling.seed = static_cast<uint64_t>(seed.value_or(0));
  if (a.Has("stop")) g.stop_strings.push_back(a.Get("stop"));
  RETURN_IF_ERROR(g.sampling.Validate());
  return g;
}

// Renders one chat turn; the first turn of a conversation gets the template's system prompt rules.
absl::StatusOr<std::string> RenderTurn(const Runtime& rt, const std::string& system, const std::string& user,
                                       bool first_turn) {
  ASSIGN_OR_RETURN(ChatFormat f, DetectChatFormat(rt.tokenizer->chat_template_source()));
  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  msgs.push_back({"user", user});
  return RenderChat(f, msgs, /*add_generation_prompt=*/true, rt.tokenizer->chat_template_source(), first_turn);
}

// One generation streamed to stdout, timing to stderr.
absl::Status StreamTurn(Runtime& rt, SessionCursor& cur, const std::vector<int32_t>& prompt,
                        const GenerateOptions& g, bool stream, bool json = false) {
  const auto t0 = Clock::now();
  Clock::time_point t_first;
  bool first = true;
  auto on_token = [&](int32_t, const std::string& delta) {
    if (first) {
      t_first = Clock::now();
      first = false;
    }
    if (stream) std::cout << delta << std::flush;
    return true;
  };
  ASSIGN_OR_RETURN(GenerateResult r, Generate(*rt.model, *rt.tokenizer, cur, prompt, g, on_token));
  const auto t1 = Clock::now();
  if (json) {
    nlohmann::json j = {{"tokens", r.tokens}, {"text", r.text}, {"finish_reason", FinishReasonName(r.finish)},
                        {"prompt_tokens", r.prompt_tokens}, {"prompt_ids", prompt}};
    std::cout << j.dump() << "\n";
    return absl::OkStatus();
  }
  if (!stream) std::cout << r.text;
  std::cout << "\n" << std::flush;
  const double ttft = first ? 0 : std::chrono::duration<double>(t_first - t0).count();
  const double decode_s = first ? 0 : std::chrono::duration<double>(t1 - t_first).count();
  const size_t n = r.tokens.size();
  std::cerr << absl::StrCat("[", r.prompt_tokens, " prompt tokens, ", n, " generated, finish=",
                            FinishReasonName(r.finish), ", ttft ", static_cast<int>(ttft * 1000), " ms, ",
                            n > 1 && decode_s > 0 ? static_cast<int>((n - 1) / decode_s) : 0, " tok/s decode]\n");
  return absl::OkStatus();
}

}  // namespace

absl::Status RunGenerate(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  RETURN_IF_ERROR(NeedTokenizer(*rt));
  ASSIGN_OR_RETURN(std::string text, ReadText(a));
  ASSIGN_OR_RETURN(GenerateOptions g, GenOptions(a));
  const std::string session = a.Get("session");
  ASSIGN_OR_RETURN(SessionCursor cur, OpenCursor(*rt, session));
  const bool fresh = cur.state.num_tokens == 0 && cur.pending.empty();
  if (a.Has("chat")) {
    ASSIGN_OR_RETURN(text, RenderTurn(*rt, a.Get("system"), text, fresh));
  }
  std::vector<int32_t> prompt = rt->tokenizer->Encode(text);
  RETURN_IF_ERROR(StreamTurn(*rt, cur, prompt, g, !a.Has("no-stream") && !a.Has("json"), a.Has("json")));
  if (!session.empty()) RETURN_IF_ERROR(SaveCursor(*rt, cur, session));
  return absl::OkStatus();
}

absl::Status RunChat(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  RETURN_IF_ERROR(NeedTokenizer(*rt));
  ASSIGN_OR_RETURN(GenerateOptions g, GenOptions(a));
  const std::string session = a.Get("session");
  ASSIGN_OR_RETURN(SessionCursor cur, OpenCursor(*rt, session));
  std::string line;
  const bool tty = isatty(0);
  while (true) {
    if (tty) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    const bool fresh = cur.state.num_tokens == 0 && cur.pending.empty();
    // Each turn processes only its own new tokens: the history lives in the session state.
    ASSIGN_OR_RETURN(std::string text, RenderTurn(*rt, fresh ? a.Get("system") : "", line, fresh));
    std::vector<int32_t> prompt = rt->tokenizer->Encode(text);
    RETURN_IF_ERROR(StreamTurn(*rt, cur, prompt, g, true));
    if (!session.empty()) RETURN_IF_ERROR(SaveCursor(*rt, cur, session));
  }
  return absl::OkStatus();
}

absl::Status RunScore(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  std::vector<int32_t> ids;
  if (a.Has("ids")) {
    ASSIGN_OR_RETURN(ids, ParseIds(a.Get("ids")));
  } else {
    RETURN_IF_ERROR(NeedTokenizer(*rt));
    ASSIGN_OR_RETURN(std::string text, ReadText(a));
    ids = rt->tokenizer->Encode(text);
  }
  const std::string session = a.Get("session");
  ASSIGN_OR_RETURN(SessionCursor cur, OpenCursor(*rt, session));
  ASSIGN_OR_RETURN(ScoreResult r, Score(*rt->model, cur, ids));
  std::vector<std::string> lps;
  for (double v : r.logprobs) lps.push_back(JsonNumber(v));
  std::cout << "{\"ids\": [" << absl::StrJoin(r.ids, ", ") << "], \"logprobs\": [" << absl::StrJoin(lps, ", ")
            << "], \"history_tokens\": " << cur.history_tokens() << ", \"state_bytes\": " << cur.ByteSize() << "}\n";
  if (!session.empty()) RETURN_IF_ERROR(SaveCursor(*rt, cur, session));
  return absl::OkStatus();
}

absl::Status RunTokenize(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  RETURN_IF_ERROR(NeedTokenizer(*rt));
  ASSIGN_OR_RETURN(std::string text, ReadText(a));
  std::cout << "{\"ids\": [" << absl::StrJoin(rt->tokenizer->Encode(text), ", ") << "]}\n";
  return absl::OkStatus();
}

absl::Status RunInfo(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  const ModelConfig& c = rt->config;
  nlohmann::json j;
  j["path"] = rt->model_path;
  j["format"] = rt->format;
  j["architecture"] = c.arch;
  j["name"] = c.name;
  j["dtype"] = DtypeName(rt->model->options().dtype);
  j["device"] = rt->model->options().device.str();
  j["model_id"] = rt->model_id;
  j["parameters"] = rt->model->ParameterCount();
  j["layers"] = c.num_layers;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["heads"] = c.num_heads;
  j["kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["context_length"] = c.max_position;
  j["rope_theta"] = c.rope_theta;
  j["tied_embeddings"] = c.tie_embeddings;
  if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
  if (rt->tokenizer) {
    j["tokenizer"] = {{"type", "byte-level BPE"},
                      {"pre", rt->tokenizer->pre()},
                      {"vocab_size", rt->tokenizer->vocab_size()},
                      {"bos_id", rt->tokenizer->bos_id()},
                      {"eos_id", rt->tokenizer->eos_id()}};
    auto f = DetectChatFormat(rt->tokenizer->chat_template_source());
    j["chat_template"] = !f.ok() ? "unknown" : *f == ChatFormat::kChatML ? "chatml" : *f == ChatFormat::kLlama3 ? "llama3" : "raw";
  } else {
    j["tokenizer"] = nullptr;
  }
  AddStateInfo(*rt, &j);
  std::cout << j.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace titand::cli
