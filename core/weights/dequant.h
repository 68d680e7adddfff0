// Block dequantisation for the GGUF tensor types titand reads, and the llama.cpp q/k row permutation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "core/weights/ggml_types.h"

namespace titand {

// Decodes n elements of `type` from src (src_bytes available) into dst[0..n). n must be a multiple of the
// block size and src_bytes >= GgmlTensorBytes(type, n); otherwise INVALID_ARGUMENT / OUT_OF_RANGE and
// nothing is read. Results follow ggml's reference dequantisation (float32 arithmetic).
absl::Status Dequantize(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, float* dst);

// The parts of Q4_0 / Q4_1 blocks (what core/model/linear_weight.h repacks into int4 losslessly): element e
// of block b is x = d[b] * q[e] + m[b] with q[e] in 0..15; Q4_1 stores d and m (fp16), Q4_0 stores d and
// means d * (q - 8), so m = -8d (exact in float32). n elements: q gets n bytes, d and m n/32 floats each.
// INVALID_ARGUMENT for another type or n not a multiple of 32; OUT_OF_RANGE if src_bytes is too short.
absl::Status SplitQ4Blocks(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, uint8_t* q, float* d,
                           float* m);
// The parts of Q8_0 blocks: x = d[b] * q[e], q int8. n elements: q gets n values, d n/32 floats.
absl::Status SplitQ8_0Blocks(const uint8_t* src, size_t src_bytes, int64_t n, int8_t* q, float* d);

// llama.cpp's convert_hf_to_gguf permutes the rows of q/k projections inside each head so that the
// interleaved RoPE (pairs 2j, 2j+1) equals HF's rotate-half RoPE (pairs j, j + D/2). With D = head_dim
// = rows / n_head, half = D/2, i in {0,1}, j in [0, half):
//   PermuteQK:   out[h*D + 2*j + i] = in[h*D + i*half + j]      (HF order -> GGUF order)
//   UnpermuteQK: out[h*D + i*half + j] = in[h*D + 2*j + i]      (GGUF order -> HF order)
// data is a row-major [rows, cols] matrix (cols = 1 for a bias), permuted in place. rows must be a
// multiple of 2*n_head (callers validate; violating it is a programming error and aborts).
// For GQA k pass n_head = number of KV heads.
void PermuteQK(float* data, int64_t rows, int64_t cols, int n_head);
void UnpermuteQK(float* data, int64_t rows, int64_t cols, int n_head);

}  // namespace titand
