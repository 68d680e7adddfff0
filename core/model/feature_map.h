// Feature maps phi applied to q and k before the linear-attention memory (REFERENCE.md section 1).
#pragma once

#include <string>
#include <string_view>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace titand {

// phi over the last dimension of x:
//   kTptt:     phi(x) = SiLU(x) / max(||SiLU(x)||_2, 1e-6)
//   kElu:      phi(x) = elu(x) + 1
//   kIdentity: phi(x) = x / max(||x||_2, 1e-6)
enum class FeatureMap { kTptt, kElu, kIdentity };

// Accepts "tptt", "elu", "identity".
absl::StatusOr<FeatureMap> ParseFeatureMap(std::string_view name);
std::string ToString(FeatureMap map);

// Any shape [..., d]; computed in fp32, returned in x's dtype.
at::Tensor ApplyFeatureMap(FeatureMap map, const at::Tensor& x);

}  // namespace titand
