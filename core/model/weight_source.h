// Where a model's tensors come from. Names are Hugging Face's ("model.layers.3.self_attn.q_proj.weight");
// each source maps them to its own file layout. Every tensor a source holds must be taken exactly once:
// `Unused()` lists what the model never asked for (a sign of a wrong architecture or a broken file).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "core/model/model_config.h"
#include "core/weights/ggml_types.h"

namespace titand {

// A tensor's stored blocks, unconverted (see core/weights/ggml_types.h for the block layouts).
struct RawTensor {
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> shape;  // Hugging Face order: [out, in] for linear weights; rows are whole blocks
  std::vector<uint8_t> bytes;  // the blocks, rows in Hugging Face order (q/k rows un-permuted like Take)
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The tensor as float32 in Hugging Face layout ([out, in] for linear weights); NOT_FOUND if absent.
  virtual absl::StatusOr<at::Tensor> Take(const std::string& hf_name) = 0;
  virtual bool Has(const std::string& hf_name) const = 0;
  // The ggml type a tensor is stored as, where the source keeps quantised blocks (GGUF); nullopt for
  // float-only sources and absent tensors. Used to pick a run-time weight format (`--weights auto`).
  virtual std::optional<GgmlType> StoredType(const std::string& hf_name) const { return std::nullopt; }
  // The stored blocks of a tensor with at most 2 dims, unconverted (GGUF only: UNIMPLEMENTED elsewhere,
  // NOT_FOUND if absent). Counts as taking it. Lets a quantised tensor be repacked without a float round trip.
  virtual absl::StatusOr<RawTensor> TakeRaw(const std::string& hf_name) {
    return absl::UnimplementedError("raw tensor access needs a GGUF source");
  }
  // Source tensors never taken, by their names in the file.
  virtual std::vector<std::string> Unused() const = 0;
  virtual std::string Describe() const = 0;
};

// A GGUF file written by llama.cpp's converter (q/k rows un-permuted when the config says so).
absl::StatusOr<std::unique_ptr<WeightSource>> OpenGgufWeights(const std::string& path, const ModelConfig& config);
// A Hugging Face folder: model.safetensors or the shards of model.safetensors.index.json.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsWeights(const std::string& dir);
// In-memory tensors (tests, adapters).
std::unique_ptr<WeightSource> MakeMapWeights(std::map<std::string, at::Tensor> tensors);

}  // namespace titand
