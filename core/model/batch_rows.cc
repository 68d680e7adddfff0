#include "core/model/batch_rows.h"

#include <c10/util/Exception.h>

namespace titand {
namespace {

// The block [B, *sizes] that holds the parts as consecutive rows, or an undefined tensor.
at::Tensor AdjacentRows(const std::vector<at::Tensor*>& parts) {
  const at::Tensor& first = *parts[0];
  if (!first.is_contiguous()) return {};
  const int64_t B = static_cast<int64_t>(parts.size());
  const int64_t row = first.numel();
  const int64_t off0 = first.storage_offset();
  for (int64_t b = 1; b < B; ++b) {
    const at::Tensor& p = *parts[b];
    if (!p.storage().is_alias_of(first.storage()) || !p.is_contiguous() ||
        p.storage_offset() != off0 + b * row) {
      return {};
    }
  }
  const int64_t need = (off0 + B * row) * static_cast<int64_t>(first.element_size());
  if (static_cast<int64_t>(first.storage().nbytes()) < need) return {};
  std::vector<int64_t> sizes{B}, strides{row};
  for (int64_t d = 0; d < first.dim(); ++d) {
    sizes.push_back(first.size(d));
    strides.push_back(first.stride(d));
  }
  return first.as_strided(sizes, strides, off0);
}

}  // namespace

at::Tensor BatchRows(const std::vector<at::Tensor*>& parts) {
  TORCH_CHECK(!parts.empty(), "BatchRows: no parts");
  const at::Tensor& first = *parts[0];
  for (const at::Tensor* p : parts) {
    TORCH_CHECK(p != nullptr && p->defined() && p->sizes() == first.sizes() &&
                    p->scalar_type() == first.scalar_type() && p->device() == first.device(),
                "BatchRows: parts differ (", first.sizes(), " ", first.scalar_type(), " vs ",
                p && p->defined() ? p->sizes() : at::IntArrayRef{}, ")");
  }
  if (parts.size() == 1) return first.unsqueeze(0);
  at::Tensor block = AdjacentRows(parts);
  if (block.defined()) return block;
  std::vector<at::Tensor> rows;
  rows.reserve(parts.size());
  for (const at::Tensor* p : parts) rows.push_back(*p);
  block = at::stack(rows);
  for (size_t b = 0; b < parts.size(); ++b) *parts[b] = block.select(0, static_cast<int64_t>(b));
  return block;
}

bool SharesLargerStorage(const at::Tensor& t) {
  return t.defined() && static_cast<int64_t>(t.storage().nbytes()) > static_cast<int64_t>(t.nbytes());
}

}  // namespace titand
