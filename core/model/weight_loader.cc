#include "core/model/weight_loader.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/status.h"
#include "core/weights/dequant.h"

namespace titand {
namespace {

int Width(WeightFormat f) {  // widest wins when fusing parts
  return f == WeightFormat::kInt4 ? 0 : f == WeightFormat::kInt8 ? 1 : 2;
}

at::ScalarType DenseDtype(WeightFormat f) {
  return f == WeightFormat::kBF16 ? at::kBFloat16 : f == WeightFormat::kF16 ? at::kHalf : at::kFloat;
}

WeightFormat DenseFormat(at::ScalarType dt) {
  return dt == at::kBFloat16 ? WeightFormat::kBF16 : dt == at::kHalf ? WeightFormat::kF16 : WeightFormat::kF32;
}

bool IsQuantized(WeightFormat f) { return f == WeightFormat::kInt8 || f == WeightFormat::kInt4; }

absl::Status ShapeError(const WeightSource& w, const std::string& name, at::IntArrayRef got,
                        const std::vector<int64_t>& want) {
  return absl::InvalidArgumentError(absl::StrCat(w.Describe(), ": tensor ", name, " has shape [",
                                                 absl::StrJoin(got, ","), "], expected [", absl::StrJoin(want, ","),
                                                 "]"));
}

// Int4 groups of one part: straight from Q4_0/Q4_1 blocks when the source has them, else min/max from floats.
absl::StatusOr<Int4Groups> TakeInt4(WeightSource& w, const TensorSpec& spec) {
  std::optional<GgmlType> st = w.StoredType(spec.name);
  if (st == GgmlType::kQ4_0 || st == GgmlType::kQ4_1) {
    absl::StatusOr<RawTensor> raw = w.TakeRaw(spec.name);
    if (raw.ok()) {
      if (raw->shape != spec.shape) return ShapeError(w, spec.name, raw->shape, spec.shape);
      const int64_t rows = spec.shape[0], in = spec.shape[1], n = rows * in;
      at::Tensor q = at::empty({rows, in}, at::kByte);
      at::Tensor d = at::empty({rows, in / 32}, at::kFloat), m = at::empty({rows, in / 32}, at::kFloat);
      RETURN_IF_ERROR(SplitQ4Blocks(raw->type, raw->bytes.data(), raw->bytes.size(), n, q.data_ptr<uint8_t>(),
                                    d.data_ptr<float>(), m.data_ptr<float>()));
      return Int4Groups{q, d, m + 8.0 * d};  // d*q + m = d*(q - 8) + (m + 8d)
    }
    if (raw.status().code() != absl::StatusCode::kUnimplemented) return raw.status();
  }
  ASSIGN_OR_RETURN(at::Tensor t, TakeChecked(w, spec));
  return QuantizeInt4(t);
}

absl::StatusOr<at::Tensor> TakeCat(WeightSource& w, const std::vector<TensorSpec>& specs) {
  std::vector<at::Tensor> ts;
  for (const TensorSpec& s : specs) {
    ASSIGN_OR_RETURN(at::Tensor t, TakeChecked(w, s));
    ts.push_back(t);
  }
  return ts.size() == 1 ? ts[0] : at::cat(ts, 0).contiguous();
}

}  // namespace

WeightFormat ResolveWeightFormat(const WeightPlan& plan, std::optional<GgmlType> stored) {
  if (plan.requested == WeightFormat::kDtype) return DenseFormat(plan.dtype);
  if (plan.requested != WeightFormat::kAuto) return plan.requested;
  if (!plan.device.is_cpu() || !stored) return DenseFormat(plan.dtype);
  switch (*stored) {
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ4_K:
      return WeightFormat::kInt4;
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
    case GgmlType::kQ8_0:
    case GgmlType::kIQ4_NL:
      return WeightFormat::kInt8;
    default:
      return DenseFormat(plan.dtype);
  }
}

absl::StatusOr<at::Tensor> TakeChecked(WeightSource& w, const TensorSpec& spec) {
  ASSIGN_OR_RETURN(at::Tensor t, w.Take(spec.name));
  if (t.sizes() != at::IntArrayRef(spec.shape)) return ShapeError(w, spec.name, t.sizes(), spec.shape);
  return t;
}

absl::StatusOr<LinearWeight> LoadLinear(WeightSource& w, const WeightPlan& plan, const std::vector<TensorSpec>& parts,
                                        const std::vector<TensorSpec>& biases) {
  WeightFormat f = WeightFormat::kInt4;
  for (const TensorSpec& p : parts) {
    WeightFormat pf = ResolveWeightFormat(plan, w.StoredType(p.name));
    if (Width(pf) >= Width(f)) f = pf;
  }
  at::Tensor bias;
  if (!biases.empty()) {
    ASSIGN_OR_RETURN(bias, TakeCat(w, biases));
  }
  if (f == WeightFormat::kInt4) {
    const int64_t in = parts[0].shape[1];
    if (in % kInt4GroupSize != 0) {
      return absl::InvalidArgumentError(absl::StrCat(w.Describe(), ": ", parts[0].name, " has ", in,
                                                     " input features, int4 needs a multiple of ", kInt4GroupSize,
                                                     "; use --weights int8"));
    }
    std::vector<at::Tensor> q, scale, zero;
    for (const TensorSpec& p : parts) {
      ASSIGN_OR_RETURN(Int4Groups g, TakeInt4(w, p));
      q.push_back(g.q);
      scale.push_back(g.scale);
      zero.push_back(g.zero);
    }
    return LinearWeight::MakeInt4({at::cat(q, 0), at::cat(scale, 0), at::cat(zero, 0)}, bias, plan.device);
  }
  ASSIGN_OR_RETURN(at::Tensor t, TakeCat(w, parts));
  if (f == WeightFormat::kInt8) return LinearWeight::MakeInt8(t, bias, plan.device);
  return LinearWeight::MakeDense(t, DenseDtype(f), bias, plan.device);
}

absl::StatusOr<EmbeddingTable> LoadEmbedding(WeightSource& w, const WeightPlan& plan, const TensorSpec& spec,
                                             LinearWeight* tied_head) {
  const std::optional<GgmlType> stored = w.StoredType(spec.name);
  const WeightFormat f = ResolveWeightFormat(plan, stored);
  if (!IsQuantized(f)) {
    ASSIGN_OR_RETURN(at::Tensor t, TakeChecked(w, spec));
    at::Tensor table = t.to(at::TensorOptions().dtype(DenseDtype(f)).device(plan.device)).contiguous();
    if (tied_head != nullptr) *tied_head = LinearWeight::MakeDense(table, DenseDtype(f), at::Tensor(), plan.device);
    return EmbeddingTable::Dense(table);
  }
  EmbeddingTable table;
  bool have_table = false;
  if (stored == GgmlType::kQ8_0) {  // exact: Q8_0's own int8 values and per-32 scales
    absl::StatusOr<RawTensor> raw = w.TakeRaw(spec.name);
    if (raw.ok()) {
      if (raw->shape != spec.shape) return ShapeError(w, spec.name, raw->shape, spec.shape);
      const int64_t rows = spec.shape[0], cols = spec.shape[1];
      at::Tensor q = at::empty({rows, cols}, at::kChar), d = at::empty({rows, cols / 32}, at::kFloat);
      RETURN_IF_ERROR(SplitQ8_0Blocks(raw->bytes.data(), raw->bytes.size(), rows * cols, q.data_ptr<int8_t>(),
                                      d.data_ptr<float>()));
      table = EmbeddingTable::Int8(q, d);
      have_table = true;
    } else if (raw.status().code() != absl::StatusCode::kUnimplemented) {
      return raw.status();
    }
  }
  if (!have_table || tied_head != nullptr) {
    ASSIGN_OR_RETURN(at::Tensor t, TakeChecked(w, spec));
    if (!have_table) table = EmbeddingTable::QuantizeInt8(t);
    if (tied_head != nullptr) {
      LinearWeight head;
      if (f == WeightFormat::kInt4 && t.size(1) % kInt4GroupSize == 0) {
        ASSIGN_OR_RETURN(head, LinearWeight::MakeInt4(QuantizeInt4(t), at::Tensor(), plan.device));
      } else {
        ASSIGN_OR_RETURN(head, LinearWeight::MakeInt8(t, at::Tensor(), plan.device));
      }
      *tied_head = std::move(head);
    }
  }
  table.To(plan.device);
  return table;
}

}  // namespace titand
