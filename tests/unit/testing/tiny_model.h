// Small random-weight Llama-family models for unit tests (header-only; shared by the model, session and
// engine tests). Weights are N(0, scale^2), norms 1 + N(0, scale^2), HF tensor names.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "core/model/hybrid_layer.h"
#include "core/model/model_config.h"

namespace titand::testing {

inline ModelConfig TinyLlamaConfig(int64_t vocab_size, int64_t num_layers) {
  ModelConfig c;
  c.arch = "llama";
  c.name = "tiny";
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = num_layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  c.rms_eps = 1e-5;
  return c;
}

inline std::map<std::string, at::Tensor> RandomLlamaWeights(const ModelConfig& c, uint64_t seed, double scale) {
  at::manual_seed(seed);
  std::map<std::string, at::Tensor> w;
  auto r = [scale](std::vector<int64_t> s) { return at::randn(s) * scale; };
  w["model.embed_tokens.weight"] = r({c.vocab_size, c.hidden_size});
  w["model.norm.weight"] = 1 + r({c.hidden_size});
  w["lm_head.weight"] = r({c.vocab_size, c.hidden_size});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    w[p + "input_layernorm.weight"] = 1 + r({c.hidden_size});
    w[p + "post_attention_layernorm.weight"] = 1 + r({c.hidden_size});
    w[p + "self_attn.q_proj.weight"] = r({c.q_dim(), c.hidden_size});
    w[p + "self_attn.k_proj.weight"] = r({c.kv_dim(), c.hidden_size});
    w[p + "self_attn.v_proj.weight"] = r({c.kv_dim(), c.hidden_size});
    w[p + "self_attn.o_proj.weight"] = r({c.hidden_size, c.q_dim()});
    w[p + "mlp.gate_proj.weight"] = r({c.intermediate_size, c.hidden_size});
    w[p + "mlp.up_proj.weight"] = r({c.intermediate_size, c.hidden_size});
    w[p + "mlp.down_proj.weight"] = r({c.hidden_size, c.intermediate_size});
  }
  return w;
}

// A TPTT layer for config c: gated-delta memory, tptt feature map, constant gates b and a, every mu = `mu`.
inline std::unique_ptr<HybridLayer> TinyGatedDeltaLayer(const ModelConfig& c, double mu, double const_b = 0.5,
                                                        double const_a = 0.9, int64_t chunk_size = 64) {
  HybridParams p;
  p.op = LinearOperator::kGatedDelta;
  p.num_heads = c.num_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.const_b = const_b;
  p.const_a = const_a;
  p.mu = at::full({c.num_heads}, mu);
  p.chunk_size = chunk_size;
  return std::make_unique<HybridLayer>(p);
}

}  // namespace titand::testing
