#include "core/model/feature_map.h"

#include "absl/strings/str_cat.h"

namespace titand {

absl::StatusOr<FeatureMap> ParseFeatureMap(std::string_view name) {
  if (name == "tptt") return FeatureMap::kTptt;
  if (name == "elu") return FeatureMap::kElu;
  if (name == "identity") return FeatureMap::kIdentity;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown feature map '", std::string(name),
                   "' (expected tptt, elu or identity)"));
}

std::string ToString(FeatureMap map) {
  switch (map) {
    case FeatureMap::kTptt: return "tptt";
    case FeatureMap::kElu: return "elu";
    case FeatureMap::kIdentity: return "identity";
  }
  return "unknown";
}

namespace {
// x / max(||x||_2, 1e-6) over the last dim.
at::Tensor L2Normalize(const at::Tensor& x) {
  return x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true).clamp_min(1e-6);
}
}  // namespace

at::Tensor ApplyFeatureMap(FeatureMap map, const at::Tensor& x) {
  // fp32 math (fp64 stays fp64), result in x's dtype.
  const at::Tensor xf = x.scalar_type() == at::kDouble ? x : x.to(at::kFloat);
  at::Tensor y;
  switch (map) {
    case FeatureMap::kTptt: y = L2Normalize(at::silu(xf)); break;
    case FeatureMap::kElu: y = at::elu(xf) + 1.0; break;
    case FeatureMap::kIdentity: y = L2Normalize(xf); break;
  }
  return y.to(x.scalar_type());
}

}  // namespace titand
