// Dequantisation checked against blocks built in the test from the block format definitions: the test
// chooses quantised values q and exactly representable scales, packs them (the encoder side), and
// expects x = scale * q (+ offset) element by element. Also fp16/bf16 constants and the q/k permutation.
#include "core/weights/dequant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/weights/half.h"

namespace titand {
namespace {

// fp16 bit patterns of a few exactly representable scales.
constexpr uint16_t kHalf0_5 = 0x3800, kHalf1_5 = 0x3E00, kHalfM2 = 0xC000, kHalf0_25 = 0x3400;

void PutU16(std::vector<uint8_t>* b, size_t at, uint16_t v) {
  (*b)[at] = v & 0xff;
  (*b)[at + 1] = v >> 8;
}

TEST(HalfTest, KnownValues) {
  EXPECT_EQ(HalfToFloat(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);            // largest finite
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), 1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x8200), -512 * std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x3555), 1365.0f / 4096.0f);  // 0.333251953125
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)) && HalfToFloat(0x7C00) > 0);
  EXPECT_TRUE(std::isinf(HalfToFloat(0xFC00)) && HalfToFloat(0xFC00) < 0);
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  // Every finite half: value = (-1)^s * 2^(e-15) * (1 + m/1024), or m * 2^-24 when e == 0.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) continue;
    const double mag = e == 0 ? m * std::ldexp(1.0, -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
    ASSERT_EQ(HalfToFloat(static_cast<uint16_t>(h)), (h & 0x8000) ? -mag : mag) << h;
  }
}

TEST(HalfTest, Bf16) {
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xC040), -3.0f);
  EXPECT_EQ(Bf16ToFloat(0x4049), 3.140625f);
  EXPECT_TRUE(std::isinf(Bf16ToFloat(0x7F80)));
}

std::vector<float> Deq(GgmlType t, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> y(n, -12345.0f);
  absl::Status st = Dequantize(t, b.data(), b.size(), n, y.data());
  EXPECT_TRUE(st.ok()) << st;
  return y;
}

TEST(DequantTest, FloatTypes) {
  const float f[3] = {1.5f, -0.0f, 3.0e-20f};
  std::vector<uint8_t> b(12);
  std::memcpy(b.data(), f, 12);
  EXPECT_EQ(Deq(GgmlType::kF32, b, 3), std::vector<float>(f, f + 3));
  std::vector<uint8_t> h = {0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00};
  EXPECT_EQ(Deq(GgmlType::kF16, h, 3), (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)}));
  std::vector<uint8_t> bf = {0x80, 0x3F, 0x40, 0xC0};
  EXPECT_EQ(Deq(GgmlType::kBF16, bf, 2), (std::vector<float>{1.0f, -3.0f}));
}

// 32-element types: element e < 16 sits in the low nibble of qs[e], e >= 16 in the high nibble of
// qs[e-16]; Q5 types keep bit e of a little-endian u32 as bit 4.
std::vector<uint8_t> Pack32(const std::vector<int>& q, int header, bool five_bit) {
  std::vector<uint8_t> b(header + (five_bit ? 4 : 0) + 16, 0);
  const size_t qs = header + (five_bit ? 4 : 0);
  uint32_t qh = 0;
  for (int e = 0; e < 32; ++e) {
    const int nib = q[e] & 15;
    b[qs + e % 16] |= e < 16 ? nib : nib << 4;
    if (q[e] & 16) qh |= 1u << e;
  }
  if (five_bit) {
    for (int k = 0; k < 4; ++k) b[header + k] = (qh >> (8 * k)) & 0xff;
  }
  return b;
}

TEST(DequantTest, ThirtyTwoElementTypes) {
  std::mt19937 rng(7);
  const int8_t kNl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> q(32);
    for (int& v : q) v = rng() % 32;
    std::vector<int> q4(32);
    for (int e = 0; e < 32; ++e) q4[e] = q[e] & 15;

    auto b = Pack32(q4, 2, false);  // Q4_0: d | qs, x = d * (q - 8)
    PutU16(&b, 0, kHalf1_5);
    auto y = Deq(GgmlType::kQ4_0, b, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], 1.5f * (q4[e] - 8)) << e;

    b = Pack32(q4, 2, false);  // IQ4_NL: d | qs, x = d * table[q]
    PutU16(&b, 0, kHalfM2);
    y = Deq(GgmlType::kIQ4_NL, b, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], -2.0f * kNl[q4[e]]) << e;

    b = Pack32(q4, 4, false);  // Q4_1: d | m | qs, x = d * q + m
    PutU16(&b, 0, kHalf0_5);
    PutU16(&b, 2, kHalfM2);
    y = Deq(GgmlType::kQ4_1, b, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], 0.5f * q4[e] - 2.0f) << e;

    b = Pack32(q, 2, true);  // Q5_0: d | qh | qs, x = d * (q - 16)
    PutU16(&b, 0, kHalf0_25);
    y = Deq(GgmlType::kQ5_0, b, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], 0.25f * (q[e] - 16)) << e;

    b = Pack32(q, 4, true);  // Q5_1: d | m | qh | qs, x = d * q + m
    PutU16(&b, 0, kHalf1_5);
    PutU16(&b, 2, kHalf0_5);
    y = Deq(GgmlType::kQ5_1, b, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], 1.5f * q[e] + 0.5f) << e;

    std::vector<uint8_t> b8(34);  // Q8_0: d | int8 q[32]
    PutU16(&b8, 0, kHalfM2);
    std::vector<int> q8(32);
    for (int e = 0; e < 32; ++e) {
      q8[e] = static_cast<int>(rng() % 256) - 128;
      b8[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(q8[e]));
    }
    y = Deq(GgmlType::kQ8_0, b8, 32);
    for (int e = 0; e < 32; ++e) ASSERT_EQ(y[e], -2.0f * q8[e]) << e;
  }
}

// K-quant 12-byte scales: sub-block s < 4 keeps scale/min in the low 6 bits of bytes s / s+4; s >= 4
// keeps their low nibbles in byte s+4 (scale low, min high) and their top 2 bits in the top bits of
// bytes s-4 (scale) and s (min).
void PackScalesK4(const int* sc, const int* mn, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int s = 0; s < 4; ++s) {
    out[s] |= sc[s];
    out[s + 4] |= mn[s];
  }
  for (int s = 4; s < 8; ++s) {
    out[s + 4] = (sc[s] & 15) | (mn[s] & 15) << 4;
    out[s - 4] |= (sc[s] >> 4) << 6;
    out[s] |= (mn[s] >> 4) << 6;
  }
}

TEST(DequantTest, Q4KAndQ5K) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    int sc[8], mn[8];
    for (int s = 0; s < 8; ++s) sc[s] = rng() % 64, mn[s] = rng() % 64;
    std::vector<int> q(256);
    for (int& v : q) v = rng() % 32;
    // Q4_K: d | dmin | scales[12] | qs[128]; element e: sub-block s = e/32, byte 32*(s/2) + e%32,
    // low nibble for even s. x = d*sc[s]*q - dmin*mn[s].
    std::vector<uint8_t> b(144, 0);
    PutU16(&b, 0, kHalf0_5);
    PutU16(&b, 2, kHalf0_25);
    PackScalesK4(sc, mn, &b[4]);
    for (int e = 0; e < 256; ++e) {
      const int s = e / 32;
      b[16 + 32 * (s / 2) + e % 32] |= (q[e] & 15) << (4 * (s % 2));
    }
    auto y = Deq(GgmlType::kQ4_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      ASSERT_EQ(y[e], 0.5f * sc[e / 32] * (q[e] & 15) - 0.25f * mn[e / 32]) << e;
    }
    // Q5_K: d | dmin | scales[12] | qh[32] | qs[128]; 5th bit of element e is bit e/32 of qh[e%32].
    std::vector<uint8_t> b5(176, 0);
    PutU16(&b5, 0, kHalf1_5);
    PutU16(&b5, 2, kHalf0_5);
    PackScalesK4(sc, mn, &b5[4]);
    for (int e = 0; e < 256; ++e) {
      const int s = e / 32;
      b5[48 + 32 * (s / 2) + e % 32] |= (q[e] & 15) << (4 * (s % 2));
      b5[16 + e % 32] |= (q[e] >> 4) << s;
    }
    y = Deq(GgmlType::kQ5_K, b5, 256);
    for (int e = 0; e < 256; ++e) {
      ASSERT_EQ(y[e], 1.5f * sc[e / 32] * q[e] - 0.5f * mn[e / 32]) << e;
    }
  }
}

TEST(DequantTest, Q6K) {
  std::mt19937 rng(13);
  // Q6_K: ql[128] | qh[64] | int8 scales[16] | d. Element e: half n = e/128, r = e%128, k = r/32,
  // l = r%32; low nibble in ql[64n + l + 32*(k%2)] (high half of the byte for k >= 2); 2 high bits
  // at bits 2k of qh[32n + l]. x = d * scales[e/16] * (q - 32).
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> q(256), sc(16);
    for (int& v : q) v = rng() % 64;
    for (int& v : sc) v = static_cast<int>(rng() % 256) - 128;
    std::vector<uint8_t> b(210, 0);
    for (int e = 0; e < 256; ++e) {
      const int n = e / 128, r = e % 128, k = r / 32, l = r % 32;
      b[64 * n + l + 32 * (k % 2)] |= (q[e] & 15) << (k >= 2 ? 4 : 0);
      b[128 + 32 * n + l] |= (q[e] >> 4) << (2 * k);
    }
    for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(sc[s]));
    PutU16(&b, 208, kHalf0_25);
    auto y = Deq(GgmlType::kQ6_K, b, 256);
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], 0.25f * sc[e / 16] * (q[e] - 32)) << e;
  }
}

TEST(DequantTest, MultipleBlocksUseTheirOwnScales) {
  auto b0 = Pack32(std::vector<int>(32, 9), 2, false);
  auto b1 = b0;
  PutU16(&b0, 0, kHalf0_5);
  PutU16(&b1, 0, kHalfM2);
  b0.insert(b0.end(), b1.begin(), b1.end());
  auto y = Deq(GgmlType::kQ4_0, b0, 64);
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[63], -2.0f);
}

TEST(DequantTest, RejectsBadSizes) {
  std::vector<uint8_t> b(18, 0);
  std::vector<float> y(64);
  EXPECT_EQ(Dequantize(GgmlType::kQ4_0, b.data(), b.size(), 33, y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Dequantize(GgmlType::kQ4_0, b.data(), b.size(), 64, y.data()).code(),
            absl::StatusCode::kOutOfRange);  // 64 elements need 36 bytes
  EXPECT_EQ(Dequantize(GgmlType::kQ4_0, b.data(), b.size(), -32, y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Dequantize(static_cast<GgmlType>(10), b.data(), b.size(), 32, y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(GgmlTensorBytes(GgmlType::kQ6_K, 255).ok());
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kQ6_K, 512), 420u);
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kQ5_1, 64), 48u);
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kBF16, 3), 6u);
}

TEST(PermuteTest, RoundTripAndHfLayout) {
  // rows = n_head * head_dim, head_dim = 8 (half = 4), cols = 3.
  const int n_head = 3;
  const int64_t dim = 8, rows = n_head * dim, cols = 3;
  std::vector<float> hf(rows * cols);
  for (size_t k = 0; k < hf.size(); ++k) hf[k] = static_cast<float>(k);
  std::vector<float> gg = hf;
  PermuteQK(gg.data(), rows, cols, n_head);
  // convert_hf_to_gguf: w.reshape(n_head, 2, dim/2, cols).swapaxes(1, 2): gguf row (h, j, i) =
  // HF row (h, i, j), i.e. gguf row h*dim + 2j + i holds HF row h*dim + i*dim/2 + j.
  for (int h = 0; h < n_head; ++h) {
    for (int j = 0; j < dim / 2; ++j) {
      for (int i = 0; i < 2; ++i) {
        for (int c = 0; c < cols; ++c) {
          ASSERT_EQ(gg[(h * dim + 2 * j + i) * cols + c], hf[(h * dim + i * dim / 2 + j) * cols + c]);
        }
      }
    }
  }
  EXPECT_NE(gg, hf);
  std::vector<float> back = gg;
  UnpermuteQK(back.data(), rows, cols, n_head);
  EXPECT_EQ(back, hf);
  // A bias (cols = 1) and the other order: Permute(Unpermute(x)) == x.
  std::vector<float> bias(rows);
  for (int k = 0; k < rows; ++k) bias[k] = k * 0.5f;
  std::vector<float> t = bias;
  UnpermuteQK(t.data(), rows, 1, n_head);
  EXPECT_EQ(t[1], bias[2]);  // HF row 1 (i=0, j=1) comes from gguf row 2
  EXPECT_EQ(t[4], bias[1]);  // HF row 4 (i=1, j=0) comes from gguf row 1
  PermuteQK(t.data(), rows, 1, n_head);
  EXPECT_EQ(t, bias);
}

// Found by fuzz_gguf (UBSan): an empty tensor reached memcpy with a null destination.
TEST(DequantTest, EmptyTensorTouchesNothing) {
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kQ4_1}) {
    EXPECT_TRUE(Dequantize(t, nullptr, 0, 0, nullptr).ok()) << GgmlTypeName(t);
  }
}

}  // namespace
}  // namespace titand
