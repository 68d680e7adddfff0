#include "core/model/embedding_table.h"

namespace titand {

EmbeddingTable EmbeddingTable::Dense(const at::Tensor& table) {
  EmbeddingTable e;
  e.table_ = table;
  return e;
}

EmbeddingTable EmbeddingTable::Int8(const at::Tensor& q, const at::Tensor& scale) {
  EmbeddingTable e;
  e.table_ = q.contiguous();
  e.scale_ = scale.to(at::kFloat).contiguous();
  return e;
}

EmbeddingTable EmbeddingTable::QuantizeInt8(const at::Tensor& table) {
  at::Tensor t = table.to(at::kFloat);
  at::Tensor scale = t.abs().amax(1, /*keepdim=*/true) / 127.0;
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  return Int8(at::clamp(at::round(t / scale), -127, 127).to(at::kChar), scale);
}

at::Tensor EmbeddingTable::Lookup(const at::Tensor& ids, at::ScalarType dtype) const {
  at::Tensor rows = table_.index_select(0, ids);
  if (!quantized()) return rows.to(dtype);
  const int64_t n = rows.size(0), hidden = rows.size(1), groups = scale_.size(1);
  at::Tensor s = scale_.index_select(0, ids).unsqueeze(-1);  // [N, groups, 1]
  return (rows.to(at::kFloat).view({n, groups, hidden / groups}) * s).view({n, hidden}).to(dtype);
}

int64_t EmbeddingTable::bytes() const {
  int64_t n = table_.numel() * static_cast<int64_t>(table_.element_size());
  if (scale_.defined()) n += scale_.numel() * static_cast<int64_t>(scale_.element_size());
  return n;
}

void EmbeddingTable::To(at::Device dev) {
  table_ = table_.to(dev);
  if (scale_.defined()) scale_ = scale_.to(dev);
}

}  // namespace titand
