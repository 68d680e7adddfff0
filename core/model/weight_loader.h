// Turns a WeightSource's tensors into run-time weights in the format `--weights` asks for
// (core/model/linear_weight.h). `dtype` (the default) stores every weight dense in the model dtype. `auto` keeps each tensor's own precision class on CPU:
//   Q4_0, Q4_1, Q4_K          -> int4 (Q4_0/Q4_1 repacked losslessly but for bf16 scale/zero rounding:
//                                scale = d, zero = m + 8d; Q4_K requantised from its float values)
//   Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, IQ4_NL -> int8 (per-row, requantised from the float values)
//   F32, F16, BF16, float-only sources  -> dense in the model dtype
// and is dense in the model dtype on CUDA. A fused weight (q|k|v, gate|up) takes the widest class of its
// parts (dense > int8 > int4). f32 / bf16 store dense weights in that dtype whatever the activations are.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "core/model/embedding_table.h"
#include "core/model/linear_weight.h"
#include "core/model/weight_source.h"

namespace titand {

struct WeightPlan {
  WeightFormat requested = WeightFormat::kDtype;
  at::ScalarType dtype = at::kFloat;  // the model (activation) dtype
  at::Device device = at::kCPU;
};

// The concrete format for one tensor stored as `stored` (nullopt = float).
WeightFormat ResolveWeightFormat(const WeightPlan& plan, std::optional<GgmlType> stored);

struct TensorSpec {
  std::string name;            // Hugging Face name
  std::vector<int64_t> shape;  // expected shape; a mismatch is INVALID_ARGUMENT naming the tensor
};

// Float32 tensor `spec.name`, shape-checked.
absl::StatusOr<at::Tensor> TakeChecked(WeightSource& w, const TensorSpec& spec);

// The row-concatenation of `parts` (each [rows_i, in]) as one linear weight, with the concatenated `biases`
// (empty = no bias; else one per part). Errors: NOT_FOUND / INVALID_ARGUMENT from the source and the shapes,
// INVALID_ARGUMENT when the format does not fit (int4 with in % 32 != 0, int8/int4 on CUDA).
absl::StatusOr<LinearWeight> LoadLinear(WeightSource& w, const WeightPlan& plan, const std::vector<TensorSpec>& parts,
                                        const std::vector<TensorSpec>& biases = {});

// The embedding table: int8 when its resolved format is int8/int4 (exact from Q8_0 blocks), else dense in
// the model dtype. With `tied_head`, also the LM head from the same tensor (sharing storage when both are
// dense in the same dtype).
absl::StatusOr<EmbeddingTable> LoadEmbedding(WeightSource& w, const WeightPlan& plan, const TensorSpec& spec,
                                             LinearWeight* tied_head);

}  // namespace titand
