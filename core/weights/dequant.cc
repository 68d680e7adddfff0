#include "core/weights/dequant.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/status.h"
#include "core/weights/half.h"

namespace titand {
namespace {

// IQ4_NL's non-linear 4-bit codebook.
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

// Q4_0 (32 elems): d f16 | qs[16]. x[j] = d*(lo(qs[j]) - 8), x[j+16] = d*(hi(qs[j]) - 8).
void BlockQ4_0(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

// Q4_1: d f16 | m f16 | qs[16]. x = d*q + m with q the unsigned nibble.
void BlockQ4_1(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const float m = HalfToFloat(LoadU16(b + 2));
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// Q5_0: d f16 | qh u32 | qs[16]. 5-bit q = nibble | (bit e of qh) << 4 for element e; x = d*(q - 16).
void BlockQ5_0(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const uint32_t qh = LoadU32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (qs[j] & 0x0f) | static_cast<int>((qh >> j) & 1u) << 4;
    const int q1 = (qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = d * static_cast<float>(q0 - 16);
    y[j + 16] = d * static_cast<float>(q1 - 16);
  }
}

// Q5_1: d f16 | m f16 | qh u32 | qs[16]. x = d*q + m.
void BlockQ5_1(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const float m = HalfToFloat(LoadU16(b + 2));
  const uint32_t qh = LoadU32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (qs[j] & 0x0f) | static_cast<int>((qh >> j) & 1u) << 4;
    const int q1 = (qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = d * static_cast<float>(q0) + m;
    y[j + 16] = d * static_cast<float>(q1) + m;
  }
}

// Q8_0: d f16 | int8 q[32]. x = d*q.
void BlockQ8_0(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}

// IQ4_NL: d f16 | qs[16]; like Q4_0 but the nibble indexes kIq4nlValues.
void BlockIq4Nl(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4nlValues[qs[j] & 0x0f]);
    y[j + 16] = d * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
  }
}

// K-quant 6-bit scale/min of sub-block s (0..7) packed in 12 bytes: for s < 4 the low 6 bits of
// bytes s (scale) and s+4 (min); for s >= 4 the nibbles of byte s+4 plus the top 2 bits of bytes s-4 / s.
void ScaleMinK4(int s, const uint8_t* q, int* sc, int* mn) {
  if (s < 4) {
    *sc = q[s] & 63;
    *mn = q[s + 4] & 63;
  } else {
    *sc = (q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4);
    *mn = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

// Q4_K (256 elems): d f16 | dmin f16 | scales[12] | qs[128]. Sub-block s of 32 elements: chunk c = s/2
// uses bytes qs[32c .. 32c+32), low nibbles for even s, high for odd. x = (d*sc)*q - (dmin*m).
void BlockQ4_K(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const float dmin = HalfToFloat(LoadU16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    ScaleMinK4(s, scales, &sc, &mn);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(mn);
    const uint8_t* q = qs + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l) y[32 * s + l] = d1 * static_cast<float>((q[l] >> shift) & 0x0f) - m1;
  }
}

// Q5_K: d | dmin | scales[12] | qh[32] | qs[128]. As Q4_K, plus bit s of qh[l] as the 5th bit.
void BlockQ5_K(const uint8_t* b, float* y) {
  const float d = HalfToFloat(LoadU16(b));
  const float dmin = HalfToFloat(LoadU16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    ScaleMinK4(s, scales, &sc, &mn);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(mn);
    const uint8_t* q = qs + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = d1 * static_cast<float>(v) - m1;
    }
  }
}

// Q6_K: ql[128] | qh[64] | int8 scales[16] | d f16. Each half n (128 elems) uses ql[64n..], qh[32n..];
// for l < 32 the four elements l, l+32, l+64, l+96 take low nibble of ql[l], low of ql[l+32], high of
// ql[l], high of ql[l+32], with 2-bit fields 0,2,4,6 of qh[l] on top; q - 32, scale index = element/16.
void BlockQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql_all = b;
  const uint8_t* qh_all = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = HalfToFloat(LoadU16(b + 208));
  for (int n = 0; n < 2; ++n) {
    const uint8_t* ql = ql_all + 64 * n;
    const uint8_t* qh = qh_all + 32 * n;
    float* yn = y + 128 * n;
    const int8_t* scn = sc + 8 * n;
    for (int l = 0; l < 32; ++l) {
      const int q[4] = {(ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4,
                        (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4,
                        (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                        (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4};
      for (int k = 0; k < 4; ++k) {
        const int e = l + 32 * k;
        yn[e] = (d * static_cast<float>(scn[e / 16])) * static_cast<float>(q[k] - 32);
      }
    }
  }
}

}  // namespace

absl::Status Dequantize(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, float* dst) {
  ASSIGN_OR_RETURN(const size_t need, GgmlTensorBytes(type, n));
  if (src_bytes < need) {
    return absl::OutOfRangeError(absl::StrFormat("%s: %d elements need %u bytes, only %u available",
                                                 GgmlTypeName(type), n, need, src_bytes));
  }
  if (n == 0) return absl::OkStatus();  // (an empty tensor: dst may be null, memcpy must not see it)
  const int64_t bs = GgmlBlockSize(type);
  const size_t bb = GgmlBlockBytes(type);
  const int64_t blocks = n / bs;
  void (*fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return absl::OkStatus();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(LoadU16(src + 2 * i));
      return absl::OkStatus();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(LoadU16(src + 2 * i));
      return absl::OkStatus();
    case GgmlType::kQ4_0: fn = BlockQ4_0; break;
    case GgmlType::kQ4_1: fn = BlockQ4_1; break;
    case GgmlType::kQ5_0: fn = BlockQ5_0; break;
    case GgmlType::kQ5_1: fn = BlockQ5_1; break;
    case GgmlType::kQ8_0: fn = BlockQ8_0; break;
    case GgmlType::kIQ4_NL: fn = BlockIq4Nl; break;
    case GgmlType::kQ4_K: fn = BlockQ4_K; break;
    case GgmlType::kQ5_K: fn = BlockQ5_K; break;
    case GgmlType::kQ6_K: fn = BlockQ6_K; break;
  }
  if (fn == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unsupported tensor type %u", static_cast<uint32_t>(type)));
  }
  for (int64_t i = 0; i < blocks; ++i) fn(src + i * bb, dst + i * bs);
  return absl::OkStatus();
}

namespace {

absl::Status CheckBlocks(GgmlType type, size_t src_bytes, int64_t n) {
  if (n < 0 || n % 32 != 0) return absl::InvalidArgumentError(absl::StrFormat("%d elements: not whole blocks", n));
  ASSIGN_OR_RETURN(size_t need, GgmlTensorBytes(type, n));
  if (src_bytes < need) {
    return absl::OutOfRangeError(absl::StrFormat("%s: %d elements need %d bytes, got %d", GgmlTypeName(type), n,
                                                 need, src_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SplitQ4Blocks(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, uint8_t* q, float* d,
                           float* m) {
  if (type != GgmlType::kQ4_0 && type != GgmlType::kQ4_1) {
    return absl::InvalidArgumentError(absl::StrCat("not a Q4_0/Q4_1 tensor: ", GgmlTypeName(type)));
  }
  RETURN_IF_ERROR(CheckBlocks(type, src_bytes, n));
  const bool has_min = type == GgmlType::kQ4_1;
  const size_t bb = GgmlBlockBytes(type);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = src + b * bb;
    d[b] = HalfToFloat(LoadU16(blk));
    m[b] = has_min ? HalfToFloat(LoadU16(blk + 2)) : -8.0f * d[b];
    const uint8_t* qs = blk + (has_min ? 4 : 2);
    uint8_t* out = q + b * 32;
    for (int j = 0; j < 16; ++j) {
      out[j] = qs[j] & 0x0f;
      out[j + 16] = qs[j] >> 4;
    }
  }
  return absl::OkStatus();
}

absl::Status SplitQ8_0Blocks(const uint8_t* src, size_t src_bytes, int64_t n, int8_t* q, float* d) {
  RETURN_IF_ERROR(CheckBlocks(GgmlType::kQ8_0, src_bytes, n));
  const size_t bb = GgmlBlockBytes(GgmlType::kQ8_0);
  for (int64_t b = 0; b < n / 32; ++b) {
    d[b] = HalfToFloat(LoadU16(src + b * bb));
    std::memcpy(q + b * 32, src + b * bb + 2, 32);
  }
  return absl::OkStatus();
}

namespace {

// Moves rows within each head: dst row (h, to(i, j)) = src row (h, from(i, j)).
void PermuteRows(float* data, int64_t rows, int64_t cols, int n_head, bool forward) {
  if (n_head <= 0 || rows % (2 * static_cast<int64_t>(n_head)) != 0) std::abort();
  const int64_t dim = rows / n_head;
  const int64_t half = dim / 2;
  std::vector<float> head(static_cast<size_t>(dim * cols));
  for (int64_t h = 0; h < n_head; ++h) {
    float* base = data + h * dim * cols;
    std::memcpy(head.data(), base, head.size() * sizeof(float));
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const int64_t hf = i * half + j;  // rotate-half (HF) row
        const int64_t gg = 2 * j + i;     // interleaved (GGUF) row
        const int64_t to = forward ? gg : hf;
        const int64_t from = forward ? hf : gg;
        std::memcpy(base + to * cols, head.data() + from * cols, cols * sizeof(float));
      }
    }
  }
}

}  // namespace

void PermuteQK(float* data, int64_t rows, int64_t cols, int n_head) {
  PermuteRows(data, rows, cols, n_head, /*forward=*/true);
}

void UnpermuteQK(float* data, int64_t rows, int64_t cols, int n_head) {
  PermuteRows(data, rows, cols, n_head, /*forward=*/false);
}

}  // namespace titand
