#include "core/model/tptt_adapter.h"

#include <fstream>
#include <regex>
#include <sstream>
#include <sys/stat.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/sha256.h"
#include "core/common/status.h"
#include "core/weights/safetensors_file.h"
#include "nlohmann/json.hpp"

namespace titand {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

bool FileExists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

absl::StatusOr<std::string> ReadFile(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", p));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadTensors(const std::string& path) {
  ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
  std::map<std::string, at::Tensor> out;
  for (const auto& t : f->tensors()) {
    std::vector<float> data;
    RETURN_IF_ERROR(f->ReadAsFloat(t, &data));
    out[t.name] = at::from_blob(data.data(), t.shape, at::kFloat).clone();
  }
  return out;
}

// A layer index from a tensor name (digits only, by the regex): out of int64 range -> INVALID_ARGUMENT.
absl::StatusOr<int64_t> LayerIndex(const std::string& digits, const std::string& where, const std::string& name) {
  int64_t i = 0;
  if (!absl::SimpleAtoi(digits, &i)) return Bad(where, absl::StrCat("tensor '", name, "': layer index out of range"));
  return i;
}

// Optional typed entries of adapter_config.json: absent -> `fallback`, wrong JSON type -> INVALID_ARGUMENT.
absl::Status OptString(const json& o, const char* key, const std::string& where, std::string* out) {
  if (!o.contains(key)) return absl::OkStatus();
  if (!o[key].is_string()) return Bad(where, absl::StrCat(key, " must be a string"));
  *out = o[key].get<std::string>();
  return absl::OkStatus();
}
absl::Status OptBool(const json& o, const char* key, const std::string& where, bool* out) {
  if (!o.contains(key)) return absl::OkStatus();
  if (!o[key].is_boolean()) return Bad(where, absl::StrCat(key, " must be true or false"));
  *out = o[key].get<bool>();
  return absl::OkStatus();
}
absl::Status OptInt(const json& o, const char* key, const std::string& where, int64_t* out) {
  if (!o.contains(key)) return absl::OkStatus();
  if (!o[key].is_number_integer()) return Bad(where, absl::StrCat(key, " must be an integer"));
  *out = o[key].get<int64_t>();
  return absl::OkStatus();
}
absl::Status OptNumber(const json& o, const char* key, const std::string& where, double* out) {
  if (!o.contains(key)) return absl::OkStatus();
  if (!o[key].is_number()) return Bad(where, absl::StrCat(key, " must be a number"));
  *out = o[key].get<double>();
  return absl::OkStatus();
}

// Projection shapes [out, in] by name.
std::vector<int64_t> ProjShape(const ModelConfig& c, const std::string& proj) {
  if (proj == "q_proj") return {c.q_dim(), c.hidden_size};
  if (proj == "o_proj") return {c.hidden_size, c.q_dim()};
  return {c.kv_dim(), c.hidden_size};
}

absl::Status CheckShape(const std::string& where, const std::string& name, const at::Tensor& t,
                        std::vector<int64_t> want) {
  if (t.sizes() == at::IntArrayRef(want)) return absl::OkStatus();
  return Bad(where, absl::StrCat("tensor ", name, " has shape [", absl::StrJoin(t.sizes(), ","), "], expected [",
                                 absl::StrJoin(want, ","), "]"));
}

absl::StatusOr<at::Tensor> MuEntry(const json& v, int64_t heads, const std::string& where) {
  std::vector<double> vals;
  if (v.is_number()) {
    vals.assign(heads, v.get<double>());
  } else if (v.is_array() && static_cast<int64_t>(v.size()) == heads) {
    for (const auto& x : v) {
      if (!x.is_number()) return Bad(where, "mu entries must be numbers");
      vals.push_back(x.get<double>());
    }
  } else {
    return Bad(where, absl::StrCat("mu of a layer must be a number or ", heads, " numbers"));
  }
  for (double m : vals) {
    if (!(m >= 0 && m <= 1)) return Bad(where, absl::StrCat("mu ", m, " outside [0, 1]"));
  }
  return at::tensor(vals, at::kFloat);
}

// LoRA from the adapter's own tensors (layers.{i}.{p}.lora_A/B) or a PEFT folder.
absl::Status CollectLora(const std::map<std::string, at::Tensor>& a_or_b, const ModelConfig& c,
                         const std::set<std::string>& targets, int64_t r, double alpha, const std::string& where,
                         TpttAdapter* out) {
  static const std::regex kName(R"(^(\d+)\.(q_proj|k_proj|v_proj|o_proj)\.(lora_A|lora_B)$)");
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> pairs;  // "i.proj" -> (A, B)
  for (const auto& [key, t] : a_or_b) {
    std::smatch m;
    if (!std::regex_match(key, m, kName)) return Bad(where, absl::StrCat("unknown LoRA tensor ", key));
    ASSIGN_OR_RETURN(const int64_t layer, LayerIndex(m[1], where, key));
    if (layer < 0 || layer >= c.num_layers) return Bad(where, absl::StrCat("LoRA for layer ", layer, " out of range"));
    if (!targets.count(m[2])) return Bad(where, absl::StrCat("LoRA tensor for ", m[2].str(), " not in lora.targets"));
    auto& p = pairs[absl::StrCat(m[1].str(), ".", m[2].str())];
    (m[3] == "lora_A" ? p.first : p.second) = t;
  }
  for (const auto& [key, p] : pairs) {
    const std::string proj = key.substr(key.find('.') + 1);
    const std::string layer = key.substr(0, key.find('.'));
    if (!p.first.defined() || !p.second.defined()) {
      return Bad(where, absl::StrCat("layer ", layer, " ", proj, ": lora_A and lora_B must come in pairs"));
    }
    auto shape = ProjShape(c, proj);
    RETURN_IF_ERROR(CheckShape(where, absl::StrCat("layers.", key, ".lora_A"), p.first, {r, shape[1]}));
    RETURN_IF_ERROR(CheckShape(where, absl::StrCat("layers.", key, ".lora_B"), p.second, {shape[0], r}));
    out->lora_delta[absl::StrCat("model.layers.", layer, ".self_attn.", proj, ".weight")] =
        at::matmul(p.second, p.first) * (alpha / static_cast<double>(r));
  }
  return absl::OkStatus();
}

}  // namespace

static absl::StatusOr<TpttAdapter> ReadTpttAdapterUnguarded(const std::string& dir, const ModelConfig& c) {
  TpttAdapter a;
  a.dir = dir;
  const std::string cpath = dir + "/tptt_config.json";
  ASSIGN_OR_RETURN(std::string ctext, ReadFile(cpath));
  json j = json::parse(ctext, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(cpath, "not a JSON object");
  static const std::set<std::string> kKeys = {"format", "version", "base_model", "operator", "feature_map", "window",
                                              "sinks", "gates", "constants", "layers", "mu", "lora", "training"};
  for (const auto& [k, v] : j.items()) {
    if (!kKeys.count(k)) return Bad(cpath, absl::StrCat("unknown key '", k, "'"));
  }
  for (const char* k : {"format", "version", "base_model", "operator", "feature_map", "window", "gates", "layers",
                        "mu", "lora"}) {
    if (!j.contains(k)) return Bad(cpath, absl::StrCat("missing key '", k, "'"));
  }
  if (j["format"] != "titand-tptt") return Bad(cpath, "format must be \"titand-tptt\"");
  if (!j["version"].is_number_integer() || j["version"].get<int>() != 1) {
    return Bad(cpath, absl::StrCat("unsupported version ", j["version"].dump(), " (this reader knows 1)"));
  }
  if (!j["base_model"].is_string()) return Bad(cpath, "base_model must be a string");
  a.base_model = j["base_model"].get<std::string>();
  if (!j["operator"].is_string() || !j["feature_map"].is_string() || !j["gates"].is_string()) {
    return Bad(cpath, "operator, feature_map and gates must be strings");
  }
  auto op = ParseLinearOperator(j["operator"].get<std::string>());
  if (!op.ok()) return Bad(cpath, absl::StrCat("unknown operator '", j["operator"].get<std::string>(), "'"));
  a.op = *op;
  auto fm = ParseFeatureMap(j["feature_map"].get<std::string>());
  if (!fm.ok()) return Bad(cpath, absl::StrCat("unknown feature_map '", j["feature_map"].get<std::string>(), "'"));
  a.feature_map = *fm;
  if (!j["window"].is_null()) {
    if (!j["window"].is_number_integer() || j["window"].get<int64_t>() < 1) {
      return Bad(cpath, "window must be null or an integer >= 1");
    }
    a.window = j["window"].get<int64_t>();
  }
  if (j.contains("sinks")) {  // optional, default 0 (adapters written before sinks existed)
    const json& s = j["sinks"];
    if (!s.is_number_integer() || s.get<int64_t>() < 0) return Bad(cpath, "sinks must be an integer >= 0");
    a.sinks = s.get<int64_t>();
    if (a.sinks > 0 && !a.window) return Bad(cpath, "sinks > 0 needs a window (window is null)");
  }
  const std::string gates = j["gates"].get<std::string>();
  if (gates != "learned" && gates != "constant") return Bad(cpath, absl::StrCat("unknown gates '", gates, "'"));
  a.learned_gates = gates == "learned";
  if (!a.learned_gates) {
    const json& k = j.value("constants", json());
    if (!k.is_object() || !k.contains("b") || !k.contains("a") || !k["b"].is_number() || !k["a"].is_number()) {
      return Bad(cpath, "gates \"constant\" needs constants {\"b\": x, \"a\": y}");
    }
    a.const_b = k["b"].get<double>();
    a.const_a = k["a"].get<double>();
    if (!(a.const_b >= 0 && a.const_b <= 1 && a.const_a >= 0 && a.const_a <= 1)) {
      return Bad(cpath, "constants must lie in [0, 1]");
    }
  }
  if (!j["layers"].is_array()) return Bad(cpath, "layers must be a list of layer indices");
  std::set<int64_t> seen;
  for (const auto& l : j["layers"]) {
    if (!l.is_number_integer()) return Bad(cpath, "layers must be integers");
    const int64_t i = l.get<int64_t>();
    if (i < 0 || i >= c.num_layers) return Bad(cpath, absl::StrCat("layer ", i, " outside [0, ", c.num_layers, ")"));
    if (!seen.insert(i).second) return Bad(cpath, absl::StrCat("layer ", i, " listed twice"));
    a.layers.push_back(i);
  }
  const json& mu = j["mu"];
  for (size_t n = 0; n < a.layers.size(); ++n) {
    const json* entry = nullptr;
    if (mu.is_number()) {
      entry = &mu;
    } else if (mu.is_array() && mu.size() == a.layers.size()) {
      entry = &mu[n];
    } else {
      return Bad(cpath, absl::StrCat("mu must be a number or one entry per converted layer (", a.layers.size(), ")"));
    }
    ASSIGN_OR_RETURN(a.mu[a.layers[n]], MuEntry(*entry, c.num_heads, cpath));
  }

  // Tensors: gates, mu overrides, LoRA.
  const std::string tpath = dir + "/adapter.safetensors";
  std::map<std::string, at::Tensor> tensors;
  std::string tbytes;
  if (FileExists(tpath)) {
    ASSIGN_OR_RETURN(tensors, ReadTensors(tpath));
    ASSIGN_OR_RETURN(tbytes, ReadFile(tpath));
  }
  static const std::regex kName(R"(^layers\.(\d+)\.(gate\.(w_b|c_b|w_a|c_a)|mu|((q_proj|k_proj|v_proj|o_proj)\.(lora_A|lora_B)))$)");
  std::map<std::string, at::Tensor> lora_tensors;  // "i.proj.lora_A|B" -> tensor
  for (const auto& [name, t] : tensors) {
    std::smatch m;
    if (!std::regex_match(name, m, kName)) return Bad(tpath, absl::StrCat("unknown tensor '", name, "'"));
    ASSIGN_OR_RETURN(const int64_t i, LayerIndex(m[1], tpath, name));
    if (m[4].matched) continue;  // LoRA, collected below
    if (!seen.count(i)) return Bad(tpath, absl::StrCat("tensor '", name, "' for layer ", i, ", which is not converted"));
    if (m[2] == "mu") {
      RETURN_IF_ERROR(CheckShape(tpath, name, t, {c.num_heads}));
      if (t.min().item<float>() < 0 || t.max().item<float>() > 1) return Bad(tpath, absl::StrCat(name, ": mu outside [0, 1]"));
      a.mu[i] = t;
      continue;
    }
    const std::string g = m[3];
    const bool uses = (g == "w_b" || g == "c_b") ? UsesBeta(a.op) : UsesAlpha(a.op);
    if (!a.learned_gates || !uses) {
      return Bad(tpath, absl::StrCat("tensor '", name, "' is not used by operator ", ToString(a.op), " with gates ", gates));
    }
    RETURN_IF_ERROR(CheckShape(tpath, name, t, g[0] == 'w' ? std::vector<int64_t>{c.num_heads, c.hidden_size}
                                                         : std::vector<int64_t>{c.num_heads}));
    a.gates[i][g] = t;
  }
  if (a.learned_gates) {
    for (int64_t i : a.layers) {
      for (const char* g : {"w_b", "c_b", "w_a", "c_a"}) {
        const bool uses = (g[2] == 'b') ? UsesBeta(a.op) : UsesAlpha(a.op);
        if (uses && !a.gates[i].count(g)) {
          return Bad(tpath, absl::StrCat("missing gate tensor layers.", i, ".gate.", g));
        }
      }
    }
  }

  // LoRA: own tensors per tptt_config's lora, or a PEFT folder.
  const bool peft = FileExists(dir + "/adapter_config.json");
  const json& lora = j["lora"];
  if (!lora.is_null() && !lora.is_object()) return Bad(cpath, "lora must be null or {r, alpha, targets}");
  for (const auto& [name, t] : tensors) {
    if (peft && name.find("lora_") != std::string::npos) {
      return Bad(dir, "LoRA given twice (adapter.safetensors and a PEFT folder)");
    }
  }
  int64_t r = 0;
  double alpha = 0;
  std::set<std::string> targets;
  if (lora.is_object()) {
    if (!lora.contains("r") || !lora["r"].is_number_integer() || lora["r"].get<int64_t>() < 1 ||
        !lora.contains("alpha") || !lora["alpha"].is_number() || !lora.contains("targets") ||
        !lora["targets"].is_array()) {
      return Bad(cpath, "lora must be {\"r\": int >= 1, \"alpha\": number, \"targets\": [...]}");
    }
    r = lora["r"].get<int64_t>();
    alpha = lora["alpha"].get<double>();
    for (const auto& t : lora["targets"]) {
      const std::string s = t.is_string() ? t.get<std::string>() : "";
      if (s != "q_proj" && s != "k_proj" && s != "v_proj" && s != "o_proj") {
        return Bad(cpath, absl::StrCat("unknown lora target ", t.dump()));
      }
      targets.insert(s);
    }
  }
  std::string pbytes;
  if (peft) {
    const std::string pc = dir + "/adapter_config.json";
    ASSIGN_OR_RETURN(std::string ptext, ReadFile(pc));
    json p = json::parse(ptext, nullptr, false);
    if (p.is_discarded() || !p.is_object()) return Bad(pc, "not a JSON object");
    std::string peft_type;
    RETURN_IF_ERROR(OptString(p, "peft_type", pc, &peft_type));
    if (peft_type != "LORA") return Bad(pc, "peft_type must be \"LORA\"");
    bool rslora = false, dora = false, fan_in_fan_out = false;
    RETURN_IF_ERROR(OptBool(p, "use_rslora", pc, &rslora));
    RETURN_IF_ERROR(OptBool(p, "use_dora", pc, &dora));
    RETURN_IF_ERROR(OptBool(p, "fan_in_fan_out", pc, &fan_in_fan_out));
    if (rslora || dora || fan_in_fan_out) return Bad(pc, "rsLoRA, DoRA and fan_in_fan_out are not supported");
    int64_t pr = 0;
    RETURN_IF_ERROR(OptInt(p, "r", pc, &pr));
    if (pr < 1) return Bad(pc, "r must be an integer >= 1");
    double palpha = static_cast<double>(pr);  // PEFT's default: alpha = r
    RETURN_IF_ERROR(OptNumber(p, "lora_alpha", pc, &palpha));
    if (lora.is_object() && (pr != r || palpha != alpha)) return Bad(pc, "r/lora_alpha disagree with tptt_config.json lora");
    r = pr;
    alpha = palpha;
    if (!lora.is_object()) targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
    const std::string pt = dir + "/adapter_model.safetensors";
    ASSIGN_OR_RETURN(auto ptensors, ReadTensors(pt));
    ASSIGN_OR_RETURN(pbytes, ReadFile(pt));
    static const std::regex kPeft(R"(layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.(lora_A|lora_B)(\.default)?\.weight$)");
    for (const auto& [name, t] : ptensors) {
      std::smatch m;
      if (!std::regex_search(name, m, kPeft)) return Bad(pt, absl::StrCat("unsupported PEFT tensor '", name, "'"));
      lora_tensors[absl::StrCat(m[1].str(), ".", m[2].str(), ".", m[3].str())] = t;
    }
  } else {
    for (const auto& [name, t] : tensors) {
      std::smatch m;
      if (std::regex_match(name, m, kName) && m[4].matched) {
        lora_tensors[absl::StrCat(m[1].str(), ".", m[5].str(), ".", m[6].str())] = t;
      }
    }
  }
  if (lora.is_null() && !peft && !lora_tensors.empty()) return Bad(tpath, "LoRA tensors present but lora is null");
  if ((lora.is_object() || peft) && lora_tensors.empty()) return Bad(dir, "lora is set but there are no LoRA tensors");
  if (!lora_tensors.empty()) {
    RETURN_IF_ERROR(CollectLora(lora_tensors, c, targets, r, alpha, peft ? dir : tpath, &a));
    a.lora_r = r;
    a.lora_alpha = alpha;
  }
  Sha256 h;
  h.Update(ctext.data(), ctext.size());
  h.Update(tbytes.data(), tbytes.size());
  h.Update(pbytes.data(), pbytes.size());
  a.adapter_id = absl::StrCat(a.base_model, "/", DigestHex(h.Final()).substr(0, 16));
  return a;
}

// Backstop: no exception leaves the reader (a bug in a check above becomes a clear error, not an abort).
absl::StatusOr<TpttAdapter> ReadTpttAdapter(const std::string& dir, const ModelConfig& c) {
  try {
    return ReadTpttAdapterUnguarded(dir, c);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(dir, ": adapter too large for memory"));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": bad adapter: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": bad adapter: ", e.what()));
  }
}

namespace {

class LoraWeights : public WeightSource {
 public:
  LoraWeights(std::unique_ptr<WeightSource> base, std::map<std::string, at::Tensor> delta)
      : base_(std::move(base)), delta_(std::move(delta)) {}
  bool Has(const std::string& n) const override { return base_->Has(n); }
  std::optional<GgmlType> StoredType(const std::string& n) const override { return base_->StoredType(n); }
  // Blocks pass through only for tensors without a LoRA delta (the others need the float merge of Take).
  absl::StatusOr<RawTensor> TakeRaw(const std::string& n) override {
    if (delta_.count(n)) return absl::UnimplementedError(absl::StrCat(n, " has a LoRA delta: no raw access"));
    return base_->TakeRaw(n);
  }
  absl::StatusOr<at::Tensor> Take(const std::string& n) override {
    ASSIGN_OR_RETURN(at::Tensor w, base_->Take(n));
    auto it = delta_.find(n);
    if (it == delta_.end()) return w;
    if (w.sizes() != it->second.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat("LoRA for ", n, " does not match the base weight's shape"));
    }
    return w + it->second;
  }
  std::vector<std::string> Unused() const override { return base_->Unused(); }
  std::string Describe() const override { return base_->Describe(); }

 private:
  std::unique_ptr<WeightSource> base_;
  std::map<std::string, at::Tensor> delta_;
};

}  // namespace

std::unique_ptr<WeightSource> WithLora(std::unique_ptr<WeightSource> base, const TpttAdapter& adapter) {
  if (adapter.lora_delta.empty()) return base;
  return std::make_unique<LoraWeights>(std::move(base), adapter.lora_delta);
}

absl::Status ApplyTptt(CausalLM& model, const TpttAdapter& a, std::optional<double> mu_override) {
  const ModelConfig& c = model.config();
  if (mu_override && !(*mu_override >= 0 && *mu_override <= 1)) {
    return absl::InvalidArgumentError("mu override must lie in [0, 1]");
  }
  for (int64_t i : a.layers) {
    HybridParams p;
    p.op = a.op;
    p.feature_map = a.feature_map;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.const_b = a.const_b;
    p.const_a = a.const_a;
    auto g = a.gates.find(i);
    if (g != a.gates.end()) {
      auto get = [&](const char* k) { auto it = g->second.find(k); return it == g->second.end() ? at::Tensor() : it->second; };
      p.w_b = get("w_b");
      p.c_b = get("c_b");
      p.w_a = get("w_a");
      p.c_a = get("c_a");
    }
    p.mu = mu_override ? at::full({c.num_heads}, *mu_override, at::kFloat) : a.mu.at(i);
    model.SetHybrid(i, std::make_unique<HybridLayer>(std::move(p)), a.window, a.sinks);
  }
  return absl::OkStatus();
}

}  // namespace titand
