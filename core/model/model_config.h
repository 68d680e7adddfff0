// Decoder configuration for the Llama family (llama, mistral, qwen2, qwen3), read from GGUF metadata or
// a Hugging Face config.json, and validated before any weight is touched.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace titand {

class GgufFile;

struct ModelConfig {
  std::string arch;            // "llama", "mistral", "qwen2", "qwen3"
  std::string name;            // human-readable (general.name or model_type)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  bool tie_embeddings = false;
  bool qkv_bias = false;       // qwen2; llama's attention_bias
  bool o_bias = false;
  bool qk_norm = false;        // qwen3: RMSNorm over head_dim on q and k before RoPE
  std::optional<int64_t> sliding_window;  // mistral: every layer attends to the last W keys
  // GGUF files written by llama.cpp's converter for the llama arch permute q/k rows for interleaved RoPE;
  // the loader undoes it so that every model uses the rotate-half RoPE of Hugging Face.
  bool gguf_qk_permuted = false;

  absl::Status Validate() const;
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// From GGUF metadata ("<arch>.block_count", ...). vocab size falls back to the token list length.
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf);
// From a Hugging Face config.json (transformers 4.x and 5.x layouts, incl. rope_parameters).
absl::StatusOr<ModelConfig> ConfigFromHfJson(const std::string& path);
// Rejects architectures the runtime has no model for, naming the ones it has.
absl::Status CheckSupportedArch(const std::string& arch);

}  // namespace titand
