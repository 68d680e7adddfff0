#include "core/model/batch_rows.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace titand {
namespace {

// The parts as rows of one block, or an undefined block.
BatchBlock FindBlock(const std::vector<at::Tensor*>& parts) {
  const at::Tensor& first = *parts[0];
  if (!first.is_contiguous() || first.numel() == 0) return {};
  const int64_t row = first.numel();
  int64_t origin = first.storage_offset();
  for (const at::Tensor* p : parts) {
    if (!p->storage().is_alias_of(first.storage()) || !p->is_contiguous()) return {};
    origin = std::min(origin, p->storage_offset());
  }
  BatchBlock out;
  out.rows.reserve(parts.size());
  int64_t hi = 0;
  for (const at::Tensor* p : parts) {
    const int64_t d = p->storage_offset() - origin;
    if (d % row != 0) return {};
    out.rows.push_back(d / row);
    hi = std::max(hi, d / row + 1);
  }
  std::vector<int64_t> sorted = out.rows;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return {};  // two parts, one row
  if (static_cast<int64_t>(first.storage().nbytes()) < (origin + hi * row) * static_cast<int64_t>(first.element_size())) {
    return {};
  }
  std::vector<int64_t> sizes{hi}, strides{row};
  for (int64_t d = 0; d < first.dim(); ++d) {
    sizes.push_back(first.size(d));
    strides.push_back(first.stride(d));
  }
  out.block = first.as_strided(sizes, strides, origin);
  out.identity = hi == static_cast<int64_t>(parts.size());
  for (size_t b = 0; out.identity && b < parts.size(); ++b) out.identity = out.rows[b] == static_cast<int64_t>(b);
  return out;
}

}  // namespace

at::Tensor BatchBlock::rows_tensor(const at::Device& device) const {
  return at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(device);
}

BatchBlock BatchRows(const std::vector<at::Tensor*>& parts) {
  TORCH_CHECK(!parts.empty(), "BatchRows: no parts");
  const at::Tensor& first = *parts[0];
  for (const at::Tensor* p : parts) {
    TORCH_CHECK(p != nullptr && p->defined() && p->sizes() == first.sizes() &&
                    p->scalar_type() == first.scalar_type() && p->device() == first.device(),
                "BatchRows: parts differ (", first.sizes(), " ", first.scalar_type(), " vs ",
                p && p->defined() ? p->sizes() : at::IntArrayRef{}, ")");
  }
  if (parts.size() == 1) return {first.unsqueeze(0), {0}, true};
  BatchBlock found = FindBlock(parts);
  if (found.block.defined()) return found;
  return StackRows(parts);
}

BatchBlock StackRows(const std::vector<at::Tensor*>& parts) {
  std::vector<at::Tensor> rows;
  rows.reserve(parts.size());
  for (const at::Tensor* p : parts) rows.push_back(*p);
  BatchBlock out{at::stack(rows), {}, true};
  for (size_t b = 0; b < parts.size(); ++b) {
    out.rows.push_back(static_cast<int64_t>(b));
    *parts[b] = out.block.select(0, static_cast<int64_t>(b));
  }
  return out;
}

bool SharesLargerStorage(const at::Tensor& t) {
  return t.defined() && static_cast<int64_t>(t.storage().nbytes()) > static_cast<int64_t>(t.nbytes());
}

}  // namespace titand
