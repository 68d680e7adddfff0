// Tokenizer::FromHfDir: a Hugging Face tokenizer directory (tokenizer.json with a byte-level BPE model,
// plus tokenizer_config.json / chat_template.jinja when present) into a TokenizerSpec.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {
namespace {

using Json = nlohmann::json;

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool IsType(const Json& j, const char* type) {
  return j.is_object() && j.contains("type") && j["type"] == type;
}

// ByteLevel pre-tokenizer step with the given use_regex and no prefix space.
bool IsByteLevel(const Json& j, bool use_regex) {
  return IsType(j, "ByteLevel") && !j.value("add_prefix_space", false) &&
         j.value("use_regex", true) == use_regex;
}

// Name of the pre-tokenizer a tokenizer.json pre_tokenizer describes, or an error.
absl::StatusOr<std::string> RecognisePreTokenizer(const Json& p) {
  if (IsByteLevel(p, true)) return std::string("gpt2");
  if (IsType(p, "Sequence") && p.contains("pretokenizers") && p["pretokenizers"].is_array()) {
    const Json& seq = p["pretokenizers"];
    if (seq.size() == 2 && IsType(seq[0], "Digits") && seq[0].value("individual_digits", false) &&
        IsByteLevel(seq[1], true)) {
      return std::string("smollm");
    }
    if (seq.size() == 2 && IsType(seq[0], "Split") && IsByteLevel(seq[1], false) &&
        seq[0].value("behavior", "") == "Isolated" && !seq[0].value("invert", false) &&
        seq[0].contains("pattern") && seq[0]["pattern"].contains("Regex")) {
      const std::string re = seq[0]["pattern"]["Regex"].get<std::string>();
      if (re == kLlama3Regex) return std::string("llama-bpe");
      if (re == kQwen2Regex) return std::string("qwen2");
      if (re == kGpt2Regex) return std::string("gpt2");
      return absl::InvalidArgumentError(absl::StrCat("unsupported Split regex: ", re));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer: ", p.dump()));
}

// A special-token entry of tokenizer_config.json: "text" or {"content": "text", ...}.
std::string TokenContent(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

absl::Status FillFromTokenizerJson(const Json& tj, TokenizerSpec* spec) {
  if (!tj.is_object() || !tj.contains("model")) return absl::InvalidArgumentError("no 'model' object");
  const Json& model = tj["model"];
  if (!IsType(model, "BPE")) {
    return absl::UnimplementedError(absl::StrCat("model type ", model.value("type", Json()).dump(),
                                                 " is not supported (only BPE)"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError("model.vocab is not an object");
  }
  std::vector<std::pair<int64_t, std::string>> entries;
  for (const auto& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) return absl::InvalidArgumentError(absl::StrCat("vocab id of '", tok, "'"));
    entries.emplace_back(id.get<int64_t>(), tok);
  }
  std::vector<std::pair<int64_t, bool>> added;  // id, special
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (const Json& a : tj["added_tokens"]) {
      if (!a.contains("id") || !a.contains("content")) return absl::InvalidArgumentError("added token without id/content");
      entries.emplace_back(a["id"].get<int64_t>(), a["content"].get<std::string>());
      added.emplace_back(a["id"].get<int64_t>(), a.value("special", false));
    }
  }
  int64_t max_id = -1;
  for (const auto& e : entries) {
    if (e.first < 0 || e.first > (1 << 24)) return absl::InvalidArgumentError(absl::StrCat("token id ", e.first));
    max_id = std::max(max_id, e.first);
  }
  spec->tokens.assign(max_id + 1, "");
  spec->token_types.assign(max_id + 1, kTokenUnused);
  for (const auto& [id, tok] : entries) {
    spec->tokens[id] = tok;
    spec->token_types[id] = kTokenNormal;
  }
  for (const auto& [id, special] : added) spec->token_types[id] = special ? kTokenControl : kTokenUserDefined;

  if (!model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError("model.merges is not an array");
  }
  for (const Json& m : model["merges"]) {
    if (m.is_string()) {
      spec->merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.push_back(absl::StrCat(m[0].get<std::string>(), " ", m[1].get<std::string>()));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("bad merge entry ", m.dump()));
    }
  }
  spec->ignore_merges = model.value("ignore_merges", false);

  const Json norm = tj.value("normalizer", Json());
  if (IsType(norm, "NFC")) {
    spec->nfc = true;
  } else if (!norm.is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported normalizer: ", norm.dump()));
  }
  if (!tj.contains("pre_tokenizer")) return absl::InvalidArgumentError("no pre_tokenizer");
  ASSIGN_OR_RETURN(spec->pre, RecognisePreTokenizer(tj["pre_tokenizer"]));

  // BOS added by a TemplateProcessing post-processor (possibly inside a Sequence).
  const Json post = tj.value("post_processor", Json());
  std::vector<const Json*> procs = {&post};
  if (IsType(*procs[0], "Sequence") && (*procs[0]).contains("processors")) {
    for (const Json& p : (*procs[0])["processors"]) procs.push_back(&p);
  }
  for (const Json* p : procs) {
    if (!IsType(*p, "TemplateProcessing") || !p->contains("single") || (*p)["single"].empty()) continue;
    const Json& first = (*p)["single"][0];
    if (first.contains("SpecialToken")) {
      const std::string tok = first["SpecialToken"].value("id", "");
      for (size_t i = 0; i < spec->tokens.size(); ++i) {
        if (!tok.empty() && spec->tokens[i] == tok) {
          spec->bos_id = static_cast<int32_t>(i);
          spec->add_bos = true;
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FillFromConfig(const Json& cj, TokenizerSpec* spec) {
  if (!cj.is_object()) return absl::InvalidArgumentError("not a JSON object");
  const auto id_of = [&](const Json& j) -> int32_t {
    const std::string s = TokenContent(j);
    for (size_t i = 0; i < spec->tokens.size(); ++i) {
      if (!s.empty() && spec->tokens[i] == s) return static_cast<int32_t>(i);
    }
    return -1;
  };
  if (cj.contains("bos_token") && !cj["bos_token"].is_null()) spec->bos_id = id_of(cj["bos_token"]);
  if (cj.contains("eos_token") && !cj["eos_token"].is_null()) spec->eos_id = id_of(cj["eos_token"]);
  if (cj.contains("pad_token") && !cj["pad_token"].is_null()) spec->pad_id = id_of(cj["pad_token"]);
  if (cj.contains("add_bos_token") && cj["add_bos_token"].is_boolean()) spec->add_bos = cj["add_bos_token"].get<bool>();
  if (spec->bos_id < 0) spec->add_bos = false;
  if (cj.contains("chat_template")) {
    const Json& ct = cj["chat_template"];
    if (ct.is_string()) {
      spec->chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const Json& e : ct) {
        if (e.value("name", "") == "default") spec->chat_template = e.value("template", "");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHfDir(const std::string& dir) {
  const std::string tj_path = dir + "/tokenizer.json";
  ASSIGN_OR_RETURN(std::string tj_text, ReadFile(tj_path));
  TokenizerSpec spec;
  const auto fail = [](const std::string& path, const absl::Status& st) {
    return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  };
  try {
    const Json tj = Json::parse(tj_text, nullptr, /*allow_exceptions=*/false);
    if (tj.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(tj_path, ": not valid JSON"));
    const absl::Status st = FillFromTokenizerJson(tj, &spec);
    if (!st.ok()) return fail(tj_path, st);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(tj_path, ": malformed: ", e.what()));
  }
  const std::string cfg_path = dir + "/tokenizer_config.json";
  auto cfg_text = ReadFile(cfg_path);
  if (cfg_text.ok()) {
    try {
      const Json cj = Json::parse(*cfg_text, nullptr, false);
      if (cj.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": not valid JSON"));
      const absl::Status st = FillFromConfig(cj, &spec);
      if (!st.ok()) return fail(cfg_path, st);
    } catch (const Json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": malformed: ", e.what()));
    }
  }
  auto jinja = ReadFile(dir + "/chat_template.jinja");
  if (jinja.ok()) spec.chat_template = *jinja;
  auto t = Create(std::move(spec));
  if (!t.ok()) return fail(dir, t.status());
  return t;
}

}  // namespace titand
