// The titand TPTT adapter (docs/adapter-format.md): read, validate against a base model, merge its LoRA
// into the base weights at load, and convert the listed layers of a CausalLM into hybrid layers.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "core/model/causal_lm.h"
#include "core/model/feature_map.h"
#include "core/model/linear_attention.h"
#include "core/model/model_config.h"
#include "core/model/weight_source.h"

namespace titand {

struct TpttAdapter {
  std::string dir;
  std::string base_model;               // "<general.name>@<hex16>"
  LinearOperator op = LinearOperator::kGatedDelta;
  FeatureMap feature_map = FeatureMap::kTptt;
  std::optional<int64_t> window;        // nullopt = full causal range
  int64_t sinks = 0;                    // attention sinks N_s of the softmax branch (needs a window)
  bool learned_gates = true;
  double const_b = 1.0, const_a = 1.0;
  std::vector<int64_t> layers;          // converted layer indices
  std::map<int64_t, at::Tensor> mu;     // layer -> [H] in [0, 1]
  std::map<int64_t, std::map<std::string, at::Tensor>> gates;  // layer -> {w_b, c_b, w_a, c_a}
  // LoRA: "model.layers.{i}.self_attn.{q,k,v,o}_proj.weight" -> delta (alpha/r) B A, [out, in].
  std::map<std::string, at::Tensor> lora_delta;
  int64_t lora_r = 0;
  double lora_alpha = 0;
  std::string adapter_id;               // base_model + "/" + hex16 of SHA-256 over the adapter's files
};

// Reads and validates the folder against `config` (shapes, layer indices, heads). The base-model
// identity is checked by the caller (it needs the base file): compare base_model with it.
absl::StatusOr<TpttAdapter> ReadTpttAdapter(const std::string& dir, const ModelConfig& config);

// A weight source that adds the adapter's LoRA deltas to the base projections as they are taken.
std::unique_ptr<WeightSource> WithLora(std::unique_ptr<WeightSource> base, const TpttAdapter& adapter);

// Turns the adapter's layers into hybrid layers (window, operator, gates, mu). mu_override, when set,
// replaces every mu (0 = the softmax branch alone, for ablations and tests).
absl::Status ApplyTptt(CausalLM& model, const TpttAdapter& adapter, std::optional<double> mu_override);

}  // namespace titand
