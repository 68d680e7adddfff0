#include "core/model/model_config.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/status.h"
#include "core/weights/gguf_file.h"
#include "nlohmann/json.hpp"

namespace titand {
namespace {

const char* const kArchs[] = {"llama", "mistral", "qwen2", "qwen3"};

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("model config: ", what));
}

}  // namespace

absl::Status CheckSupportedArch(const std::string& arch) {
  for (const char* a : kArchs) {
    if (arch == a) return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrCat("unsupported architecture '", arch,
                                               "' (supported: ", absl::StrJoin(kArchs, ", "), ")"));
}

absl::Status ModelConfig::Validate() const {
  RETURN_IF_ERROR(CheckSupportedArch(arch));
  auto positive = [](int64_t v) { return v > 0 && v < (int64_t{1} << 31); };
  if (!positive(vocab_size)) return Invalid(absl::StrCat("bad vocab_size ", vocab_size));
  if (!positive(hidden_size)) return Invalid(absl::StrCat("bad hidden_size ", hidden_size));
  if (!positive(intermediate_size)) return Invalid(absl::StrCat("bad intermediate_size ", intermediate_size));
  if (!positive(num_layers) || num_layers > 1024) return Invalid(absl::StrCat("bad num_layers ", num_layers));
  if (!positive(num_heads)) return Invalid(absl::StrCat("bad num_heads ", num_heads));
  if (!positive(num_kv_heads) || num_heads % num_kv_heads != 0) {
    return Invalid(absl::StrCat("num_heads ", num_heads, " is not a multiple of num_kv_heads ", num_kv_heads));
  }
  if (!positive(head_dim) || head_dim % 2 != 0) return Invalid(absl::StrCat("bad head_dim ", head_dim));
  if (!(rope_theta > 0)) return Invalid("rope_theta must be > 0");
  if (!(rms_eps > 0 && rms_eps < 1)) return Invalid("rms_norm_eps must be in (0, 1)");
  if (sliding_window && *sliding_window <= 0) return Invalid("sliding_window must be > 0");
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch, gguf.GetString("general.architecture"));
  RETURN_IF_ERROR(CheckSupportedArch(c.arch));
  auto name = gguf.GetString("general.name");
  c.name = name.ok() ? *name : c.arch;
  const std::string p = c.arch + ".";
  ASSIGN_OR_RETURN(c.num_layers, gguf.GetInt(p + "block_count"));
  ASSIGN_OR_RETURN(c.hidden_size, gguf.GetInt(p + "embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, gguf.GetInt(p + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_heads, gguf.GetInt(p + "attention.head_count"));
  auto kv = gguf.GetInt(p + "attention.head_count_kv");
  c.num_kv_heads = kv.ok() ? *kv : c.num_heads;
  auto key_len = gguf.GetInt(p + "attention.key_length");
  c.head_dim = key_len.ok() ? *key_len : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  auto ctx = gguf.GetInt(p + "context_length");
  c.max_position = ctx.ok() ? *ctx : 0;
  auto theta = gguf.GetFloat(p + "rope.freq_base");
  c.rope_theta = theta.ok() ? *theta : 10000.0;
  ASSIGN_OR_RETURN(c.rms_eps, gguf.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  auto vocab = gguf.GetInt(p + "vocab_size");
  if (vocab.ok()) {
    c.vocab_size = *vocab;
  } else {
    ASSIGN_OR_RETURN(auto tokens, gguf.GetStringArray("tokenizer.ggml.tokens"));
    c.vocab_size = static_cast<int64_t>(tokens.size());
  }
  auto scaling = gguf.GetString(p + "rope.scaling.type");
  if (scaling.ok() && *scaling != "none") {
    return absl::UnimplementedError(absl::StrCat("rope scaling '", *scaling, "' is not supported"));
  }
  auto window = gguf.GetInt(p + "attention.sliding_window");
  if (window.ok() && *window > 0) c.sliding_window = *window;
  c.tie_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.qkv_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  c.o_bias = gguf.FindTensor("blk.0.attn_output.bias") != nullptr;
  c.qk_norm = gguf.FindTensor("blk.0.attn_q_norm.weight") != nullptr;
  // llama.cpp permutes q/k rows only for architectures that it runs with interleaved ("normal") RoPE.
  c.gguf_qk_permuted = (c.arch == "llama" || c.arch == "mistral");
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<ModelConfig> ConfigFromHfJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Invalid(absl::StrCat(path, " is not a JSON object"));
  ModelConfig c;
  try {
    c.arch = j.value("model_type", std::string());
    RETURN_IF_ERROR(CheckSupportedArch(c.arch));
    c.name = j.value("_name_or_path", c.arch);
    if (c.name.empty()) c.name = c.arch;
    c.vocab_size = j.at("vocab_size").get<int64_t>();
    c.hidden_size = j.at("hidden_size").get<int64_t>();
    c.intermediate_size = j.at("intermediate_size").get<int64_t>();
    c.num_layers = j.at("num_hidden_layers").get<int64_t>();
    c.num_heads = j.at("num_attention_heads").get<int64_t>();
    c.num_kv_heads = j.value("num_key_value_heads", c.num_heads);
    if (j.contains("head_dim") && !j["head_dim"].is_null()) {
      c.head_dim = j["head_dim"].get<int64_t>();
    } else {
      c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
    }
    c.max_position = j.value("max_position_embeddings", int64_t{0});
    c.rms_eps = j.value("rms_norm_eps", 1e-6);
    // transformers 5 moved rope settings into rope_parameters; 4.x had rope_theta / rope_scaling.
    const nlohmann::json* rope = nullptr;
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) rope = &j["rope_parameters"];
    if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) rope = &j["rope_scaling"];
    c.rope_theta = j.value("rope_theta", 10000.0);
    if (rope) {
      if (rope->contains("rope_theta")) c.rope_theta = (*rope)["rope_theta"].get<double>();
      std::string type = rope->value("rope_type", rope->value("type", std::string("default")));
      if (type != "default") {
        return absl::UnimplementedError(absl::StrCat("rope scaling '", type, "' is not supported"));
      }
    }
    c.tie_embeddings = j.value("tie_word_embeddings", false);
    c.qkv_bias = c.arch == "qwen2" || j.value("attention_bias", false);
    c.o_bias = c.arch != "qwen2" && j.value("attention_bias", false);
    c.qk_norm = c.arch == "qwen3";
    if (c.arch == "mistral" && j.contains("sliding_window") && !j["sliding_window"].is_null()) {
      c.sliding_window = j["sliding_window"].get<int64_t>();
    }
    if ((c.arch == "qwen2" || c.arch == "qwen3") && j.value("use_sliding_window", false)) {
      return absl::UnimplementedError("qwen sliding-window layers (use_sliding_window) are not supported");
    }
  } catch (const nlohmann::json::exception& e) {
    return Invalid(absl::StrCat(path, ": ", e.what()));
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace titand
