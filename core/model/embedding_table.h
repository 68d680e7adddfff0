// The token embedding table [vocab, hidden], kept either dense (the model dtype) or as int8 rows with
// float32 scales per group of `group` columns: E[v, c] = scale[v, c / group] * q[v, c]. The int8 form comes
// from a GGUF Q8_0 table exactly (group 32: Q8_0's own blocks, x = d * q) or from a float table per row
// (group = hidden, scale = max|E[v, :]| / 127). A lookup gathers only the rows asked for, so no dense float
// copy of the table exists when it is int8.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

namespace titand {

class EmbeddingTable {
 public:
  EmbeddingTable() = default;
  // table [vocab, hidden], any float dtype; kept as is (same storage).
  static EmbeddingTable Dense(const at::Tensor& table);
  // q int8 [vocab, hidden], scale float32 [vocab, hidden / group] (hidden % group == 0).
  static EmbeddingTable Int8(const at::Tensor& q, const at::Tensor& scale);
  // Per-row int8 quantisation of a float table [vocab, hidden] (scale float32, 1 for an all-zero row).
  static EmbeddingTable QuantizeInt8(const at::Tensor& table);

  // ids int64 [N] (validated by the caller) -> [N, hidden] in `dtype`.
  at::Tensor Lookup(const at::Tensor& ids, at::ScalarType dtype) const;

  bool quantized() const { return scale_.defined(); }
  const at::Tensor& dense() const { return table_; }  // undefined when quantized
  int64_t numel() const { return table_.numel(); }
  int64_t bytes() const;
  void To(at::Device dev);

 private:
  at::Tensor table_;  // dense [vocab, hidden] or int8 [vocab, hidden]
  at::Tensor scale_;  // int8 only: float32 [vocab, hidden / group]
};

}  // namespace titand
