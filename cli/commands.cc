#include "cli/commands.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/status.h"
#include "core/runtime/device.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/prompt_builder.h"
#include "nlohmann/json.hpp"

namespace titand::cli {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status NeedTokenizer(const Runtime& rt) {
  if (rt.tokenizer) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(rt.model_path, " has no tokenizer (tokenizer.json); pass token ids with --ids"));
}

// Decoding parameters from the flags; unset flags keep the defaults of core/sampling/sampling_params.h.
absl::StatusOr<DecodeParams> GenOptions(const Args& a) {
  DecodeParams g;
  ASSIGN_OR_RETURN(auto max_tokens, a.GetInt("max-tokens"));
  ASSIGN_OR_RETURN(auto t, a.GetDouble("temperature"));
  ASSIGN_OR_RETURN(auto top_k, a.GetInt("top-k"));
  ASSIGN_OR_RETURN(auto top_p, a.GetDouble("top-p"));
  ASSIGN_OR_RETURN(auto min_p, a.GetDouble("min-p"));
  ASSIGN_OR_RETURN(auto rep, a.GetDouble("repetition-penalty"));
  ASSIGN_OR_RETURN(auto seed, a.GetInt("seed"));
  if (max_tokens) g.stop.max_tokens = static_cast<int32_t>(*max_tokens);
  if (t) g.sampling.temperature = static_cast<float>(*t);
  if (top_k) g.sampling.top_k = static_cast<int>(*top_k);
  if (top_p) g.sampling.top_p = static_cast<float>(*top_p);
  if (min_p) g.sampling.min_p = static_cast<float>(*min_p);
  if (rep) g.sampling.repetition_penalty = static_cast<float>(*rep);
  if (seed) g.sampling.seed = static_cast<uint64_t>(*seed);
  if (a.Has("stop")) g.stop.stop_strings.push_back(a.Get("stop"));
  g.stop.include_stop_str_in_output = a.Has("include-stop");
  g.stop.ignore_eos = a.Has("ignore-eos");
  RETURN_IF_ERROR(g.Validate());
  return g;
}

// This chat turn's messages: the system prompt (if any) goes into the first turn only.
std::vector<ChatMessage> TurnMessages(const std::string& system, const std::string& user, bool first_turn) {
  std::vector<ChatMessage> msgs;
  if (first_turn && !system.empty()) msgs.push_back({"system", system});
  msgs.push_back({"user", user});
  return msgs;
}

// One generation streamed to stdout, timing to stderr. For a chat turn the cursor is then committed as
// the server commits it (prompt_builder.h: history == the template's rendering of the conversation).
absl::Status StreamTurn(Runtime& rt, SessionCursor& cur, const PromptInput& in, const PromptOptions& po,
                        const DecodeParams& g, bool stream, bool json = false) {
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, BuildPrompt(rt.tokenizer.get(), rt.config.vocab_size, in, po));
  const SessionCursor pre_turn = cur.Fork();
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
  std::vector<int32_t> committed = prompt;
  committed.insert(committed.end(), r.tokens.begin(), r.tokens.end());
  if (!in.messages.empty() && g.stop.max_tokens > 0) {
    ASSIGN_OR_RETURN(std::vector<int32_t> target, ChatTurnTokens(*rt.tokenizer, in.messages, r.text, po));
    RETURN_IF_ERROR(CommitTokens(*rt.model, cur, pre_turn, committed, target));
    committed = std::move(target);
  }
  if (json) {
    nlohmann::json j = {{"tokens", r.tokens}, {"text", r.text}, {"finish_reason", FinishReasonName(r.finish)},
                        {"prompt_tokens", r.prompt_tokens}, {"prompt_ids", prompt},
                        {"committed_ids", committed}, {"history_tokens", cur.history_tokens()}};
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
  ASSIGN_OR_RETURN(DecodeParams g, GenOptions(a));
  const std::string session = a.Get("session");
  ASSIGN_OR_RETURN(SessionCursor cur, OpenCursor(*rt, session));
  const PromptOptions po{cur.history_tokens() == 0, a.Has("parse-special")};
  PromptInput in;
  if (a.Has("chat")) {
    in.messages = TurnMessages(a.Get("system"), text, po.first_turn);
  } else {
    in.text = text;
  }
  RETURN_IF_ERROR(StreamTurn(*rt, cur, in, po, g, !a.Has("no-stream") && !a.Has("json"), a.Has("json")));
  if (!session.empty()) RETURN_IF_ERROR(SaveCursor(*rt, cur, session));
  return absl::OkStatus();
}

absl::Status RunChat(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  RETURN_IF_ERROR(NeedTokenizer(*rt));
  ASSIGN_OR_RETURN(DecodeParams g, GenOptions(a));
  const std::string session = a.Get("session");
  ASSIGN_OR_RETURN(SessionCursor cur, OpenCursor(*rt, session));
  std::string line;
  const bool tty = isatty(0);
  while (true) {
    if (tty) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    // Each turn processes only its own new tokens: the history lives in the session state.
    const PromptOptions po{cur.history_tokens() == 0, a.Has("parse-special")};
    PromptInput in;
    in.messages = TurnMessages(a.Get("system"), line, po.first_turn);
    RETURN_IF_ERROR(StreamTurn(*rt, cur, in, po, g, true));
    if (!session.empty()) RETURN_IF_ERROR(SaveCursor(*rt, cur, session));
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::vector<int32_t>> IdList(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(where, ": expected a list of token ids"));
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) return absl::InvalidArgumentError(absl::StrCat(where, ": token ids must be integers"));
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

// score --batch FILE: one JSON document per line, answered by one line on stdout, each with a fresh state:
//   [ids...]                                   -> {"logprobs": [...]}  (like score --ids)
//   {"prefix": [ids], "continuations": [[ids], ...]}
//                                              -> {"continuations": [[logprobs of each continuation token]]}
// The prefix is scored once; each continuation continues a fork of it (zero-shot multiple-choice scoring).
absl::Status RunScoreBatch(Runtime& rt, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open --batch file ", path));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const std::string where = absl::StrCat(path, ":", n);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
    auto lps = [](const ScoreResult& r) {
      nlohmann::json out = nlohmann::json::array();
      for (double v : r.logprobs) out.push_back(std::isnan(v) ? nlohmann::json() : nlohmann::json(v));
      return out;
    };
    SessionCursor cur;
    cur.state = rt.model->NewState();
    nlohmann::json result;
    if (j.is_array()) {
      ASSIGN_OR_RETURN(auto ids, IdList(j, where));
      ASSIGN_OR_RETURN(ScoreResult r, Score(*rt.model, cur, ids));
      result["logprobs"] = lps(r);
    } else if (j.is_object() && j.contains("prefix") && j.contains("continuations") && j["continuations"].is_array()) {
      ASSIGN_OR_RETURN(auto prefix, IdList(j["prefix"], where));
      if (prefix.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty prefix"));
      RETURN_IF_ERROR(Score(*rt.model, cur, prefix).status());
      result["continuations"] = nlohmann::json::array();
      for (const auto& c : j["continuations"]) {
        ASSIGN_OR_RETURN(auto ids, IdList(c, where));
        SessionCursor fork = cur.Fork();
        ASSIGN_OR_RETURN(ScoreResult r, Score(*rt.model, fork, ids));
        result["continuations"].push_back(lps(r));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected [ids] or {prefix, continuations}"));
    }
    std::cout << result.dump() << "\n" << std::flush;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunScore(const Args& a) {
  ASSIGN_OR_RETURN(auto rt, LoadFromArgs(a));
  if (a.Has("batch")) return RunScoreBatch(*rt, a.Get("batch"));
  std::vector<int32_t> ids;
  if (a.Has("ids")) {
    ASSIGN_OR_RETURN(ids, ParseIds(a.Get("ids")));
  } else {
    RETURN_IF_ERROR(NeedTokenizer(*rt));
    ASSIGN_OR_RETURN(std::string text, ReadText(a));
    PromptInput in;
    in.text = text;
    ASSIGN_OR_RETURN(ids, BuildPrompt(rt->tokenizer.get(), rt->config.vocab_size, in, {true, a.Has("parse-special")}));
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
  // The prompt builder's text path: ill-formed UTF-8 is an error (naming the byte), never dropped bytes.
  PromptInput in;
  in.text = text;
  ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                   BuildPrompt(rt->tokenizer.get(), rt->config.vocab_size, in, {true, a.Has("parse-special")}));
  std::cout << "{\"ids\": [" << absl::StrJoin(ids, ", ") << "]}\n";
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
  j["threads"] = rt->intra_op_threads;  // --threads resolved (0 -> the CPUs this process may use)
  j["model_id"] = rt->model_id;
  j["parameters"] = rt->model->ParameterCount();
  j["weights"] = rt->model->WeightFormatSummary();
  j["weight_bytes"] = rt->model->WeightBytes();
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
